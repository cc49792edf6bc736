"""pyreqwest at the seam: reqwest (Rust) does the HTTP, on its own thread, off the event loop.

``pyreqwest_error`` is the one boundary where pyreqwest's exceptions enter the error tree.

Two behaviours of pyreqwest 0.15 shape this module:

* ``max_connections`` is a semaphore on requests in flight, taken before a connection is
  picked and held until the body is read, so it bounds open connections too. The per-request
  ``timeout`` starts before that semaphore: a request that waits for a slot spends its own
  budget and ends in ``PoolTimeoutError``, which is the seam's "pool wait included".
* Cancelling the awaiting task does not stop the request: it keeps its slot until the server
  answers or its own timeout fires. So every request carries ``timeout_s`` down to reqwest
  (never only an ``asyncio.timeout`` around it), and an abandoned request frees its slot no
  later than an answered one would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pyreqwest.client import ClientBuilder
from pyreqwest.exceptions import DetailedPyreqwestError, PyreqwestError
from pyreqwest.http import Url
from pyreqwest.middleware.types import Middleware

from streamproc.controlroom.http_errors import public_url, scrub
from streamproc.controlroom.transport import RawResponse
from streamproc.controlroom.trust import ca_certificates, check
from streamproc.errors import (
    BadRequestError,
    ConfigError,
    ControlRoomError,
    EndpointConnectionError,
    EndpointTimeoutError,
)


def _detail(exc: Exception) -> str:
    """What went wrong, without the URL the request carried.

    pyreqwest's text is ``(message, {"causes": [...]})``, and its first cause quotes the full
    URL (query string included); the message and the innermost cause say what happened.
    """
    if isinstance(exc, DetailedPyreqwestError):
        causes = exc.details.get("causes") or []
        innermost = causes[-1].get("message", "") if causes else ""
        text = f"{exc.message}: {innermost}" if innermost else exc.message
    elif isinstance(exc, PyreqwestError):
        text = exc.message
    else:
        text = str(exc)
    return scrub(text) or "no detail"


def pyreqwest_error(exc: Exception, method: str, url: str) -> ControlRoomError:
    """The error-tree counterpart of a pyreqwest (or socket) exception; the caller chains it.

    A function, not a ``@contextmanager`` like the other transports' boundaries: entering
    and leaving one costs about 1.3 us per request here, a few percent of this transport's
    whole CPU per execute, while a ``try`` costs nothing until something is raised.
    """
    public = public_url(url)
    # First: pyreqwest's timeouts (the pool wait's among them) are TimeoutError, so OSError.
    if isinstance(exc, TimeoutError):
        return EndpointTimeoutError("no response in time", method=method, url=public)
    # URL parsing raises ValueError and a disallowed scheme BuilderError (a ValueError).
    if isinstance(exc, ValueError):
        return BadRequestError(f"invalid URL: {_detail(exc)}", method=method, url=public)
    return EndpointConnectionError(
        f"connection failed: {type(exc).__name__}: {_detail(exc)}", method=method, url=public
    )


def _unsendable(headers: Mapping[str, str]) -> str:
    """Which header HTTP cannot carry, by name: header values are never shown."""
    for name, value in headers.items():
        if any((c < " " and c != "\t") or c == "\x7f" for c in value):
            return f"the value of {name!r} holds control characters"
    return "a header name is not a valid HTTP token"


_CACHED = 64  # URLs and timeouts remembered; a few are in use at a time


class PyreqwestExecuteTransport:
    """One pooled pyreqwest ``Client``; ``timeout_s`` bounds the whole exchange, pool included."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
        middleware: Middleware | None = None,
    ) -> None:
        self.max_connections = max_connections
        builder = (
            ClientBuilder()
            .max_connections(max_connections)
            # A redirect would resend X-Authorization elsewhere; statuses are data here,
            # error_for_status in http_errors decides what they mean; no cookie store (the
            # token travels in a header); no proxy from the environment, as for aiohttp.
            .follow_redirects(False)
            .error_for_status(False)
            .default_cookie_store(False)
            .no_proxy()
            .danger_accept_invalid_certs(not verify_tls)
        )
        check(verify_tls, ca_file)
        if ca_file is not None:
            for certificate in ca_certificates(ca_file):
                try:
                    builder = builder.add_root_certificate_pem(certificate)
                except (PyreqwestError, ValueError) as exc:
                    raise ConfigError(
                        "controlroom.ca_file", f"{ca_file}: not a valid certificate"
                    ) from exc
        if middleware is not None:  # tests script the network through it
            builder = builder.with_middleware(middleware)
        self._client = builder.build()
        self._closed = False
        self._urls: dict[str, Url] = {}
        self._timeouts: dict[float, timedelta] = {}

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        if self._closed:
            raise RuntimeError("the execute transport is closed")
        if timeout_s <= 0:  # reqwest cannot take a negative duration; nothing left to wait
            raise EndpointTimeoutError(
                "no time left for the attempt", method="POST", url=public_url(url)
            )
        try:
            builder = self._client.post(self._url(url))
        except ValueError as exc:
            raise pyreqwest_error(exc, "POST", url) from exc
        rejected: str | None = None
        try:
            builder = builder.headers(headers)
        except ValueError:
            rejected = _unsendable(headers)
        if rejected is not None:
            # pyreqwest's ValueError quotes the rejected value, and header values are where
            # the tokens travel: raised outside the handler, this error names the header and
            # carries that exception neither as cause nor as context.
            raise BadRequestError(f"invalid header: {rejected}", method="POST", url=public_url(url))
        try:
            request = builder.body_bytes(body).timeout(self._timeout(timeout_s)).build()
            # A consumed request: send() returns with the body read, within the timeout.
            response = await request.send()
            payload = await response.bytes()
        except (PyreqwestError, OSError, ValueError) as exc:
            raise pyreqwest_error(exc, "POST", url) from exc
        return RawResponse(response.status, response.headers, payload.to_bytes())

    def _url(self, url: str) -> Url | str:
        # Parsed once per URL (an API Task's execute URL), not once per request.
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = Url(url)
            if len(self._urls) < _CACHED:
                self._urls[url] = parsed
        return parsed

    def _timeout(self, seconds: float) -> timedelta:
        # Nearly every attempt has its API Task's attempt timeout: build it once.
        duration = self._timeouts.get(seconds)
        if duration is None:
            duration = timedelta(seconds=seconds)
            if len(self._timeouts) < _CACHED:
                self._timeouts[seconds] = duration
        return duration

    async def aclose(self) -> None:
        self._closed = True
        await self._client.close()
