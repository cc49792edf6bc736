"""The emulator as a process: starts from flags, logs without secrets, stops on signals."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[3]
SECRETS = ("cr-admin-password", "EMULATOR-FAKE-API-KEY-FOR-CR-ADMIN-00000")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def wait_for_health(url: str, proc: subprocess.Popen[bytes], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the emulator exited during start-up"
        try:
            if http("GET", f"{url}/emulator/v1/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the emulator did not become healthy")


def start(*flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamproc.emulator", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_then_stops_cleanly_on_signal(signum: signal.Signals) -> None:
    """Started from flags it serves, logs one line per request without secrets, exits 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start(
        "--port", str(port), "--config", "config/emulator.toml", "--latency-ms", "1"
    ) as proc:
        try:
            wait_for_health(url, proc)
            status, raw = http("POST", f"{url}/v1/authentication",
                               {"username": "cr-admin", "password": SECRETS[0]})  # fmt: skip
            token = orjson.loads(raw)["token"]
            http("POST", f"{url}/v2/authentication", {"username": "cr-admin", "apiKey": SECRETS[1]})
            http("POST", f"{url}/v1/authentication", {"username": "cr-admin", "password": "nope"})
            http("GET", f"{url}/v1/authentication/token?token={token}")
            status, raw = http(
                "POST",
                f"{url}/orchestrator/v1/hotbot/config/accessdetails",
                {"botRepositoryPath": ["Automation Anywhere\\Bots\\Fraud Score API Task"]},
                {"X-Authorization": token},
            )
            detail = next(iter(orjson.loads(raw)["accessDetails"].values()))
            status, _ = http("POST", detail["url"],
                             {"botInput": {"iNumAmount": {"type": "NUMBER", "number": "5"}}},
                             detail["headers"])  # fmt: skip
            assert status == 200
            assert detail["url"] == f"{url}/hotbot/201/execute"
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0
    text = err.decode()
    assert token not in text
    assert token.split(".")[1] not in text
    for secret in SECRETS:
        assert secret not in text
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert names[0] == "emulator_started"
    assert names[-1] == "emulator_stopping"
    paths = {e["path"] for e in events if e["event"] == "http_request"}
    assert "/v1/authentication/token" in paths
    assert "/hotbot/201/execute" in paths


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    """An invalid key in the config file stops start-up with status 2 and names the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[behavior]\nlatency_ms = -5\n")
    with start("--config", str(bad)) as proc:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "behavior.latency_ms" in err.decode()


def test_port_in_use_exits_1() -> None:
    """A port already taken fails at start with status 1 and a message."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with start("--port", str(port), "--log-level", "ERROR") as proc:
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in err.decode()
