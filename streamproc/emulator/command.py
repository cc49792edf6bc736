"""``streamproc emulator``: serve the Control Room emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from streamproc.emulator.server import EmulatorServer, loop_factory
from streamproc.emulator.settings import EmulatorSettings, load_settings
from streamproc.errors import ConfigError
from streamproc.logs import configure, get_logger

DESCRIPTION = """\
Serve a local emulator of the Automation 360 Control Room API Task real-time endpoints on
one port: POST /v1|v2/authentication (+ /token refresh and validate, /v1/authentication/logout),
PUT /orchestrator/v1/hotbot/config/create, POST /orchestrator/v1/hotbot/config (list),
POST /orchestrator/v1/hotbot/config/accessdetails, POST /hotbot/{botId}/execute, and the
unauthenticated controls under /emulator/v1/ (stats, stats/reset, behavior/{fileId},
repository, health, openapi.json).

Settings come from the built-in defaults (see config/emulator.toml), then --config, then
STREAMPROC_EMULATOR_* environment variables, then these flags. Behaviour flags apply to every
API Task; change them live with PUT /emulator/v1/behavior/{fileId}.
"""

EPILOG = """\
default users: cr-admin / cr-admin-password (AAE_Admin), bot-developer /
bot-developer-password (AAE_Bot Developer); each also has a fake 40-character API key.
example: streamproc emulator --port 8090 --latency-ms 20 --latency-jitter-ms 5 --error-rate 0.01
"""

# flag destination -> settings key
_OVERRIDES = {
    "host": "host",
    "port": "port",
    "public_url": "public_url",
    "latency_ms": "latency_ms",
    "latency_jitter_ms": "latency_jitter_ms",
    "latency_distribution": "latency_distribution",
    "error_rate": "error_rate",
    "error_status": "error_status",
    "hang_rate": "hang_rate",
    "hang_max_seconds": "hang_max_seconds",
    "token_ttl_seconds": "token_ttl_seconds",
    "execution_token_ttl_seconds": "execution_token_ttl_seconds",
    "over_limit_status": "over_limit_status",
    "private_key_file": "private_key_file",
    "max_connections": "max_connections",
    "header_timeout_seconds": "header_timeout_seconds",
    "body_timeout_seconds": "body_timeout_seconds",
    "keepalive_timeout_seconds": "keepalive_timeout_seconds",
    "tls_cert_file": "tls_cert_file",
    "tls_key_file": "tls_key_file",
    "seed": "seed",
    "log_level": "log_level",
}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        help="serve the local Control Room emulator (API Task real-time endpoints)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--config", type=Path, metavar="PATH", help="TOML settings file (config/emulator.toml)")
    add("--host", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, help="port to bind (default 8090; 0 picks a free port)")
    add(
        "--public-url",
        metavar="URL",
        help="base URL put into accessdetails execute URLs (default: the request's Host)",
    )
    add("--latency-ms", type=float, metavar="MS", help="simulated execute latency, all tasks")
    add("--latency-jitter-ms", type=float, metavar="MS", help="uniform jitter: latency +/- MS")
    add("--latency-distribution", choices=("fixed", "uniform", "lognormal"))
    add("--error-rate", type=float, metavar="F", help="share of executes answering 500/503")
    add("--error-status", type=int, choices=(500, 503), help="status of injected failures")
    add("--hang-rate", type=float, metavar="F", help="share of executes held open")
    add("--hang-max-seconds", type=float, metavar="S", help="how long a hang lasts (60)")
    add("--token-ttl-seconds", type=int, metavar="S", help="auth token lifetime (1200)")
    add(
        "--execution-token-ttl-seconds",
        type=int,
        metavar="S",
        help="execution token lifetime (43200)",
    )
    add("--over-limit-status", type=int, choices=(429, 503), help="status over the limit (429)")
    add("--private-key-file", type=Path, metavar="PEM", help="RSA key to sign tokens with")
    add("--tls-cert-file", type=Path, metavar="PEM", help="serve HTTPS with this certificate")
    add("--tls-key-file", type=Path, metavar="PEM", help="the private key of --tls-cert-file")
    add("--seed", type=int, help="seed of the latency and failure draws (0)")
    add(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections held at once (512); at the cap the oldest idle one is closed",
    )
    add(
        "--header-timeout-seconds",
        type=float,
        metavar="S",
        help="time from a request's first byte to its complete headers (5), then 408",
    )
    add(
        "--body-timeout-seconds",
        type=float,
        metavar="S",
        help="time to receive a request body (10), then 408",
    )
    add(
        "--keepalive-timeout-seconds",
        type=float,
        metavar="S",
        help="how long a connection may sit idle before its next request (10)",
    )
    add(
        "--no-preallocate",
        dest="preallocate",
        action="store_false",
        default=None,
        help="start with no allocations (ignore the configured ones)",
    )
    add("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper)
    add(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="do not log one line per request",
    )
    parser.set_defaults(handler=handle)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    overrides = {
        key: getattr(args, dest)
        for dest, key in _OVERRIDES.items()
        if getattr(args, dest, None) is not None
    }
    for flag in ("preallocate", "access_log"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    return overrides


def handle(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, overrides_from_args(args))
    except ConfigError as exc:
        print(f"streamproc emulator: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(settings))


async def serve(settings: EmulatorSettings) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""
    log = get_logger("emulator")
    server = EmulatorServer(settings)
    try:
        await server.start()
    except ConfigError as exc:
        print(f"streamproc emulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        log.error("emulator_bind_failed", host=settings.host, port=settings.port, error=str(exc))
        print(
            f"streamproc emulator: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        await server.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "emulator_started",
        url=server.url,
        public_url=settings.public_url,
        allocations=[a.list_entry() for a in server.state.allocations],
    )
    try:
        await stop.wait()
    finally:
        log.info("emulator_stopping")
        await server.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
