"""Handing a result from one of librdkafka's threads to a future on the event loop."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Resolve ``done`` with ``result`` or ``error``; run on the loop (``call_soon_threadsafe``).
    A future given up on meanwhile (cancelled, or already resolved) is left as it is."""
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
