"""The status page's recent outputs: handed over by the processor on acknowledgement, kept
bounded, and shown without anything secret or personal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import orjson
import pytest

from streamproc.core.deadletters import PREFIX
from streamproc.errors import BadRequestError, KafkaDeliveryError
from streamproc.kafka.records import OutputRecord
from streamproc.observability.recent import RecentOutputs
from streamproc.processor.flight import Flight
from streamproc.processor.outcomes import Outcome
from tests.unit.processor.fakes import DLQ, Harness, answering, build, record

MakeHarness = Callable[..., Harness]
TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """Processors wired to fakes; each is stopped and drained at teardown."""
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        made.append(build(**kwargs))
        return made[-1]

    yield make
    for harness in made:
        await harness.aclose()


def shown(recent: RecentOutputs) -> str:
    """Everything the page would get from ``recent``, as text."""
    views = [asdict(d) for d in recent.decisions()] + [asdict(d) for d in recent.dead_letters()]
    return orjson.dumps(views).decode()


async def test_the_processor_hands_over_each_acknowledged_output(
    make_harness: MakeHarness,
) -> None:
    """The observer sees every decision and dead letter once the broker acknowledged it, and
    not an output the broker never acknowledged."""
    seen: list[Flight] = []
    h = make_harness(on_output=seen.append)
    h.sink.fail(answering(0, 3))
    await h.start()
    h.source.feed(record(0), record(1, value=b"{not json"), record(2))
    await h.outputs(3)
    kinds = {f.record.offset: f.outcome.kind for f in seen if f.outcome is not None}
    assert kinds == {0: "decision", 1: "dead_letter", 2: "decision"}
    h.source.feed(record(3))
    with pytest.raises(KafkaDeliveryError):
        await asyncio.wait_for(h.running, 2)
    assert sorted(f.record.offset for f in seen) == [0, 1, 2]


async def test_recent_outputs_keep_the_last_of_each_kind_newest_first(
    make_harness: MakeHarness,
) -> None:
    """Decisions and dead letters are kept apart, newest first, at most ``size`` of each: a
    burst of decisions does not push the last dead letter out."""
    recent = RecentOutputs(size=3)
    acknowledged: list[int] = []

    def observe(flight: Flight) -> None:
        acknowledged.append(flight.record.offset)
        recent(flight)

    h = make_harness(on_output=observe)
    await h.start()
    h.source.feed(record(0, value=b""), *(record(o, key=f"card-{o}") for o in range(1, 8)))
    await h.outputs(8)
    await h.stop()
    decided = [offset for offset in acknowledged if offset != 0]
    assert [d.offset for d in recent.decisions()] == decided[::-1][:3]
    assert [d.event_id for d in recent.decisions()] == [f"p0-{o}" for o in decided[::-1][:3]]
    assert all(d.decision == "APPROVE" and d.partition == 0 for d in recent.decisions())
    (dead,) = recent.dead_letters()
    assert (dead.stage, dead.offset, dead.event_id) == ("decode", 0, None)
    assert dead.error_class.endswith("DecodeError")
    assert dead.message == "record value is empty"


async def test_recent_outputs_show_verdicts_not_event_data(make_harness: MakeHarness) -> None:
    """The page gets an output's verdict, reasons and source, or its error's stage, class,
    status and message: never the event's card, fields or headers."""
    recent = RecentOutputs()
    h = make_harness(on_output=recent)
    h.executor.script(BadRequestError("the API Task refused it", status=400), event_id="p0-0")
    await h.start()
    private = {"key": "4111111111111111", "merchant_id": "m-private-1"}
    h.source.feed(
        record(0, **private, headers=[("x-api-key", b"api-key-value")]),
        record(1, **private),
    )
    await h.outputs(2)
    await h.stop()
    (dead,) = recent.dead_letters()
    assert (dead.stage, dead.http_status, dead.attempts, dead.event_id) == (
        "execute",
        400,
        1,
        "p0-0",
    )
    assert "the API Task refused it" in dead.message
    (decision,) = recent.decisions()
    assert (decision.event_id, decision.decision, decision.offset) == ("p0-1", "APPROVE", 1)
    assert decision.latency_ms is not None
    text = shown(recent)
    for secret in ("4111111111111111", "m-private-1", "api-key-value", "x-api-key"):
        assert secret not in text


def test_a_token_in_a_dead_letter_message_is_redacted_again() -> None:
    """A dead letter whose envelope somehow carries a bearer token or password shows them
    masked: the page redacts every text it shows, whatever the producer of the envelope did."""
    flight = Flight(record(5))
    headers: list[tuple[str, bytes | None]] = [
        (PREFIX + "stage", b"execute"),
        (PREFIX + "class", b"streamproc.errors.BadRequestError"),
        (PREFIX + "message", f"Authorization: Bearer {TOKEN} password=hunter2".encode()),
        (PREFIX + "http_status", b"400"),
        (PREFIX + "attempts", b"2"),
    ]
    output = OutputRecord(topic=DLQ, key=None, value=b"{}", headers=headers)
    flight.outcome = Outcome(output, "dead_letter", "execute")
    recent = RecentOutputs()
    recent(flight)
    (dead,) = recent.dead_letters()
    assert TOKEN not in dead.message
    assert "hunter2" not in dead.message
    assert dead.message.startswith("Authorization: Bearer ***")
    assert (dead.http_status, dead.attempts, dead.offset) == (400, 2, 5)


def test_recent_outputs_are_bounded() -> None:
    """However many outputs pass, at most ``size`` of each kind are kept."""
    recent = RecentOutputs(size=50)
    for offset in range(500):
        flight = Flight(record(offset))
        value = orjson.dumps({"event_id": f"e-{offset}", "decision": "APPROVE", "reasons": []})
        flight.outcome = Outcome(
            OutputRecord(topic="decisions", key=None, value=value, headers=[]),
            "decision",
            "APPROVE",
        )
        recent(flight)
    decisions = recent.decisions()
    assert len(decisions) == 50
    assert decisions[0].event_id == "e-499"
    assert decisions[-1].event_id == "e-450"
