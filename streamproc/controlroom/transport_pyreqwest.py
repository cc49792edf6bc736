"""pyreqwest at the seam: reqwest (Rust) does the HTTP, on its own thread, off the event loop.

``map_pyreqwest_errors`` is the one boundary where pyreqwest's exceptions enter the error tree.

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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta

from pyreqwest.client import ClientBuilder
from pyreqwest.exceptions import DetailedPyreqwestError, PyreqwestError
from pyreqwest.middleware.types import Middleware

from streamproc.controlroom.http_errors import public_url, scrub
from streamproc.controlroom.transport import RawResponse
from streamproc.errors import BadRequestError, EndpointConnectionError, EndpointTimeoutError


def _detail(exc: Exception) -> str:
    """What went wrong, without the URL or headers the request carried.

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


@contextmanager
def map_pyreqwest_errors(method: str, url: str) -> Iterator[None]:
    """Turn pyreqwest exceptions into the error tree, chained, without secrets."""
    try:
        yield
    # First: pyreqwest's timeouts are TimeoutError, hence OSError, and the pool timeout
    # is one of them.
    except TimeoutError as exc:
        raise EndpointTimeoutError(
            "no response in time", method=method, url=public_url(url)
        ) from exc
    # URL parsing raises ValueError, a disallowed scheme BuilderError (a ValueError), and an
    # unencodable header value ValueError; none quotes the value.
    except ValueError as exc:
        raise BadRequestError(
            f"invalid request: {_detail(exc)}", method=method, url=public_url(url)
        ) from exc
    except (PyreqwestError, OSError) as exc:
        raise EndpointConnectionError(
            f"connection failed: {type(exc).__name__}: {_detail(exc)}",
            method=method,
            url=public_url(url),
        ) from exc


class PyreqwestExecuteTransport:
    """One pooled pyreqwest ``Client``; ``timeout_s`` bounds the whole exchange, pool included."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        verify_tls: bool = True,
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
        if middleware is not None:  # tests script the network through it
            builder = builder.with_middleware(middleware)
        self._client = builder.build()
        self._closed = False

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        if self._closed:
            raise RuntimeError("the execute transport is closed")
        if timeout_s <= 0:  # reqwest cannot take a negative duration; nothing left to wait
            raise EndpointTimeoutError(
                "no time left for the attempt", method="POST", url=public_url(url)
            )
        with map_pyreqwest_errors("POST", url):
            request = (
                self._client.post(url)
                .headers(headers)
                .body_bytes(body)
                .timeout(timedelta(seconds=timeout_s))
                .build()
            )
            # A consumed request: send() returns with the body already read, inside timeout.
            response = await request.send()
            payload = await response.bytes()
            return RawResponse(response.status, response.headers, payload.to_bytes())

    async def aclose(self) -> None:
        self._closed = True
        await self._client.close()
