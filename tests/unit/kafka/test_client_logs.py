"""librdkafka's log lines reach streamproc's structured logs, never the process's stderr."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
import structlog
from confluent_kafka import Producer

import streamproc
from streamproc.kafka.clientlogs import EVENT, client_logger

PACKAGE = Path(streamproc.__file__).parent
CLIENT_CLASSES = frozenset({"Consumer", "Producer", "AdminClient"})


def test_a_client_line_becomes_a_structured_event(capfd: pytest.CaptureFixture[str]) -> None:
    """A configuration warning of a client given client_logger() arrives as a kafka_client_log
    event with its facility, client name and text, and nothing is printed to stderr."""
    with structlog.testing.capture_logs() as entries:
        producer = Producer({"bootstrap.servers": "", "fetch.min.bytes": 1}, logger=client_logger())
        deadline = time.monotonic() + 10
        while not any(e["event"] == EVENT for e in entries) and time.monotonic() < deadline:
            producer.poll(0.05)
    warnings = [e for e in entries if e["event"] == EVENT and e.get("facility") == "CONFWARN"]
    assert warnings, entries
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["client"].startswith("rdkafka#producer")
    assert "fetch.min.bytes" in warnings[0]["message"]
    assert capfd.readouterr().err == ""


def _client_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in CLIENT_CLASSES
    ]


def _routes_logs(call: ast.Call) -> bool:
    return any(
        kw.arg == "logger"
        and isinstance(kw.value, ast.Call)
        and isinstance(kw.value.func, ast.Name)
        and kw.value.func.id == "client_logger"
        for kw in call.keywords
    )


def test_every_kafka_client_streamproc_creates_routes_its_logs() -> None:
    """Each Consumer, Producer and AdminClient built in the package is given client_logger(),
    so no librdkafka line can reach stderr (and the demo's view) on its own."""
    calls = {
        f"{path.relative_to(PACKAGE)}:{call.lineno}": _routes_logs(call)
        for path in sorted(PACKAGE.rglob("*.py"))
        for call in _client_calls(ast.parse(path.read_text()))
    }
    assert len(calls) >= 8, calls  # the scan sees the processor's, the demo's and admin's
    assert [where for where, ok in calls.items() if not ok] == []
