"""``streamproc controlroom`` against the emulator, as a person would run it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from streamproc.controlroom import command
from streamproc.emulator import EmulatorHandle
from streamproc.errors import ConfigError
from tests.fixtures.emulator import EmulatorFactory
from tests.integration.controlroom.conftest import ZIP_CODE_TASK

pytestmark = pytest.mark.integration


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="streamproc")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["controlroom", *argv])
    status: int = args.handler(args)
    return status


@pytest.fixture
def config(
    tmp_path: Path, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A config file with both identities, a clean environment, and captured log events."""
    for key in ("URL", "USERNAME", "PASSWORD", "API_KEY", "BEARER_TOKEN", "AUTH_VERSION"):
        monkeypatch.delenv(f"STREAMPROC_CONTROLROOM__{key}", raising=False)
    # The command configures logging onto stderr for the whole process; keep the test's own.
    monkeypatch.setattr(command.logs, "configure", lambda *a, **kw: None)
    path = tmp_path / "cr.toml"
    path.write_text(
        f'[controlroom]\nurl = "{emulator.url}"\nusername = "bot-developer"\n'
        'password = "bot-developer-password"\nadmin_username = "cr-admin"\n'
        'admin_password = "cr-admin-password"\n'
    )
    with structlog.testing.capture_logs():
        yield str(path)


def test_login_create_list_access_and_execute(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole documented flow runs from the command line and prints JSON."""
    assert run_cli("login", "--config", config) == 0
    login = orjson.loads(capsys.readouterr().out)
    assert login["user"]["username"] == "bot-developer"
    assert "token" not in login

    assert run_cli(
        "allocations", "create", "--config", config, "--admin",
        "--file-id", "149", "--run-as-user", "12", "--concurrency-limit", "2",
    ) == 0  # fmt: skip
    assert orjson.loads(capsys.readouterr().out)["fileId"] == "149"

    assert run_cli("allocations", "list", "--config", config, "--admin") == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert {a["fileId"] for a in listed} == {"149", "201"}

    assert run_cli("access-details", "--config", config, ZIP_CODE_TASK) == 0
    access = orjson.loads(capsys.readouterr().out)
    assert access[ZIP_CODE_TASK]["headers"] == {"X-Authorization": "***"}

    for transport in ("aiohttp", "httpx", "httptools", "pyreqwest"):
        assert run_cli(
            "execute", "--config", config, "--path", ZIP_CODE_TASK,
            "--input", "iStrZipCode=76131", "--transport", transport,
        ) == 0  # fmt: skip
        out = orjson.loads(capsys.readouterr().out)
        assert out["status"] == 200
        assert out["botOutput"] == {
            "State": {"type": "STRING", "string": "California"},
            "Place": {"type": "STRING", "string": "San Jose"},
        }


def test_permission_error_is_one_line(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Creating without --admin fails with one line naming the 403, and exit status 1."""
    assert run_cli("allocations", "create", "--config", config, "--file-id", "149") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "create allocation failed" in line
    assert "[HTTP 403]" in line
    assert "bot-developer-password" not in captured.err


def test_login_with_a_bearer_token_is_checked_by_the_control_room(
    emulator_factory: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A garbage bearer token is refused by the server (exit 2, naming the key); one the
    Control Room issued logs in, even for a user who may not list allocations."""
    emulator = emulator_factory(
        users=[
            {"id": 380, "username": "bot-developer", "password": "bot-developer-password",
             "roles": ["AAE_Bot Developer"], "oauth_tokens": ["issued-Bearer-Token-1"]},
        ]
    )  # fmt: skip
    monkeypatch.setattr(command.logs, "configure", lambda *a, **kw: None)
    for token, status in (("garbage-Bearer-Token-2", 2), ("issued-Bearer-Token-1", 0)):
        path = tmp_path / "bearer.toml"
        path.write_text(f'[controlroom]\nurl = "{emulator.url}"\nbearer_token = "{token}"\n')
        with structlog.testing.capture_logs():
            assert run_cli("login", "--config", str(path)) == status
        captured = capsys.readouterr()
        assert token not in captured.out + captured.err
        if status:
            assert "'controlroom.bearer_token'" in captured.err


async def test_a_refused_bearer_token_fails_start_up_naming_it(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At start, a bearer token the Control Room refuses is a configuration error of
    controlroom.bearer_token, not of the user name."""
    from contextlib import AsyncExitStack

    from streamproc.app import build_allocations
    from streamproc.config import load_settings
    from streamproc.observability.metrics import ProcessorMetrics

    settings = load_settings(
        environ={
            "STREAMPROC_CONTROLROOM__URL": emulator.url,
            "STREAMPROC_CONTROLROOM__BEARER_TOKEN": "garbage-Bearer-Token-3",
            "STREAMPROC_PROCESSING__STARTUP_TIMEOUT_S": "5",
        }
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(ConfigError) as info:
            await build_allocations(settings, stack, {"fraud": 1}, ProcessorMetrics())
    assert info.value.key == "controlroom.bearer_token"
    assert "garbage-Bearer-Token-3" not in str(info.value)
