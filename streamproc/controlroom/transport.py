"""The one seam for the hot path's HTTP: ``ExecuteTransport`` posts bytes and returns bytes.

Everything above the seam (request building, the access-details refresh, status mapping,
parsing ``hotBotResult``) is library-free, so the HTTP library is a measured choice rather
than a commitment. The composition root (``streamproc.app.make_execute_transport``) picks one;
it defaults to pyreqwest (reqwest, in Rust)
because it costs the least client CPU per execute at the concurrency the processor runs
(``python -m bench.execute_client_cpu`` measures it). On a 2-core machine, medians over 10-15
alternating rounds: 0.66x aiohttp's CPU at concurrency 8, 0.60x at 32 and 0.56x at 64 (httpx
costs 7-14x aiohttp), with no added latency (at concurrency 8 against a 20 ms task, mean and
p99 wall time per execute are no higher than aiohttp's). In the whole processor that is about
0.8x the CPU per event, and +17 % decisions/s once CPU is the bound. aiohttp stays selectable;
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
DEFAULT_TRANSPORT: TransportKind = "pyreqwest"


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
