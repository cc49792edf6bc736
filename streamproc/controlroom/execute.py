"""The hot path: execute one API Task with a typed ``botInput``, get the typed ``botOutput``.

One call is one attempt: retries, backoff and deadlines across attempts belong to the
processor. The single exception is the execution token: a 401 or 403 from ``/execute`` means
the access details went stale, so the session refreshes them (one refresh, shared by every
caller that saw the rejection) and replays once, within the same ``timeout_s``.

Access details are refreshed ahead of time, every ``refresh_interval_s`` (5 minutes by
default, as the Control Room documents). If that routine refresh fails for a transient reason
the session keeps executing with the details it has, whose token usually lives for hours, and
tries again shortly; a rejection from ``/execute`` always forces the refresh.

Request building and response parsing stay lean: orjson, precomputed headers, typed values
from :mod:`streamproc.core.values`, no validation framework.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self

import orjson
from structlog.typing import FilteringBoundLogger

from streamproc.controlroom.allocations import AccessDetails
from streamproc.controlroom.http_errors import error_for_status, public_url
from streamproc.controlroom.tokens import Clock, Lease, SingleFlight
from streamproc.controlroom.transport import ExecuteTransport, RawResponse
from streamproc.core.values import (
    BooleanValue,
    BotValue,
    ListValue,
    NumberValue,
    StringValue,
    dump_value,
    parse_bot_values,
    parse_value,
)
from streamproc.errors import (
    BadOutputError,
    BotValueError,
    EndpointTimeoutError,
    RetryableError,
    ServerError,
)
from streamproc.logs import get_logger


def log() -> FilteringBoundLogger:
    # Looked up per event (these are rare: logins, refreshes, rejections) so the current
    # logging configuration applies, not whichever one was active at first use.
    return get_logger("controlroom.execute")


# Headers the caller may not set: the execution token owns authentication, and a second
# auth header would make the Control Room refuse the request.
_RESERVED = frozenset({"x-authorization", "authorization", "content-type", "content-length"})
# After a failed routine refresh, wait this long before trying again (not on every execute).
_RETRY_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class ExecuteResult:
    """The typed ``hotBotResult.botOutput``, the HTTP status, and the call's wall time."""

    outputs: dict[str, BotValue]
    status: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class _Target:
    """Access details prepared for sending: the URL and the full header set."""

    details: AccessDetails
    headers: dict[str, str]


class ExecuteSession:
    """Executes one API Task (by repository path) through an :class:`ExecuteTransport`.

    Safe to share between any number of concurrent callers. The session does not own the
    transport (several sessions may share one pool); close the transport separately.
    """

    def __init__(
        self,
        repository_path: str,
        transport: ExecuteTransport,
        fetch_details: Callable[[str], Awaitable[AccessDetails]],
        *,
        refresh_interval_s: float = 300.0,
        clock: Clock = time.time,
    ) -> None:
        if refresh_interval_s <= 0:
            raise ValueError("refresh_interval_s must be positive")
        self.repository_path = repository_path
        self._transport = transport
        self._fetch_details = fetch_details
        self._interval = refresh_interval_s
        self._clock = clock
        self._targets: SingleFlight[_Target] = SingleFlight(self._fetch, clock)
        self._closed = False
        self.refreshes = 0  # access-details fetches so far: observability and tests

    @property
    def access_details(self) -> AccessDetails | None:
        lease = self._targets.current
        return lease.value.details if lease is not None else None

    async def refresh(self) -> AccessDetails:
        """Fetch access details now (e.g. at start, to fail fast on a bad path)."""
        return (await self._targets.refresh()).value.details

    async def execute(
        self,
        bot_input: Mapping[str, BotValue],
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> ExecuteResult:
        """One attempt. Raises the error tree: ``EndpointTimeoutError`` when ``timeout_s``
        passes, ``OverConcurrencyLimitError`` on 429, ``AuthError``/``PermissionDeniedError``
        when a refreshed token is rejected too, ``BadOutputError`` on a malformed botOutput."""
        return await self.execute_body(
            encode_bot_input(bot_input), timeout_s=timeout_s, headers=headers
        )

    async def execute_body(
        self, body: bytes, *, timeout_s: float, headers: Mapping[str, str] | None = None
    ) -> ExecuteResult:
        """:meth:`execute` with the request body already encoded (``{"botInput": ...}``): the
        processor builds it once per event, not once per attempt."""
        if self._closed:
            raise RuntimeError("the execute session is closed")
        started = time.perf_counter()
        deadline = started + timeout_s
        lease = self._targets.current
        if lease is None or self._clock() >= lease.stale_at:
            lease = await self._within(deadline, self._routine_refresh(lease))
        extra = _checked(headers) if headers else None

        response = await self._post(lease.value, body, extra, timeout_s)
        if response.status in (401, 403):
            log().info("execute_access_rejected", path=self.repository_path, status=response.status)
            lease = await self._within(deadline, self._targets.invalidate(lease))
            response = await self._post(lease.value, body, extra, deadline - time.perf_counter())

        target = lease.value
        if response.status >= 300:
            raise error_for_status(
                response.status,
                response.body,
                response.headers,
                method="POST",
                url=target.details.url,
                what="execute",
                secrets=target.details.headers.values(),
            )
        outputs = _outputs(response, target.details.url)
        return ExecuteResult(outputs, response.status, time.perf_counter() - started)

    async def aclose(self) -> None:
        self._closed = True
        await self._targets.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _post(
        self, target: _Target, body: bytes, extra: Mapping[str, str] | None, timeout_s: float
    ) -> RawResponse:
        if timeout_s <= 0:
            raise EndpointTimeoutError(
                "no time left for the attempt", method="POST", url=public_url(target.details.url)
            )
        headers = {**target.headers, **extra} if extra else target.headers
        return await self._transport.post(target.details.url, headers, body, timeout_s)

    async def _routine_refresh(self, stale: Lease[_Target] | None) -> Lease[_Target]:
        try:
            return await self._targets.refresh()
        except RetryableError as exc:
            if stale is None:
                raise
            # The old execution token usually outlives the 5-minute schedule by hours, so a
            # Control Room hiccup need not stop scoring; a 401/403 would force the issue.
            log().warning(
                "access_details_refresh_failed",
                path=self.repository_path,
                error=str(exc),
                retry_in_s=_RETRY_REFRESH_S,
            )
            return self._targets.postpone(stale, self._clock() + _RETRY_REFRESH_S)

    async def _within(self, deadline: float, work: Awaitable[Lease[_Target]]) -> Lease[_Target]:
        remaining = deadline - time.perf_counter()
        url = self.access_details.url if self.access_details else self.repository_path
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await work
        except TimeoutError as exc:
            raise EndpointTimeoutError(
                "no time left while refreshing the access details",
                method="POST",
                url=public_url(url),
            ) from exc

    async def _fetch(self) -> Lease[_Target]:
        details = await self._fetch_details(self.repository_path)
        obtained_at = self._clock()
        self.refreshes += 1
        log().info(
            "access_details_refreshed", path=self.repository_path, url=public_url(details.url)
        )
        headers = {"Content-Type": "application/json", **details.headers}
        return Lease(_Target(details, headers), obtained_at, obtained_at + self._interval)


def encode_bot_input(bot_input: Mapping[str, BotValue]) -> bytes:
    """The execute request body for ``bot_input``."""
    return orjson.dumps({"botInput": {k: dump_value(v) for k, v in bot_input.items()}})


def _checked(headers: Mapping[str, str]) -> Mapping[str, str]:
    for name in headers:
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set by the session and cannot be overridden")
    return headers


def _outputs(response: RawResponse, url: str) -> dict[str, BotValue]:
    if not response.body:
        return {}
    try:
        data = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        data = None
    result = data.get("hotBotResult") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        raise ServerError(
            "malformed response: no hotBotResult object",
            status=response.status,
            method="POST",
            url=public_url(url),
        )
    try:
        return parse_outputs(result.get("botOutput"))
    except BotValueError as exc:
        # The same input would get the same malformed answer: permanent, like any output
        # that breaks the task's contract.
        variable = exc.path.split(".")[1] if exc.path.count(".") >= 1 else None
        raise BadOutputError(
            f"malformed botOutput: {exc}",
            variable=variable,
            status=response.status,
            method="POST",
            url=public_url(url),
        ) from exc


def parse_outputs(obj: Any) -> dict[str, BotValue]:
    """``parse_bot_values(obj, "botOutput")``, with a fast lane for well-formed scalars.

    Scores, decisions and flags are STRING/NUMBER/BOOLEAN, reason codes a LIST of STRING;
    building those directly skips the general parser's enum lookup, dispatch and the path
    text it formats for every list item. Anything else, and anything the fast lane does not
    accept outright, goes through the general parser, so results and errors are the same (a
    property test holds the two together).
    """
    if type(obj) is not dict:
        return parse_bot_values(obj, "botOutput")
    out: dict[str, BotValue] = {}
    for name, raw in obj.items():
        if type(raw) is dict:
            kind = raw.get("type", "STRING")
            if kind == "STRING":
                text = raw.get("string")
                if type(text) is str:
                    out[name] = StringValue(text)
                    continue
            elif kind == "NUMBER":
                number = _decimal(raw.get("number"))
                if number is not None:
                    out[name] = NumberValue(number)
                    continue
            elif kind == "BOOLEAN":
                flag = raw.get("boolean")
                if flag in ("true", "false"):  # a tuple: flag may be unhashable
                    out[name] = BooleanValue(flag == "true")
                    continue
            elif kind == "LIST":
                strings = _strings(raw.get("list"))
                if strings is not None:
                    out[name] = ListValue(strings)
                    continue
        out[name] = parse_value(raw, f"botOutput.{name}")
    return out


def _strings(items: Any) -> tuple[BotValue, ...] | None:
    """A wire list whose items are all well-formed STRINGs, typed; else None."""
    if type(items) is not list:
        return None
    values: list[BotValue] = []
    for item in items:
        if type(item) is not dict or item.get("type", "STRING") != "STRING":
            return None
        text = item.get("string")
        if type(text) is not str:
            return None
        values.append(StringValue(text))
    return tuple(values)


def _decimal(text: Any) -> Decimal | None:
    if type(text) is not str:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
