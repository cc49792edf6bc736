"""Tracing is wired by the composition root only when it is on."""

from __future__ import annotations

import subprocess
import sys

NOT_IMPORTED = """
import asyncio, sys
from contextlib import AsyncExitStack
from streamproc.app import event_tracer
from streamproc.config import Settings

async def main():
    async with AsyncExitStack() as stack:
        assert event_tracer(Settings(), stack) is None

asyncio.run(main())
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


def test_tracing_off_loads_no_opentelemetry() -> None:
    """With tracing off (the default) the processor gets no tracer, and the OpenTelemetry SDK
    is not even imported: it costs nothing at start or per event."""
    found = subprocess.run(
        [sys.executable, "-c", NOT_IMPORTED], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
