"""Executes per second the emulator sustains on one core, against the 3,000/s bound.

    python -m bench.emulator_throughput [--seconds 4] [--rounds 3] [--concurrency 128]

Starts the emulator as a subprocess pinned to core 0 (``taskset -c 0``) with no simulated
latency and no access log, pins this process to the other cores, creates a Fraud Score API
Task allocation with ``concurrencyLimit = --concurrency`` through the API, and drives
executes from that many concurrent aiohttp clients with varied transactions. After a warm-up
it counts answered (200) executes in ``--rounds`` windows of ``--seconds`` and reports the
best window, as timeit does: other load on the machine can only slow a window down. It also
reads the emulator's CPU time from /proc, so a machine too busy to measure shows up as an
emulator that did not use its core.

Prints ``executes_per_s=<n> bound=3000 ratio=<n/3000>`` and exits 1 when the ratio is below 1
(or when the emulator ever admitted more executes than the allocation's limit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streamproc.emulator.server import loop_factory

BOUND = 3000.0
FRAUD_FILE_ID = 201
FRAUD_PATH = "Automation Anywhere\\Bots\\Fraud Score API Task"
ADMIN = {"username": "cr-admin", "password": "cr-admin-password"}
DEVELOPER = {"username": "bot-developer", "apiKey": "EMULATOR-FAKE-API-KEY-FOR-BOT-DEVELOPER0"}
SERVER_CORE = 0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Counts:
    ok: int = 0
    other: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    payloads: list[bytes]


@dataclass(frozen=True)
class Window:
    executes: int
    seconds: float
    emulator_cpu: float
    client_cpu: float
    other: dict[int, int]

    @property
    def rate(self) -> float:
        return self.executes / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_emulator(port: int) -> tuple[subprocess.Popen[bytes], bool]:
    """The emulator process, pinned to one core when possible; whether it was pinned."""
    command = [sys.executable, "-m", "streamproc.emulator", "--port", str(port),
               "--no-preallocate", "--no-access-log", "--log-level", "WARNING",
               "--latency-ms", "0", "--error-rate", "0", "--hang-rate", "0"]  # fmt: skip
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pinned:
        command = ["taskset", "-c", str(SERVER_CORE), *command]
    return subprocess.Popen(command, cwd=Path(__file__).parents[1]), pinned


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (taskset execs, so its pid is the emulator's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def wait_healthy(session: aiohttp.ClientSession, base: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{base}/emulator/v1/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("the emulator did not start")


async def send(
    session: aiohttp.ClientSession, method: str, url: str, body: object, token: str = ""
) -> Any:
    headers = {"X-Authorization": token} if token else {}
    async with session.request(method, url, json=body, headers=headers) as response:
        answer = await response.json()
        if response.status != 200:
            raise SystemExit(f"{method} {url} answered {response.status}: {answer}")
        return answer


async def prepare(session: aiohttp.ClientSession, base: str, limit: int) -> tuple[str, str]:
    """Allocate the Fraud Score API Task with ``limit``; its execute URL and token."""
    admin = (await send(session, "POST", f"{base}/v1/authentication", ADMIN))["token"]
    create = {"fileId": str(FRAUD_FILE_ID), "concurrencyLimit": limit}
    await send(session, "PUT", f"{base}/orchestrator/v1/hotbot/config/create", create, admin)
    developer = (await send(session, "POST", f"{base}/v2/authentication", DEVELOPER))["token"]
    details = await send(
        session,
        "POST",
        f"{base}/orchestrator/v1/hotbot/config/accessdetails",
        {"botRepositoryPath": [FRAUD_PATH]},
        developer,
    )
    access = details["accessDetails"][FRAUD_PATH]
    return access["url"], access["headers"]["X-Authorization"]


def bodies(count: int = 512) -> list[bytes]:
    """Varied transactions: cards, amounts, countries, channels, categories, times."""
    channels = ["pos", "ecommerce", "contactless", "atm", "moto"]
    countries = ["US", "GB", "DE", "FR", "MT"]
    out = []
    for i in range(count):
        strings = {
            "iStrEventId": f"evt-{i:06d}",
            "iStrCurrency": ["USD", "EUR", "GBP"][i % 3],
            "iStrCardId": f"card-{i % 97:04d}",
            "iStrCountry": countries[i % 5],
            "iStrCardCountry": countries[(i // 5) % 5],
            "iStrMerchantCategory": ["5411", "5732", "7995", "4829"][i % 4],
            "iStrChannel": channels[i % 5],
        }
        bot_input: dict[str, object] = {
            name: {"type": "STRING", "string": value} for name, value in strings.items()
        }
        bot_input["iNumAmount"] = {"type": "NUMBER", "number": str(10 + (i * 37) % 4000)}
        occurred = f"2026-11-28T10:{i % 60:02d}:00+00:00[UTC]"
        bot_input["iDtOccurredAt"] = {"type": "DATETIME", "string": occurred}
        out.append(orjson.dumps({"botInput": bot_input}))
    return out


async def drive(
    session: aiohttp.ClientSession, target: Target, concurrency: int, until: float, counts: Counts
) -> None:
    """``concurrency`` clients executing back to back until ``until``."""
    url, headers, payloads = target.url, target.headers, target.payloads

    async def client(offset: int) -> None:
        i = offset
        while time.monotonic() < until:
            async with session.post(url, data=payloads[i % len(payloads)], headers=headers) as r:
                await r.read()
                if r.status == 200:
                    counts.ok += 1
                else:
                    counts.other[r.status] = counts.other.get(r.status, 0) + 1
            i += concurrency

    await asyncio.gather(*(client(n) for n in range(concurrency)))


async def measure(
    session: aiohttp.ClientSession, target: Target, concurrency: int, seconds: float, pid: int
) -> Window:
    counts = Counts()
    cpu, client, started = cpu_seconds(pid), time.process_time(), time.monotonic()
    await drive(session, target, concurrency, started + seconds, counts)
    return Window(
        executes=counts.ok,
        seconds=time.monotonic() - started,
        emulator_cpu=cpu_seconds(pid) - cpu,
        client_cpu=time.process_time() - client,
        other=counts.other,
    )


async def run(args: argparse.Namespace, base: str, pid: int) -> tuple[list[Window], Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await wait_healthy(session, base)
        url, token = await prepare(session, base, args.concurrency)
        headers = {"X-Authorization": token, "Content-Type": "application/json"}
        target = Target(url, headers, bodies())
        await drive(session, target, args.concurrency, time.monotonic() + args.warmup, Counts())
        windows = [
            await measure(session, target, args.concurrency, args.seconds, pid)
            for _ in range(args.rounds)
        ]
        async with session.get(f"{base}/emulator/v1/stats") as response:
            stats = (await response.json())["allocations"][0]
    return windows, stats


def report(windows: list[Window], stats: Any, pinned: bool, concurrency: int) -> int:
    for i, w in enumerate(windows, 1):
        per = max(w.executes, 1)
        print(
            f"round={i} executes_per_s={w.rate:.0f} "
            f"emulator_cpu_util={w.emulator_cpu / w.seconds:.2f} "
            f"emulator_cpu_us_per_execute={w.emulator_cpu / per * 1e6:.0f} "
            f"executes_per_emulator_cpu_s={w.executes / max(w.emulator_cpu, 1e-9):.0f} "
            f"client_cpu_us_per_execute={w.client_cpu / per * 1e6:.0f} non_200={w.other or 0}"
        )
    print(
        f"pinned_to_one_core={pinned} concurrency={concurrency} "
        f"max_in_flight={stats['maxInFlight']} limit={stats['concurrencyLimit']}"
    )
    best = max(windows, key=lambda w: w.rate)
    ratio = best.rate / BOUND
    print(f"executes_per_s={best.rate:.0f} bound={BOUND:.0f} ratio={ratio:.2f}")
    if stats["maxInFlight"] > stats["concurrencyLimit"]:
        print("the emulator admitted more executes than the allocation's limit", file=sys.stderr)
        return 1
    return 0 if ratio >= 1 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="one measured window (4)")
    parser.add_argument("--rounds", type=int, default=3, help="measured windows (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up (1)")
    parser.add_argument(
        "--concurrency", type=int, default=128, help="clients = allocation limit (128)"
    )
    args = parser.parse_args()

    port = free_port()
    proc, pinned = start_emulator(port)
    try:
        if pinned:
            others = (os.sched_getaffinity(0) - {SERVER_CORE}) or {SERVER_CORE}
            os.sched_setaffinity(0, others)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            windows, stats = runner.run(run(args, f"http://127.0.0.1:{port}", proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return report(windows, stats, pinned, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
