"""httpx at the seam: the alternative execute transport, and the one httpx error boundary.

``map_httpx_errors`` serves both this transport and the admin client, so httpx's exceptions
enter the error tree in exactly one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from streamproc.controlroom.http_errors import public_url, scrub
from streamproc.controlroom.transport import RawResponse
from streamproc.controlroom.trust import ssl_context
from streamproc.errors import BadRequestError, EndpointConnectionError, EndpointTimeoutError


@contextmanager
def map_httpx_errors(method: str, url: str) -> Iterator[None]:
    """Turn httpx exceptions into the error tree, chained, without secrets."""
    try:
        yield
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise EndpointTimeoutError(
            "no response in time", method=method, url=public_url(url)
        ) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise BadRequestError(
            f"invalid URL: {scrub(str(exc))}", method=method, url=public_url(url)
        ) from exc
    except (httpx.TransportError, OSError) as exc:
        detail = scrub(str(exc)) or "no detail"
        raise EndpointConnectionError(
            f"connection failed: {type(exc).__name__}: {detail}",
            method=method,
            url=public_url(url),
        ) from exc


class HttpxExecuteTransport:
    """A pooled ``httpx.AsyncClient``; ``timeout_s`` bounds the whole exchange, pool included."""

    def __init__(
        self,
        *,
        max_connections: int = 64,
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.max_connections = max_connections
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            limits=limits,
            verify=ssl_context(verify_tls, ca_file),
            trust_env=False,
            follow_redirects=False,
            timeout=None,  # noqa: S113 - post() bounds every exchange with asyncio.timeout
            transport=transport,
        )

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse:
        # httpx timeouts are per phase (connect, each read...), not per exchange; the
        # attempt's budget is total, so one asyncio timeout bounds the whole call.
        with map_httpx_errors("POST", url):
            async with asyncio.timeout(timeout_s):
                response = await self._client.post(url, content=body, headers=headers)
        return RawResponse(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
