"""The typed async Control Room client: login, allocations, access details, execute sessions.

Admin and auth calls are low-rate, so they go through one ``httpx.AsyncClient``; the hot
path goes through an :class:`~streamproc.controlroom.transport.ExecuteTransport` chosen by
measurement (see :mod:`streamproc.controlroom.execute`).

Every Control Room call carries exactly one auth header. A 401 means the token went stale
early (revoked, logged out, clock skew): the client logs in again once (one login however
many calls saw the 401) and replays once; a second 401 is an ``AuthError``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
from structlog.typing import FilteringBoundLogger

from streamproc.controlroom.allocations import (
    AccessDetails,
    Allocation,
    create_body,
    list_body,
    parse_access_details,
    parse_allocation,
    parse_list_page,
)
from streamproc.controlroom.auth import Authenticator, AuthToken, AuthVersion
from streamproc.controlroom.credentials import Credentials
from streamproc.controlroom.execute import ExecuteSession
from streamproc.controlroom.http_errors import error_for_status, public_url
from streamproc.controlroom.tokens import Clock, RefreshPolicy
from streamproc.controlroom.transport import ExecuteTransport, pool_size
from streamproc.controlroom.transport_httpx import map_httpx_errors
from streamproc.controlroom.trust import ssl_context
from streamproc.errors import AccessDetailsError, ConfigError, ControlRoomError
from streamproc.logs import get_logger


def log() -> FilteringBoundLogger:
    # Looked up per event (these are rare: logins, refreshes, rejections) so the current
    # logging configuration applies, not whichever one was active at first use.
    return get_logger("controlroom.client")


_HOTBOT = "/orchestrator/v1/hotbot/config"


class ControlRoomClient:
    """One Control Room, one identity. Use as ``async with ControlRoomClient(...) as cr:``."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        auth_version: AuthVersion = "v2",
        verify_tls: bool = True,
        ca_file: str | Path | None = None,
        timeout_s: float = 10.0,
        refresh_margin_s: float = 60.0,
        refresh_fraction: float = 0.1,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = base_url.strip().rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ConfigError("controlroom.url", "must start with https:// (or http://)")
        self.base_url = base
        self._clock = clock
        self._http = httpx.AsyncClient(
            verify=ssl_context(verify_tls, ca_file),
            timeout=httpx.Timeout(timeout_s),
            trust_env=False,
            follow_redirects=False,
            transport=transport,
        )
        self._auth = Authenticator(
            self._http,
            base,
            credentials,
            auth_version=auth_version,
            policy=RefreshPolicy(margin_s=refresh_margin_s, fraction=refresh_fraction),
            clock=clock,
        )
        self._sessions: list[ExecuteSession] = []

    @property
    def token(self) -> AuthToken | None:
        """The current token with its user and expiry (None before the first call)."""
        return self._auth.current

    @property
    def logins(self) -> int:
        """How many tokens this client has obtained."""
        return self._auth.logins

    async def authenticate(self) -> None:
        """Log in now (calls also log in lazily); raises ``AuthError`` on bad credentials."""
        await self._auth.refresh()

    async def allocations(
        self,
        *,
        page_size: int = 100,
        filter: Mapping[str, Any] | None = None,
        sort: Sequence[Mapping[str, Any]] | None = None,
    ) -> AsyncIterator[Allocation]:
        """Every allocation, page by page (``offset``/``length``) until ``totalFilter``."""
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        offset = 0
        while True:
            data = await self._call(
                "POST", _HOTBOT, list_body(offset, page_size, filter, sort), "list allocations"
            )
            with self._context("POST", _HOTBOT):
                items, page = parse_list_page(data)
            for item in items:
                yield item
            offset += len(items)
            if not items:
                return
            if page.total_filter is not None:
                if offset >= page.total_filter:
                    return
            elif len(items) < page_size:
                return

    async def create_allocation(
        self, file_id: int, *, run_as_user: int | None = None, concurrency_limit: int | None = None
    ) -> Allocation:
        """Deploy a checked-in API Task to the cloud (admin only); ``ConflictError`` if present."""
        body = create_body(file_id, run_as_user, concurrency_limit)
        data = await self._call("PUT", f"{_HOTBOT}/create", body, "create allocation")
        with self._context("PUT", f"{_HOTBOT}/create"):
            return parse_allocation(data, fallback=body)

    async def access_details(
        self, paths: Sequence[str]
    ) -> dict[str, AccessDetails | AccessDetailsError]:
        """Execution URL and headers for each repository path, or why there are none."""
        if isinstance(paths, str):
            raise TypeError("paths must be a sequence of repository paths, not one string")
        path = f"{_HOTBOT}/accessdetails"
        data = await self._call("POST", path, {"botRepositoryPath": list(paths)}, "access details")
        with self._context("POST", path):
            return parse_access_details(data, paths)

    def execution_session(
        self,
        repository_path: str,
        transport: ExecuteTransport,
        *,
        refresh_interval_s: float = 300.0,
        concurrency: int | None = None,
    ) -> ExecuteSession:
        """A session executing ``repository_path``; closed with this client.

        Pass ``concurrency`` (the most executes that will be in flight through
        ``transport``) to have a too-small connection pool refused here rather than
        discovered as queueing inside the pool.
        """
        size = pool_size(transport)
        if concurrency is not None and size is not None and size < concurrency:
            raise ConfigError(
                "controlroom.max_connections",
                f"the execute pool has {size} connections for a concurrency of {concurrency}; "
                "a budget larger than the pool only moves the queue into the pool",
            )
        session = ExecuteSession(
            repository_path,
            transport,
            self._details_for,
            refresh_interval_s=refresh_interval_s,
            clock=self._clock,
        )
        self._sessions.append(session)
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.aclose()
        await self._auth.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _details_for(self, repository_path: str) -> AccessDetails:
        found = (await self.access_details([repository_path]))[repository_path]
        if isinstance(found, AccessDetailsError):
            raise found
        return found

    async def _call(self, method: str, path: str, body: Mapping[str, Any], what: str) -> Any:
        """Send with the current token; on 401 log in again once and replay once."""
        url = f"{self.base_url}{path}"
        content = orjson.dumps(body)
        lease = await self._auth.lease()
        for replay in (False, True):
            headers = {"Content-Type": "application/json", **self._auth.headers(lease)}
            with map_httpx_errors(method, url):
                response = await self._http.request(method, url, content=content, headers=headers)
            if response.status_code != 401 or replay:
                break
            log().info("controlroom_token_rejected", method=method, url=public_url(url))
            lease = await self._auth.rejected(lease)
        if response.status_code >= 300:
            raise error_for_status(
                response.status_code,
                response.content,
                response.headers,
                method=method,
                url=url,
                what=what,
                secrets=(*self._auth.secrets(), *self._auth.headers(lease).values()),
            )
        with self._context(method, path, response.status_code):
            if not response.content:
                return {}
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise ControlRoomError(f"malformed response to {what}: not JSON") from None

    @contextmanager
    def _context(self, method: str, path: str, status: int | None = None) -> Iterator[None]:
        """Give parse errors the request context their raisers could not know."""
        try:
            yield
        except ControlRoomError as exc:
            if exc.method is None:
                exc.method, exc.url = method, public_url(f"{self.base_url}{path}")
                exc.status = exc.status if exc.status is not None else status
            raise
