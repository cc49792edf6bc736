"""``streamproc run``: the processor as a long-running service."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from streamproc import logs
from streamproc.config import load_settings
from streamproc.errors import ConfigError, StreamprocError

_SWITCH_INTERVAL_S = 0.0005
_EPILOG = """\
Every key of the config file can be overridden by an environment variable
STREAMPROC_<SECTION>__<KEY>, e.g. STREAMPROC_KAFKA__BOOTSTRAP_SERVERS=broker:9092 or
STREAMPROC_CONTROLROOM__PASSWORD=... . SIGTERM or Ctrl-C drains in-flight events (up to
processing.drain_timeout_s), commits, and exits 0.

exit status: 0 stopped cleanly, 2 bad configuration, 1 any other failure.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="consume events, score them with API Tasks, publish decisions and dead letters",
        description=(
            "Join the consumer group, score every input event with the routed API Tasks "
            "within each allocation's concurrency budget and the decision SLA, and publish "
            "one decision or one dead letter per event. Offsets are committed only after "
            "the output is acknowledged by the broker."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default: built-in defaults plus the environment)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, print it with secrets masked, and exit",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"streamproc: configuration error: {exc}", file=sys.stderr)
        return 2
    obs = settings.observability
    logs.configure(obs.log_level, json=obs.log_format == "json")
    if args.check:
        import orjson  # noqa: PLC0415

        from streamproc.config import describe  # noqa: PLC0415

        sys.stdout.write(orjson.dumps(describe(settings), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    from streamproc.app import run_processor  # noqa: PLC0415 - heavy imports only when running

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_processor(settings, stop)

    try:
        _run_loop(main())
    except ConfigError as exc:
        print(f"streamproc: configuration error: {exc}", file=sys.stderr)
        return 2
    except StreamprocError as exc:
        print(f"streamproc: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_loop(coro: Any) -> None:
    # The consumer thread and the HTTP client's thread hand results to the event loop, and
    # each wait for the interpreter lock: by default a thread keeps it for up to 5 ms, an
    # eternity next to a 20 ms execute whose slot waits to be handed on.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
