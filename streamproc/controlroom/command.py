"""``streamproc controlroom``: talk to any Control Room (or the emulator) by hand.

Results are JSON on stdout; expected failures are one line on stderr and a non-zero exit
(2 for bad configuration, naming the key; 1 for anything else), never a traceback and never
a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast, get_args

import orjson

from streamproc import logs
from streamproc.config import check_controlroom_url
from streamproc.controlroom.allocations import AccessDetails
from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.connection import Connection, read_sources, resolve
from streamproc.controlroom.credentials import BearerCredentials
from streamproc.controlroom.transport import DEFAULT_TRANSPORT, TransportKind
from streamproc.core.values import (
    BotValue,
    dump_bot_values,
    outputs_to_python,
    parse_bot_values,
    parse_value,
)
from streamproc.errors import (
    AuthError,
    BotValueError,
    ConfigError,
    PermissionDeniedError,
    StreamprocError,
)

Action = Callable[[argparse.Namespace, Connection], Coroutine[Any, Any, tuple[Any, int]]]
_SCALARS = {"STRING": "string", "NUMBER": "number", "BOOLEAN": "boolean", "DATETIME": "string"}

_DESCRIPTION = """\
Call a Control Room's API Task real-time API by hand: log in, list or create allocations,
get execution URLs, execute an API Task. Works against any Control Room URL, including the
local emulator (`streamproc emulator`).

Credentials come from the environment (STREAMPROC_CONTROLROOM__USERNAME with __PASSWORD or
__API_KEY, or __BEARER_TOKEN; __URL for the address) or from the [controlroom] section of a
TOML file (--config; keys url, username, password, api_key, bearer_token, auth_version,
verify_tls, ca_file, and admin_username/admin_password/admin_api_key for --admin). The environment
overrides the file; --url overrides both. Output is JSON on stdout."""

_EXECUTE_EPILOG = r"""examples:
  streamproc controlroom execute --path 'Automation Anywhere\Bots\Zip Code API Task' \
      --input iStrZipCode=76131
  streamproc controlroom execute --path '...' --input iNumAmount=NUMBER:12.50 \
      --input iBoolVip=BOOLEAN:true --input 'iDtAt=DATETIME:2024-05-01T10:00:00+02:00'
  streamproc controlroom execute --path '...' \
      --input-json '{"iLst": {"type": "LIST", "list": [{"type": "STRING", "string": "a"}]}}'"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "controlroom",
        help="call a Control Room: login, allocations, access-details, execute",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="controlroom_action", required=True, metavar="ACTION")
    common = _common_options()

    login = actions.add_parser(
        "login",
        parents=[common],
        help="authenticate; print the user and the token's expiry",
        description="Authenticate and print the user and when the token expires.",
    )
    login.add_argument(
        "--show-token", action="store_true", help="also print the token itself (a secret)"
    )
    login.set_defaults(handler=_handler(_login))

    allocations = actions.add_parser(
        "allocations",
        help="list or create API Task allocations (admin rights needed)",
        description="List or create API Task allocations. The Control Room requires admin "
        "rights for both; use --admin to pick the admin identity from the configuration.",
    )
    alloc_actions = allocations.add_subparsers(
        dest="allocations_action", required=True, metavar="ACTION"
    )
    listing = alloc_actions.add_parser(
        "list", parents=[common], help="list every allocation, all pages"
    )
    listing.add_argument("--page-size", type=int, default=100, help="page length (default 100)")
    listing.add_argument(
        "--filter",
        type=_json_arg,
        help="a Control Room filter object as JSON, e.g. "
        '\'{"operator":"substring","field":"fileName","value":"Fraud"}\'',
    )
    listing.add_argument(
        "--sort",
        type=_json_arg,
        help='a sort list as JSON, e.g. \'[{"field":"fileId","direction":"asc"}]\'',
    )
    listing.set_defaults(handler=_handler(_list_allocations))

    create = alloc_actions.add_parser(
        "create", parents=[common], help="add a checked-in API Task to the cloud"
    )
    create.add_argument("--file-id", type=int, required=True, help="the API Task's file id")
    create.add_argument("--run-as-user", type=int, help="the apitaskrunner user id")
    create.add_argument(
        "--concurrency-limit", type=int, help="most concurrent real-time executions"
    )
    create.set_defaults(handler=_handler(_create_allocation))

    access = actions.add_parser(
        "access-details",
        parents=[common],
        help="get execution URLs and tokens for repository paths",
        description="Generate the execution URL and token for each repository path. Tokens "
        "are masked unless --show-token is given. Exits 1 if any path has none.",
    )
    access.add_argument(
        "paths", nargs="+", metavar="PATH", help=r"e.g. 'Automation Anywhere\Bots\X'"
    )
    access.add_argument("--show-token", action="store_true", help="print the tokens (secrets)")
    access.set_defaults(handler=_handler(_access_details))

    execute = actions.add_parser(
        "execute",
        parents=[common],
        help="execute an API Task once and print its botOutput",
        description="Get access details for --path and execute it once with the given inputs.",
        epilog=_EXECUTE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    execute.add_argument("--path", required=True, help="the API Task's repository path")
    execute.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=[TYPE:]VALUE",
        help="one input variable; TYPE is STRING (default), NUMBER, BOOLEAN or DATETIME",
    )
    execute.add_argument(
        "--input-json",
        metavar="JSON|@FILE|-",
        help="botInput as wire JSON (a {name: {type, ...}} object), from a file with @, or - "
        "for stdin; --input values are added on top",
    )
    execute.add_argument(
        "--transport",
        choices=get_args(TransportKind),
        default=DEFAULT_TRANSPORT,
        help=f"HTTP library for the execute call (default {DEFAULT_TRANSPORT})",
    )
    execute.add_argument(
        "--plain", action="store_true", help="print outputs as plain JSON values, not typed"
    )
    execute.set_defaults(handler=_handler(_execute))


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--url", help="Control Room URL (else STREAMPROC_CONTROLROOM__URL or config)"
    )
    group.add_argument("--config", type=Path, help="TOML file with a [controlroom] section")
    group.add_argument("--auth-version", choices=("v1", "v2"), help="authentication API version")
    group.add_argument(
        "--admin", action="store_true", help="use the admin_* identity from the configuration"
    )
    group.add_argument(
        "--insecure", action="store_true", help="do not verify TLS certificates (test servers)"
    )
    group.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per HTTP call (default 60)"
    )
    group.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return common


def _handler(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        logs.configure("INFO" if args.verbose else "WARNING", json=False)
        try:
            values = read_sources(args.config)
            if args.url:
                values["url"] = args.url
            if args.auth_version:
                values["auth_version"] = args.auth_version
            if args.insecure:
                values["verify_tls"] = False
            if isinstance(values.get("url"), str):
                values["url"] = _url(values["url"])
            connection = resolve(values, admin=args.admin)
            result, status = asyncio.run(action(args, connection))
        except ConfigError as exc:
            print(f"streamproc controlroom: configuration error: {exc}", file=sys.stderr)
            return 2
        except StreamprocError as exc:
            print(f"streamproc controlroom: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
        sys.stdout.write("\n")
        return status

    return run


def _url(url: str) -> str:
    try:
        return check_controlroom_url(url)
    except ValueError as exc:
        raise ConfigError("controlroom.url", str(exc)) from None


def _client(args: argparse.Namespace, connection: Connection) -> ControlRoomClient:
    return ControlRoomClient(
        connection.url,
        connection.credentials,
        auth_version=connection.auth_version,
        verify_tls=connection.verify_tls,
        ca_file=connection.ca_file,
        timeout_s=args.timeout,
    )


async def _login(args: argparse.Namespace, connection: Connection) -> tuple[Any, int]:
    bearer = isinstance(connection.credentials, BearerCredentials)
    async with _client(args, connection) as client:
        await client.authenticate()
        if bearer:
            # A bearer token is not exchanged at login: ask the Control Room whether it takes
            # it, with the cheapest authenticated read there is.
            await _check_bearer(client)
        token = client.token
        assert token is not None
    expires = token.expires_at
    out: dict[str, Any] = {
        "url": connection.url,
        "authVersion": connection.auth_version,
        "kind": "bearer" if bearer else "login",
        "user": dict(token.user),
        "tokenExpiresAt": None
        if expires is None
        else datetime.fromtimestamp(expires, UTC).isoformat(),
    }
    if args.show_token:
        out["token"] = token.token.get_secret_value()
    return out, 0


async def _check_bearer(client: ControlRoomClient) -> None:
    """Return when the Control Room accepts the client's bearer token; ConfigError naming
    ``controlroom.bearer_token`` when it refuses it."""
    # allocations() is an async generator: close it after its first page.
    listing = cast(AsyncGenerator[Any, None], client.allocations(page_size=1))
    try:
        await anext(listing, None)
    except PermissionDeniedError:
        return  # authenticated; only the role may not list allocations
    except AuthError as exc:
        raise ConfigError(
            "controlroom.bearer_token", f"the Control Room refused the token: {exc}"
        ) from exc
    finally:
        await listing.aclose()


async def _list_allocations(args: argparse.Namespace, connection: Connection) -> tuple[Any, int]:
    async with _client(args, connection) as client:
        found = [
            a.to_wire()
            async for a in client.allocations(
                page_size=args.page_size, filter=args.filter, sort=args.sort
            )
        ]
    return found, 0


async def _create_allocation(args: argparse.Namespace, connection: Connection) -> tuple[Any, int]:
    async with _client(args, connection) as client:
        created = await client.create_allocation(
            args.file_id, run_as_user=args.run_as_user, concurrency_limit=args.concurrency_limit
        )
    return created.to_wire(), 0


async def _access_details(args: argparse.Namespace, connection: Connection) -> tuple[Any, int]:
    async with _client(args, connection) as client:
        found = await client.access_details(args.paths)
    out: dict[str, Any] = {}
    failed = 0
    for path, entry in found.items():
        if isinstance(entry, AccessDetails):
            headers = {k: (v if args.show_token else "***") for k, v in entry.headers.items()}
            out[path] = {"url": entry.url, "headers": headers}
        else:
            failed += 1
            out[path] = {"error": entry.reason}
            print(f"streamproc controlroom: error: {entry}", file=sys.stderr)
    return out, 1 if failed else 0


async def _execute(args: argparse.Namespace, connection: Connection) -> tuple[Any, int]:
    bot_input = parse_inputs(args.input, args.input_json)
    from streamproc.app import make_execute_transport  # noqa: PLC0415 - the composition root

    transport = make_execute_transport(
        args.transport,
        max_connections=1,
        verify_tls=connection.verify_tls,
        ca_file=connection.ca_file,
    )
    try:
        async with _client(args, connection) as client:
            session = client.execution_session(args.path, transport)
            result = await session.execute(bot_input, timeout_s=args.timeout)
    finally:
        await transport.aclose()
    outputs: Any = (
        outputs_to_python(result.outputs.items()) if args.plain else dump_bot_values(result.outputs)
    )
    return {"status": result.status, "elapsedSeconds": result.elapsed_s, "botOutput": outputs}, 0


def parse_inputs(pairs: list[str], input_json: str | None) -> dict[str, BotValue]:
    """``--input-json`` (wire JSON) plus ``--input NAME=[TYPE:]VALUE`` items, typed."""
    values: dict[str, BotValue] = {}
    if input_json is not None:
        data = _load_json(input_json, "--input-json")
        if isinstance(data, dict) and set(data) == {"botInput"}:
            data = data["botInput"]
        values.update(parse_bot_values(data, "--input-json"))
    for pair in pairs:
        name, sep, spec = pair.partition("=")
        if not sep or not name:
            raise BotValueError(f"--input {pair}", "expected NAME=[TYPE:]VALUE")
        kind, colon, text = spec.partition(":")
        if colon and kind.upper() in _SCALARS:
            wire = {"type": kind.upper(), _SCALARS[kind.upper()]: text}
        else:
            wire = {"type": "STRING", "string": spec}
        values[name] = parse_value(wire, f"--input {name}")
    return values


def _load_json(source: str, flag: str) -> Any:
    try:
        if source == "-":
            raw = sys.stdin.read()
        elif source.startswith("@"):
            raw = Path(source[1:]).read_text(encoding="utf-8")
        else:
            raw = source
        return orjson.loads(raw)
    except OSError as exc:
        raise BotValueError(flag, f"cannot read {source[1:]}: {type(exc).__name__}") from None
    except orjson.JSONDecodeError as exc:
        raise BotValueError(flag, f"not valid JSON: {exc}") from None


def _json_arg(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
