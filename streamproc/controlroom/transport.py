"""The one seam for the hot path's HTTP: ``ExecuteTransport`` posts bytes and returns bytes.

Everything above the seam (request building, the access-details refresh, status mapping,
parsing ``hotBotResult``) is library-free, so the HTTP library is a measured choice rather
than a commitment. The composition root (``streamproc.app.make_execute_transport``) picks one;
it defaults to httptools (HTTP/1.1 written on the event loop's own protocols, llhttp parsing
the answers: :mod:`~streamproc.controlroom.transport_httptools`) because it costs the least
client CPU per execute (``python -m bench.execute_client_cpu`` measures it). On a 2-core
machine, medians of 3 alternating rounds, the session's own work included: at concurrency 8
against a 20 ms task, 133-141 us per execute against pyreqwest's 239-249 us (0.53-0.59x) and
aiohttp's 314-342 us, with mean and p99 wall time per execute no higher than pyreqwest's; at
concurrency 64 against an instant task, 57-67 us against 104-114 us (0.55-0.59x). pyreqwest
(reqwest, in Rust, the default before) spends most of its cost handing each request to its
own thread and back. In the whole processor (``python -m bench.cpu``) that is 205-245 us of
CPU per scored event against pyreqwest's 313-322 us. pyreqwest and aiohttp stay selectable;
httpx remains for the low-rate admin calls of
:class:`~streamproc.controlroom.client.ControlRoomClient`.

Pool size: every in-flight execute holds one connection for its whole round trip (HTTP/1.1,
no pipelining), so a pool smaller than the concurrency budget does not add throughput, it only
moves the queue from the budget (where it is visible and bounded by deadlines) into the pool
(where waiting eats the attempt's timeout unseen). Size ``max_connections`` at least as large
as the concurrency that shares the transport; ``ExecuteSession`` checks this when told the
concurrency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

TransportKind = Literal["aiohttp", "httpx", "httptools", "pyreqwest"]
DEFAULT_TRANSPORT: TransportKind = "httptools"


@dataclass(frozen=True, slots=True)
class RawResponse:
    """Status, headers (case-insensitive in the real transports) and the body as bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@runtime_checkable
class ExecuteTransport(Protocol):
    """POST a prepared body; raise only ``EndpointTimeoutError`` (no response within
    ``timeout_s``, pool wait included), ``EndpointConnectionError`` (connect, reset, protocol)
    or ``BadRequestError`` (an unusable URL). Statuses are returned, never raised."""

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


def pool_size(transport: ExecuteTransport) -> int | None:
    """The transport's connection limit, when it declares one."""
    size = getattr(transport, "max_connections", None)
    return size if isinstance(size, int) else None
