"""A local emulator of the Automation 360 Control Room's API Task real-time endpoints.

Serves on one port: authentication (v1 and v2, refresh, validate, logout), API Task
allocations (create, list, accessdetails), the real-time execute endpoint with each
allocation's concurrency limit enforced as the real service does (fail at once, never queue),
and emulator controls (stats, live latency and failure injection, OpenAPI document).

Python entry points: :func:`run_in_thread` (tests, benchmarks, demo), :class:`EmulatorServer`
(inside a running event loop), :func:`load_settings` / :class:`EmulatorSettings`.
"""

from streamproc.emulator.server import EmulatorHandle, EmulatorServer, run_in_thread
from streamproc.emulator.settings import EmulatorSettings, load_settings

__all__ = [
    "EmulatorHandle",
    "EmulatorServer",
    "EmulatorSettings",
    "load_settings",
    "run_in_thread",
]
