"""The default execute transport: aiohttp, the cheapest per request of the two we measure.

``map_aiohttp_errors`` is the one boundary where aiohttp's exceptions enter the error tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from streamproc.controlroom.http_errors import public_url, scrub
from streamproc.controlroom.transport import RawResponse
from streamproc.controlroom.trust import ssl_context
from streamproc.errors import BadRequestError, EndpointConnectionError, EndpointTimeoutError


@contextmanager
def map_aiohttp_errors(method: str, url: str) -> Iterator[None]:
    """Turn aiohttp and socket exceptions into the error tree, chained, without secrets."""
    try:
        yield
    except TimeoutError as exc:  # also aiohttp.ServerTimeoutError
        raise EndpointTimeoutError(
            "no response in time", method=method, url=public_url(url)
        ) from exc
    # A non-HTTP scheme is as unusable as a malformed URL, but aiohttp does not make it an
    # InvalidURL; left to ClientError it would pass for a retryable connection failure.
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise BadRequestError(
            f"invalid URL: {scrub(str(exc))}", method=method, url=public_url(url)
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        detail = scrub(str(exc)) or "no detail"
        raise EndpointConnectionError(
            f"connection failed: {type(exc).__name__}: {detail}",
            method=method,
            url=public_url(url),
        ) from exc


class AiohttpExecuteTransport:
    """A pooled aiohttp session, created on first use because it must live on the loop."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
    ) -> None:
        self.max_connections = max_connections
        self._ssl = ssl_context(verify_tls, ca_file)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the execute transport is closed")
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=0, ssl=self._ssl
        )
        # No cookie jar: the execution token travels in a header, and a jar costs CPU per
        # response. No redirects: a redirect would resend X-Authorization elsewhere.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )
        return self._session

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        # The processor passes a handful of distinct budgets; reuse their timeout objects.
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            if len(self._timeouts) < 256:
                self._timeouts[timeout_s] = timeout
        return timeout

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        session = self._session or self._open()
        with map_aiohttp_errors("POST", url):
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=self._timeout(timeout_s),
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                return RawResponse(response.status, response.headers, payload)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
