"""Scripted stand-ins for the network: a Control Room behind httpx.MockTransport, and a fake
execute transport. Both record what they were sent so tests can assert on headers."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from streamproc.controlroom.transport import RawResponse

PASSWORD = "pa55-Very-Secret-Value"  # a test secret to look for in output
API_KEY = "K" * 39 + "9"
BEARER = "bearer-Secret-Token-Value"
CR = "https://cr.example.test"
PATH = "Automation Anywhere\\Bots\\Fraud Score API Task"
EXEC_URL = "https://hotbot-1-knative-tenant.example.test/execute"


def make_jwt(exp: float | None, iat: float | None = None, **claims: Any) -> str:
    """An unsigned JWT-shaped token (the client never checks signatures)."""

    def seg(obj: Any) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    payload = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    if iat is not None:
        payload["iat"] = iat
    return f"{seg({'alg': 'RS512'})}.{seg(payload)}.c2lnbmF0dXJl"


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def alloc(file_id: int, limit: int = 1) -> dict[str, Any]:
    name = f"Task {file_id}"
    return {
        "fileId": str(file_id),
        "filePath": f"Automation Anywhere\\Bots\\{name}",
        "fileName": name,
        "runAsUserOrNone": "12",
        "concurrencyLimit": limit,
    }


@dataclass
class FakeControlRoom:
    """Just enough Control Room: login, allocations, accessdetails, token checks."""

    clock: FakeClock
    ttl_s: float = 1200.0
    username: str = "bot-developer"
    bearer_tokens: set[str] = field(default_factory=lambda: {BEARER})
    allocations: list[dict[str, Any]] = field(default_factory=list)
    exec_paths: set[str] = field(default_factory=lambda: {PATH})
    requests: list[httpx.Request] = field(default_factory=list)
    logins: int = 0
    accessdetails_calls: int = 0
    reject_next: int = 0  # the next N authenticated calls answer 401
    login_gate: asyncio.Event | None = None
    login_started: asyncio.Event = field(default_factory=asyncio.Event)
    overrides: dict[str, httpx.Response] = field(default_factory=dict)
    _valid: dict[str, float] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def revoke_all(self) -> None:
        self._valid.clear()

    def exec_token(self, n: int) -> str:
        return f"exec-token-{n}"

    def requests_to(self, suffix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith(suffix)]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.overrides:
            return self.overrides[path]
        if path.endswith("/authentication"):
            return await self._login(request)
        if (problem := self._check_auth(request)) is not None:
            return problem
        body = orjson.loads(request.content) if request.content else {}
        if path == "/orchestrator/v1/hotbot/config":
            page = body.get("page", {})
            offset, length = page.get("offset", 0), page.get("length", 100)
            return _json(
                200,
                {
                    "list": self.allocations[offset : offset + length],
                    "page": {
                        "offset": offset,
                        "total": len(self.allocations),
                        "totalFilter": len(self.allocations),
                    },
                },
            )
        if path == "/orchestrator/v1/hotbot/config/create":
            return _json(200, body)
        if path == "/orchestrator/v1/hotbot/config/accessdetails":
            self.accessdetails_calls += 1
            n = self.accessdetails_calls
            details, errors = {}, {}
            for p in body["botRepositoryPath"]:
                if p in self.exec_paths:
                    details[p] = {
                        "url": EXEC_URL,
                        "headers": {"X-Authorization": self.exec_token(n)},
                    }
                else:
                    errors[p] = "API Task is not allocated"
            return _json(200, {"accessDetails": details, "errors": errors})
        return _json(404, {"code": "not.found", "message": "no such route", "details": ""})

    async def _login(self, request: httpx.Request) -> httpx.Response:
        self.login_started.set()
        if self.login_gate is not None:
            await self.login_gate.wait()
        body = orjson.loads(request.content)
        secret_ok = body.get("password") == PASSWORD or body.get("apiKey") == API_KEY
        if body.get("username") != self.username or not secret_ok:
            return _json(
                401, {"code": "auth.failed", "message": "Invalid credentials", "details": ""}
            )
        self.logins += 1
        now = self.clock()
        token = make_jwt(now + self.ttl_s, now, sub="7", jti=next(self._serial))
        self._valid[token] = now + self.ttl_s
        return _json(200, {"token": token, "user": {"id": 7, "username": self.username}})

    def _check_auth(self, request: httpx.Request) -> httpx.Response | None:
        x_auth = request.headers.get("X-Authorization")
        bearer = request.headers.get("Authorization")
        if x_auth is not None and bearer is not None:
            return _json(400, {"code": "auth.both", "message": "both auth headers", "details": ""})
        if self.reject_next > 0:
            self.reject_next -= 1
            return _json(401, {"code": "auth.expired", "message": "token expired", "details": ""})
        if x_auth is not None and self._valid.get(x_auth, 0) > self.clock():
            return None
        if bearer is not None and bearer.removeprefix("Bearer ") in self.bearer_tokens:
            return None
        return _json(401, {"code": "auth.required", "message": "not authenticated", "details": ""})


def _json(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=orjson.dumps(obj), headers=headers)


@dataclass
class Sent:
    url: str
    headers: dict[str, str]
    body: Any
    timeout_s: float


Responder = Callable[[Sent], RawResponse | Awaitable[RawResponse]]


def output_response(outputs: Mapping[str, Any] | None = None) -> RawResponse:
    outputs = outputs or {"State": {"type": "STRING", "string": "California"}}
    return RawResponse(200, {}, orjson.dumps({"hotBotResult": {"botOutput": outputs}}))


class FakeExecuteTransport:
    """Records each post and answers with ``responder`` (default: a 200 with one output)."""

    def __init__(self, responder: Responder | None = None, max_connections: int = 64) -> None:
        self.sent: list[Sent] = []
        self.responder = responder or (lambda _sent: output_response())
        self.max_connections = max_connections
        self.closed = False

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        sent = Sent(url, dict(headers), orjson.loads(body), timeout_s)
        self.sent.append(sent)
        result = self.responder(sent)
        if isinstance(result, RawResponse):
            return result
        return await result

    async def aclose(self) -> None:
        self.closed = True


def status_response(status: int, **headers: str) -> RawResponse:
    body = {"code": f"e{status}", "message": f"status {status}", "details": ""}
    return RawResponse(status, headers, orjson.dumps(body))
