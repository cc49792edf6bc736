"""CPU per execute of the Control Room client, for each execute transport.

    python -m bench.execute_client_cpu [--executes 5000] [--concurrency 32] [--rounds 3]
        [--latency-ms 0] [--transports aiohttp,httpx,httptools,pyreqwest]

Starts the emulator in a subprocess (so its CPU is not counted) with ``--latency-ms`` per
execute (0 by default) and the echo API Task allocated with a limit far above the
concurrency, then runs ``--executes`` executes at ``--concurrency`` through
:class:`ExecuteSession` with each transport, in alternating rounds. It reports this
process's CPU time (``time.process_time``) per execute, executes per second, and the mean
and 99th percentile of each execute's wall time, each the median over rounds, and every
transport's CPU as a ratio to the default's. A last row runs the same session over a
transport that answers from memory: the client's own cost (request building, parsing,
refresh bookkeeping) without any HTTP library.

With ``--latency-ms 20 --concurrency 8`` the figures that matter are the latencies: a
transport that spends less CPU but adds wall time per execute would cost decisions per
second, because an allocation's slot is held for the whole round trip.

Exits 1 if a transport costs less CPU per execute than the default (``DEFAULT_TRANSPORT``)
by more than ``--margin`` (10 %), so the default stays a measured choice; differences
inside the margin are this shared machine's noise.
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
from typing import Any, get_args

import orjson

from streamproc import logs
from streamproc.app import make_execute_transport
from streamproc.controlroom import (
    DEFAULT_TRANSPORT,
    ControlRoomClient,
    ExecuteSession,
    ExecuteTransport,
    PasswordCredentials,
    RawResponse,
)
from streamproc.controlroom.transport import TransportKind
from streamproc.core.values import BotValue, NumberValue, StringValue, dump_bot_values

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


def serve_emulator(latency_ms: float) -> int:
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
            "latency_ms": latency_ms,
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


async def run_executes(session: ExecuteSession, count: int, concurrency: int) -> list[float]:
    """Run ``count`` executes, ``concurrency`` at a time; each one's wall time in seconds."""
    remaining = count
    elapsed: list[float] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            result = await session.execute(
                BOT_INPUT, timeout_s=30.0, headers={"X-Request-Id": "bench"}
            )
            elapsed.append(result.elapsed_s)  # timed by the session already: no extra cost

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return elapsed


async def measure(
    url: str, kind: str, executes: int, concurrency: int, warmup: int
) -> tuple[float, float, list[float]]:
    """(CPU s per execute, executes per wall s, each execute's wall s): one transport, one round."""
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
            elapsed = await run_executes(session, executes, concurrency)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await transport.aclose()
    return cpu / executes, executes / wall, elapsed


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def benchmark(url: str, args: argparse.Namespace) -> dict[str, Any]:
    kinds = [*args.transports, "none"]
    rows: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in kinds}
    for round_ in range(args.rounds):
        # Alternate the order too, so no transport always runs first (or last) in a round.
        for kind in kinds if round_ % 2 == 0 else [*reversed(args.transports), "none"]:
            per_execute, per_second, elapsed = await measure(
                url, kind, args.executes, args.concurrency, args.warmup
            )
            rows[kind].append((per_execute, per_second, statistics.fmean(elapsed), p99(elapsed)))
    return {
        kind: {
            "cpu_us_per_execute": statistics.median(r[0] for r in rows[kind]) * 1e6,
            "executes_per_s": statistics.median(r[1] for r in rows[kind]),
            "latency_mean_ms": statistics.median(r[2] for r in rows[kind]) * 1e3,
            "latency_p99_ms": statistics.median(r[3] for r in rows[kind]) * 1e3,
            "cpu_us_per_round": [round(r[0] * 1e6, 1) for r in rows[kind]],
        }
        for kind in kinds
    }


def transport_list(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = set(kinds) - set(get_args(TransportKind))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(get_args(TransportKind))}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.execute_client_cpu", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--executes", type=int, default=5000, help="executes per round (5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight at once (32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured executes (300)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the emulator's latency per execute (0)"
    )
    parser.add_argument(
        "--transports",
        type=transport_list,
        default=list(get_args(TransportKind)),
        help="comma-separated transports to compare (all); the default one is always added",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.10,
        help="how much cheaper than the default another transport must be to fail (0.10)",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        return serve_emulator(args.latency_ms)
    logs.configure("WARNING")
    if DEFAULT_TRANSPORT not in args.transports:
        args.transports.insert(0, DEFAULT_TRANSPORT)

    child = subprocess.Popen(  # the emulator's CPU stays out of this process's process_time
        [
            sys.executable,
            "-m",
            "bench.execute_client_cpu",
            "--serve-emulator",
            "--latency-ms",
            str(args.latency_ms),
        ],
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

    default_us = figures[DEFAULT_TRANSPORT]["cpu_us_per_execute"]
    cheapest = min(args.transports, key=lambda k: figures[k]["cpu_us_per_execute"])
    ratios = {k: figures[k]["cpu_us_per_execute"] / default_us for k in args.transports}
    beaten = ratios[cheapest] < 1 - args.margin
    summary = {
        "executes": args.executes,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "loop": args.loop,
        "latency_ms": args.latency_ms,
        "transports": figures,
        "cpu_ratio_to_default": ratios,
        "default": DEFAULT_TRANSPORT,
        "cheapest": cheapest,
    }
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        print(
            f"execute client CPU: N={args.executes} C={args.concurrency} loop={args.loop} "
            f"emulator latency={args.latency_ms:g} ms, median of {args.rounds} rounds, "
            "emulator in a subprocess"
        )
        print(
            f"{'transport':<18}{'CPU/execute':>13}{'vs default':>12}{'executes/s':>12}"
            f"{'mean ms':>10}{'p99 ms':>9}"
        )
        for kind in [*args.transports, "none"]:
            row = figures[kind]
            label = "none (in memory)" if kind == "none" else kind
            ratio = f"{ratios[kind]:.2f}x" if kind in ratios else ""
            print(
                f"{label:<18}{row['cpu_us_per_execute']:>10.0f} us{ratio:>12}"
                f"{row['executes_per_s']:>12.0f}{row['latency_mean_ms']:>10.2f}"
                f"{row['latency_p99_ms']:>9.2f}"
            )
        print(f"default transport: {DEFAULT_TRANSPORT} (cheapest: {cheapest})")
    if beaten:
        print(
            f"{cheapest} costs {1 - ratios[cheapest]:.0%} less CPU per execute than the "
            f"default {DEFAULT_TRANSPORT} (margin {args.margin:.0%})",
            file=sys.stderr,
        )
    return 1 if beaten else 0


if __name__ == "__main__":
    sys.exit(main())
