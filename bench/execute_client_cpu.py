"""CPU per execute of the Control Room client, for each execute transport.

    python -m bench.execute_client_cpu [--executes 5000] [--concurrency 32] [--rounds 3]

Starts the emulator in a subprocess (so its CPU is not counted) with zero latency and the
echo API Task allocated with a limit far above the concurrency, then runs ``--executes``
executes at ``--concurrency`` through :class:`ExecuteSession` with each transport, in
alternating rounds. It reports this process's CPU time (``time.process_time``) per execute,
the median over rounds, and the ratio httpx/aiohttp. A third row runs the same session over a
transport that answers from memory: the client's own cost (request building, parsing,
refresh bookkeeping) without any HTTP library.

Exits 1 if the default transport (``DEFAULT_TRANSPORT``) is not the cheaper one, so the
default stays a measured choice.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from streamproc import logs
from streamproc.controlroom import (
    DEFAULT_TRANSPORT,
    ControlRoomClient,
    ExecuteSession,
    ExecuteTransport,
    PasswordCredentials,
    RawResponse,
    make_execute_transport,
)
from streamproc.controlroom.values import BotValue, NumberValue, StringValue, dump_bot_values

ECHO_FILE_ID = 5
ECHO_PATH = "Automation Anywhere\\Bots\\My-API-Task"
DEVELOPER = ("bot-developer", "bot-developer-password")
# A fraud-scoring sized botInput; the echo task sends it back as botOutput.
BOT_INPUT: dict[str, BotValue] = {
    "iStrEventId": StringValue("0b9a3c2e-5d1f-4e8a-9c7b-2f6d8e1a4b3c"),
    "iNumAmount": NumberValue(Decimal("129.95")),
    "iStrCurrency": StringValue("EUR"),
    "iStrCardId": StringValue("card-000042"),
    "iStrCountry": StringValue("DE"),
    "iStrMerchantCategory": StringValue("5411"),
}


def serve_emulator() -> int:
    """Child mode: run the emulator, print its URL, serve until stdin closes."""
    from streamproc.emulator import load_settings, run_in_thread

    logs.configure("WARNING")
    settings = load_settings(
        None,
        {
            "host": "127.0.0.1",
            "port": 0,
            "access_log": False,
            "log_level": "WARNING",
            "latency_ms": 0,
            "allocations": [{"fileId": ECHO_FILE_ID, "concurrencyLimit": 100_000}],
        },
        environ=False,
    )
    with run_in_thread(settings) as handle:
        print(handle.url, flush=True)
        sys.stdin.read()
    return 0


class MemoryTransport:
    """Answers every post with the echo of its input, without any I/O."""

    max_connections = 1_000_000

    def __init__(self) -> None:
        self._body = orjson.dumps({"hotBotResult": {"botOutput": dump_bot_values(BOT_INPUT)}})

    async def post(
        self, _url: str, _headers: Mapping[str, str], _body: bytes, _timeout_s: float
    ) -> RawResponse:
        await asyncio.sleep(0)  # yield as a real response would
        return RawResponse(200, {}, self._body)

    async def aclose(self) -> None:
        return None


async def run_executes(session: ExecuteSession, count: int, concurrency: int) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await session.execute(BOT_INPUT, timeout_s=30.0, headers={"X-Request-Id": "bench"})

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(
    url: str, kind: str, executes: int, concurrency: int, warmup: int
) -> tuple[float, float]:
    """(CPU seconds per execute, executes per wall second) for one transport, one round."""
    transport: ExecuteTransport = (
        MemoryTransport()
        if kind == "none"
        else make_execute_transport(kind, max_connections=concurrency)  # type: ignore[arg-type]
    )
    try:
        async with ControlRoomClient(url, PasswordCredentials(*DEVELOPER)) as client:
            session = client.execution_session(ECHO_PATH, transport, concurrency=concurrency)
            await session.refresh()
            await run_executes(session, warmup, concurrency)  # open the pool, warm caches
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await run_executes(session, executes, concurrency)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await transport.aclose()
    return cpu / executes, executes / wall


async def benchmark(url: str, args: argparse.Namespace) -> dict[str, Any]:
    kinds = ["aiohttp", "httpx", "none"]
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    rate: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            per_execute, per_second = await measure(
                url, kind, args.executes, args.concurrency, args.warmup
            )
            cpu[kind].append(per_execute)
            rate[kind].append(per_second)
    return {
        kind: {
            "cpu_us_per_execute": statistics.median(cpu[kind]) * 1e6,
            "executes_per_s": statistics.median(rate[kind]),
        }
        for kind in kinds
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.execute_client_cpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--executes", type=int, default=5000, help="executes per round (5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight at once (32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured executes (300)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        return serve_emulator()
    logs.configure("WARNING")

    child = subprocess.Popen(  # the emulator's CPU stays out of this process's process_time
        [sys.executable, "-m", "bench.execute_client_cpu", "--serve-emulator"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http"):
            print("the emulator did not start", file=sys.stderr)
            return 2
        factory = asyncio.new_event_loop
        if args.loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            figures = runner.run(benchmark(url, args))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)

    aiohttp_us = figures["aiohttp"]["cpu_us_per_execute"]
    httpx_us = figures["httpx"]["cpu_us_per_execute"]
    cheaper = "aiohttp" if aiohttp_us <= httpx_us else "httpx"
    summary = {
        "executes": args.executes,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "loop": args.loop,
        "transports": figures,
        "ratio_httpx_over_aiohttp": httpx_us / aiohttp_us,
        "default": DEFAULT_TRANSPORT,
        "cheaper": cheaper,
    }
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        print(
            f"execute client CPU: N={args.executes} C={args.concurrency} "
            f"loop={args.loop}, median of {args.rounds} rounds, emulator in a subprocess"
        )
        print(f"{'transport':<22}{'CPU/execute':>14}{'executes/s':>13}")
        for kind, label in (
            ("aiohttp", "aiohttp"),
            ("httpx", "httpx"),
            ("none", "none (in memory)"),
        ):
            row = figures[kind]
            print(f"{label:<22}{row['cpu_us_per_execute']:>11.0f} us{row['executes_per_s']:>13.0f}")
        print(f"ratio httpx/aiohttp: {summary['ratio_httpx_over_aiohttp']:.1f}x")
        print(f"default transport: {DEFAULT_TRANSPORT} (cheaper: {cheaper})")
    return 0 if cheaper == DEFAULT_TRANSPORT else 1


if __name__ == "__main__":
    sys.exit(main())
