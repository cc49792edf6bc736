"""Reading decisions and dead letters back, and the lines ``streamproc tail`` prints."""

from __future__ import annotations

from decimal import Decimal

import orjson

from streamproc.core.deadletters import dead_letter_headers_for
from streamproc.core.decisions import (
    FallbackPolicy,
    SourceRef,
    TaskReport,
    decide,
    fallback_decision,
)
from streamproc.core.events import decode_event
from streamproc.core.mapping import TaskVerdict
from streamproc.demo.generator import HEADER_EVENT_ID, HEADER_KIND
from streamproc.demo.outputs import (
    dead_letter_json,
    format_line,
    header,
    parse_dead_letter,
    parse_decision,
)
from streamproc.demo.tail import record_line
from streamproc.errors import DecodeError
from streamproc.kafka.records import ConsumedRecord

SOURCE = SourceRef("transactions", 2, 41)
EVENT = decode_event(
    b'{"event_id":"evt-7","occurred_at":"2026-03-14T09:26:53.000Z","amount":1500,'
    b'"currency":"USD","card_id":"card-1","country":"FR","card_country":"US"}'
)
OCCURRED = EVENT.occurred_at_epoch


def scored() -> tuple[bytes, list[tuple[str, bytes]]]:
    verdict = TaskVerdict(Decimal(45), "REVIEW", ("high_amount", "cross_border"))
    record = decide(
        EVENT,
        "default",
        [TaskReport("fraud", verdict, attempts=1, latency_ms=18.0)],
        combine="strictest",
        fallback=FallbackPolicy(),
        now_epoch=OCCURRED + 0.0234,
        source=SOURCE,
    )
    return record.to_json(), record.headers()


def dead() -> tuple[bytes, list[tuple[str, bytes | None]]]:
    original: list[tuple[str, bytes | None]] = [
        (HEADER_KIND, b"bad_json"),
        (HEADER_EVENT_ID, b"evt-9"),
    ]
    headers = dead_letter_headers_for(
        original,
        DecodeError("record value is not JSON: Expecting value"),
        attempts=0,
        source_topic="transactions",
        partition=1,
        offset=7,
        now_epoch=OCCURRED,
    )
    return b'{"event_id": "evt-9", "amo', headers


def test_a_decision_reads_back_with_score_reasons_and_latency() -> None:
    """The decision record the processor writes parses into its id, verdict and timing."""
    value, headers = scored()
    output = parse_decision(value, headers)
    assert output.kind == "decision"
    assert (output.event_id, output.decision, output.score) == ("evt-7", "REVIEW", "45")
    assert output.reasons == ("high_amount", "cross_border")
    assert output.fallback_reason is None
    assert output.latency_ms is not None
    assert abs(output.latency_ms - 23.4) < 0.01


def test_a_fallback_decision_reads_back_with_its_reason() -> None:
    """A fallback names its reason and has no score."""
    record = fallback_decision(
        EVENT, "over_budget", OCCURRED + 0.5, policy=FallbackPolicy(), source=SOURCE
    )
    output = parse_decision(record.to_json(), record.headers())
    assert (output.decision, output.fallback_reason, output.score) == (
        "REVIEW",
        "over_budget",
        None,
    )


def test_a_decision_with_an_unreadable_value_falls_back_to_its_headers() -> None:
    """When the value is not JSON, the id, decision and latency come from the headers."""
    _, headers = scored()
    output = parse_decision(b"not json", headers)
    assert (output.event_id, output.decision) == ("evt-7", "REVIEW")
    assert output.latency_ms is not None


def test_a_dead_letter_reads_back_with_stage_class_and_the_sample_event_id() -> None:
    """A dead letter whose value is broken JSON still names its event via the sample header."""
    value, headers = dead()
    output = parse_dead_letter(value, headers)
    assert output.kind == "dead_letter"
    assert (output.event_id, output.stage) == ("evt-9", "decode")
    assert output.error_class == "streamproc.errors.DecodeError"
    assert output.error_message == "record value is not JSON: Expecting value"


def test_a_dead_letter_without_the_sample_header_takes_the_id_from_its_value() -> None:
    """Records from other producers are matched by the value's event_id when readable."""
    headers = [("streamproc.error.stage", b"validate")]
    assert parse_dead_letter(b'{"event_id": "x-1"}', headers).event_id == "x-1"
    assert parse_dead_letter(b"", headers).event_id is None


def test_the_last_header_of_a_name_wins() -> None:
    """As in Kafka clients, a repeated header name means its last value."""
    assert header([("a", b"1"), ("a", b"2"), ("b", None)], "a") == "2"
    assert header([("b", None)], "b") is None
    assert header(None, "a") is None


def test_tail_lines_are_compact_and_say_what_happened() -> None:
    """Decision lines show id, decision, score, latency and reasons; dead letters their error."""
    value, headers = scored()
    assert format_line(parse_decision(value, headers)) == (
        "evt-7  REVIEW   score=45      23.4 ms  high_amount,cross_border"
    )
    fallback = fallback_decision(
        EVENT, "deadline", OCCURRED + 0.5, policy=FallbackPolicy(), source=SOURCE
    )
    assert format_line(parse_decision(fallback.to_json(), fallback.headers())) == (
        "evt-7  REVIEW   fallback=deadline    500.0 ms"
    )
    dl_value, dl_headers = dead()
    assert format_line(parse_dead_letter(dl_value, dl_headers)) == (
        "evt-9  DEAD LETTER  stage=decode  DecodeError: record value is not JSON: Expecting value"
    )


def test_tail_json_lines_are_the_decision_or_the_dead_letter_envelope() -> None:
    """--json prints the decision value itself, or the dead letter's error, source and value."""
    value, headers = scored()
    decision = ConsumedRecord("decisions", 0, 5, b"card-1", value, list(headers))
    assert orjson.loads(record_line(decision, as_json=True))["event_id"] == "evt-7"

    dl_value, dl_headers = dead()
    letter = ConsumedRecord("transactions.dlq", 0, 3, b"card-2", dl_value, dl_headers)
    body = orjson.loads(record_line(letter, as_json=True))
    assert body["event_id"] == "evt-9"
    assert (body["stage"], body["sample_kind"]) == ("decode", "bad_json")
    assert body["source"] == {"topic": "transactions", "partition": "1", "offset": "7"}
    assert body["dead_letter"] == {"topic": "transactions.dlq", "partition": 0, "offset": 3}
    assert body["value"] == '{"event_id": "evt-9", "amo'
    assert record_line(letter, as_json=False).startswith("evt-9  DEAD LETTER  stage=decode")


def test_dead_letter_json_cuts_long_values() -> None:
    """An oversized value is summarised by its size and its first characters."""
    body = orjson.loads(dead_letter_json(None, b"x" * 70_000, [], topic="t", partition=0, offset=0))
    assert body["value_bytes"] == 70_000
    assert len(body["value"]) == 500
    assert body["key"] is None
