"""Property-based fuzzing over raw HTTP: no request ever gets a 5xx or a malformed error.

Requests are built from the route table (methods, templated paths), random paths, JSON bodies
shaped like the API's (and random ones), non-JSON bodies, and random or real tokens. Every
error must be a ``{code, message, details}`` JSON body, and a credential sent in a request
never comes back in a response.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.emulator import EmulatorHandle
from streamproc.emulator.routes import ROUTES
from tests.fixtures.emulator import EmulatorFactory

pytestmark = pytest.mark.integration

MARKER = "CREDENTIAL-MARKER-7f3a"
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Failures a behaviour change can inject on purpose; every other 5xx is a bug.
_INJECTED = {"INJECTED_FAILURE", "TIMEOUT"}
_KEYS = [
    "username", "password", "apiKey", "multipleLogin", "token", "fileId", "runAsUserOrNone",
    "concurrencyLimit", "page", "offset", "length", "filter", "operator", "field", "value",
    "operands", "sort", "direction", "botRepositoryPath", "botInput", "type", "string",
    "number", "boolean", "list", "dictionary", "table", "key", "schema", "rows", "values",
    "iNumAmount", "iStrCardId", "iStrZipCode", "iDtOccurredAt",
]  # fmt: skip
_SECRET_KEYS = {"password", "apiKey", "token"}
_CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/vnd.api+json",
    "garbage/",
]


@dataclass(frozen=True)
class Tokens:
    admin: str
    developer: str
    execution: str


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(url: str, request: bytes) -> Answer:
    """One request on a fresh connection; read until the server closes it."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Answer(int(lines[0].split(" ", 2)[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def _api_request(answer_token: str, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-Authorization: {answer_token}\r\n"
    ).encode()
    data = orjson.dumps(body)
    answer = exchange(url, request + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    assert answer.status == 200, answer
    result: dict[str, Any] = orjson.loads(answer.body)
    return result


@pytest.fixture
def target(emulator_factory: EmulatorFactory) -> tuple[EmulatorHandle, Tokens]:
    emulator = emulator_factory(allocations=[{"fileId": 201, "concurrencyLimit": 64}])

    def login(user: str, password: str) -> str:
        body = orjson.dumps({"username": user, "password": password, "multipleLogin": True})
        answer = exchange(
            emulator.url,
            b"POST /v1/authentication HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )
        token: str = orjson.loads(answer.body)["token"]
        return token

    admin = login("cr-admin", "cr-admin-password")
    developer = login("bot-developer", "bot-developer-password")
    details = _api_request(
        developer,
        emulator.url,
        "/orchestrator/v1/hotbot/config/accessdetails",
        {"botRepositoryPath": ["Automation Anywhere\\Bots\\Fraud Score API Task"]},
    )
    execution = next(iter(details["accessDetails"].values()))["headers"]["X-Authorization"]
    return emulator, Tokens(admin, developer, execution)


# -- strategies --------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["201", "5", "149", "7", "NUMBER", "STRING", "LIST", "DICTIONARY", "TABLE",
                     "DATETIME", "eq", "and", "not", "substring", "2026-01-01T00:00:00Z",
                     "Automation Anywhere\\Bots\\Fraud Score API Task", "1e999", "-0"]),
)  # fmt: skip


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyed = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=10), children, max_size=5)
    return st.lists(children, max_size=5) | keyed


_json = st.recursive(_scalars, _objects, max_leaves=25)
_TYPES = ["STRING", "NUMBER", "BOOLEAN", "DATETIME", "LIST", "DICTIONARY", "TABLE", "FILE", "X"]
_typed_values = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(_TYPES)},
        optional={"string": _scalars, "number": _scalars, "boolean": _scalars},
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.sampled_from(_TYPES)},
        optional={
            "list": st.lists(inner, max_size=3) | _scalars,
            "dictionary": st.lists(st.fixed_dictionaries({"key": _scalars, "value": inner}),
                                   max_size=3),
            "table": st.fixed_dictionaries({"schema": st.lists(
                st.fixed_dictionaries({"name": _scalars}), max_size=2),
                "rows": st.lists(st.fixed_dictionaries({"values": st.lists(inner, max_size=2)}),
                                 max_size=2)}),
        },
    ),
    max_leaves=10,
)  # fmt: skip
_FRAUD_INPUTS = [
    "iStrEventId",
    "iNumAmount",
    "iStrCurrency",
    "iStrCardId",
    "iStrCountry",
    "iStrCardCountry",
    "iStrMerchantCategory",
    "iStrChannel",
    "iDtOccurredAt",
]
_bot_inputs = st.dictionaries(
    st.sampled_from(_FRAUD_INPUTS) | st.text(max_size=8), _typed_values, max_size=9
).map(lambda bot_input: orjson.dumps({"botInput": bot_input}))  # fmt: skip
_secret_values = st.sampled_from([MARKER, f"Bearer {MARKER}", MARKER * 3])
_credentials = st.fixed_dictionaries(
    {}, optional={k: _secret_values | _scalars for k in sorted(_SECRET_KEYS)}
)
_bodies = st.one_of(
    st.none(),
    _json.map(orjson.dumps),
    st.builds(lambda c, j: orjson.dumps({**c, **(j if isinstance(j, dict) else {})}),
              _credentials, _json),
    st.builds(lambda v: orjson.dumps({"botInput": v}), _json),
    st.binary(max_size=200),
    st.just(b"{"),
    st.just(b"\xff\xfe\x00"),
    st.just(b"[" * 2000),
    st.just(orjson.dumps({"botInput": {"v": {"type": "LIST", "list": []}}}).replace(
        b"[]", b'[{"type":"LIST","list":' * 400 + b"[]" + b"}]" * 400)),
)  # fmt: skip
_segments = st.sampled_from(["201", "149", "5", "0", "abc", "-1", "99999999999999999999",
                             "%00", "%E2%82%AC", "..", "", "201.0"])  # fmt: skip
_route_paths = st.builds(
    lambda template, seg: re.sub(r"\{[^}]+\}", seg, template),
    st.sampled_from([r.path for r in ROUTES]),
    _segments,
)
_random_paths = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF), max_size=60).map(
    lambda text: "/" + quote(text, safe="/?=&%")
)
_queries = st.sampled_from(["", "?token=", "?token=abc", f"?token={MARKER}", "?a=1&a=2", "?%zz"])
_methods = st.sampled_from(sorted({r.method for r in ROUTES} | {"GET", "DELETE", "PATCH",
                                                                  "OPTIONS", "HEAD"}))  # fmt: skip
_header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=10)


def _token_strategy(tokens: Tokens) -> st.SearchStrategy[str]:
    genuine = st.sampled_from([tokens.admin, tokens.developer, tokens.execution])
    tampered = genuine.map(lambda t: t[:-6] + "AAAAAA")
    odd = st.sampled_from(["eyJhbGciOiJub25lIn0.e30.", "x" * 9000, "", "a.b.c"])
    return _weighted(
        (6, genuine), (1, tampered), (1, _secret_values), (1, _header_values), (1, odd)
    )


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy with the given weights (st.one_of draws its branches evenly)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


# A route with its own method most of the time, so requests get past routing.
_route_calls = st.builds(
    lambda route, seg: (route.method, re.sub(r"\{[^}]+\}", seg, route.path)),
    st.sampled_from(ROUTES),
    _segments,
)


@st.composite
def _requests(draw: st.DrawFn, tokens: Tokens) -> bytes:
    execute = draw(st.integers(0, 9)) < 3
    method, path = draw(
        st.just(("POST", "/hotbot/201/execute"))
        if execute
        else _weighted(
            (7, _route_calls),
            (2, st.tuples(_methods, _route_paths)),
            (1, st.tuples(_methods, _random_paths)),
        )
    )
    path += draw(_queries)
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["x", "x", "x", "bearer", "none", "both", "raw"]))
    token = tokens.execution if execute else draw(_token_strategy(tokens))
    if auth in ("x", "both"):
        headers["X-Authorization"] = token
    if auth in ("bearer", "both"):
        headers["Authorization"] = f"Bearer {token}"
    if auth == "raw":
        headers["Authorization"] = token
    content_type = draw(st.sampled_from(_CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    for name, value in draw(st.dictionaries(st.from_regex(r"\AX-[A-Za-z0-9-]{1,12}\Z"),
                                            _header_values, max_size=3)).items():  # fmt: skip
        headers.setdefault(name, value)
    body = draw(_weighted((4, _bot_inputs), (1, _bodies)) if execute else _bodies)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head + (body or b"")


def check(answer: Answer, method: str) -> None:
    if answer.status >= 500:
        code = orjson.loads(answer.body).get("code") if answer.body else None
        assert code in _INJECTED, answer
    assert MARKER.encode() not in answer.body, answer
    if answer.status == 204 or method == "HEAD":
        return
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    decoded = orjson.loads(answer.body)
    if answer.status >= 400:
        assert isinstance(decoded, dict), answer
        assert set(decoded) == {"code", "message", "details"}, answer
        assert _CODE.match(decoded["code"]), answer
        assert isinstance(decoded["message"], str), answer
        assert isinstance(decoded["details"], str | dict), answer


def test_no_request_gets_a_5xx_or_a_malformed_error(
    target: tuple[EmulatorHandle, Tokens],
) -> None:
    """Random requests never get a 5xx, and every error is a {code, message, details} body."""
    emulator, tokens = target

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_requests(tokens))
    def run(request: bytes) -> None:
        answer = exchange(emulator.url, request)
        seen.add(answer.status)
        check(answer, request.split(b" ", 1)[0].decode())

    seen: set[int] = set()

    run()
    # The requests reached handlers, not only the router.
    assert {200, 400, 401, 404, 405} <= seen
    # The server is still healthy and never over-admitted.
    stats = emulator.allocation_stats(201)
    assert stats["inFlight"] == 0
    assert stats["maxInFlight"] <= 64
