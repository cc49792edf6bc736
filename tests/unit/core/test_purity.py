"""The core stays pure: no I/O, clock or randomness imports, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamproc.core

CORE = Path(streamproc.core.__file__).parent
MODULES = sorted(CORE.glob("*.py"))

FORBIDDEN = frozenset(
    {
        "aiohttp",
        "anyio",
        "asyncio",
        "concurrent",
        "confluent_kafka",
        "http",
        "httpx",
        "importlib",
        "io",
        "logging",
        "multiprocessing",
        "os",
        "pathlib",
        "prometheus_client",
        "random",
        "secrets",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "ssl",
        "structlog",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "time",
        "trio",
        "urllib",
        "uuid",
        "uvloop",
    }
)
# streamproc modules the core may use: pure ones only (streamproc.logs pulls in structlog).
ALLOWED_INTERNAL = (
    "streamproc.errors",
    "streamproc.redaction",
    "streamproc.core",
)
# Reading the clock through datetime is as impure as importing time.
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})


def imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # Resolve relative imports against streamproc.core, so ``..logs`` is caught too.
            base = ["streamproc", "core"][: max(0, 3 - node.level)] if node.level else []
            names.append(".".join([*base, *([node.module] if node.module else [])]))
    return names


def test_core_modules_are_found() -> None:
    """The scan covers every core module, so an empty glob cannot pass silently."""
    assert {p.stem for p in MODULES} >= {
        "events",
        "mapping",
        "routing",
        "decisions",
        "deadletters",
        "offsets",
        "ordering",
        "budgets",
        "deadlines",
        "retry",
    }


def offending_imports(source: str) -> list[str]:
    return [
        name
        for name in imported_modules(ast.parse(source))
        if name.split(".")[0] in FORBIDDEN
        or name == "streamproc"
        or (name.startswith("streamproc.") and not name.startswith(ALLOWED_INTERNAL))
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_core_module_imports_nothing_impure(path: Path) -> None:
    """No core module imports an I/O, clock, randomness or logging module."""
    assert offending_imports(path.read_text()) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_core_module_reads_no_clock(path: Path) -> None:
    """No core module calls datetime.now/utcnow/today or the like: time is an argument."""
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    assert calls == [], f"{path.name} reads the clock via {calls}"


def test_the_scan_catches_forbidden_imports() -> None:
    """The checker flags direct, dotted and internal impure imports, and passes pure ones."""
    source = (
        "import time\n"
        "import os.path\n"
        "from asyncio import sleep\n"
        "from streamproc.logs import redact\n"
        "from streamproc import logs\n"
        "from decimal import Decimal\n"
        "from streamproc.errors import DecodeError\n"
        "from .events import decode_event\n"
        "from ..logs import redact\n"
        "from .. import errors\n"
    )
    assert offending_imports(source) == [
        "time",
        "os.path",
        "asyncio",
        "streamproc.logs",
        "streamproc",
        "streamproc.logs",
        "streamproc",
    ]


def test_importing_the_core_loads_no_io_library_transitively() -> None:
    """Importing streamproc.core in a fresh interpreter loads no HTTP, Kafka or logging
    library, even through a package __init__ of a module it uses."""
    import subprocess
    import sys

    probe = (
        "import sys, streamproc.core\n"
        "libs = ('aiohttp', 'httpx', 'confluent_kafka', 'structlog', 'prometheus_client')\n"
        "print(','.join(m for m in libs if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""
