"""Reading dead letters, choosing which to replay, and the headers a replay writes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import streamproc
import streamproc.dlq
from streamproc.core.deadletters import dead_letter_headers
from streamproc.dlq.selection import (
    REPLAY_COUNT,
    REPLAY_SOURCE,
    ReplayFilter,
    Verdict,
    parse_event_ids,
    parse_instant,
    parse_offsets,
    read_dead_letter,
    replay_headers,
    verdict,
)
from streamproc.kafka.records import ConsumedRecord
from tests.unit.core.test_purity import offending_imports

NOW = 1795889055.25  # 2026-11-28T18:04:15.250Z
ORIGINAL: list[tuple[str, bytes | None]] = [("trace", b"abc"), ("empty", None), ("trace", b"d")]


def dead_letter_record(
    *,
    stage: str = "validate",
    error_class: str = "streamproc.errors.EventValidationError",
    partition: int = 2,
    offset: int = 77,
    failed_at: float = NOW,
    original: list[tuple[str, bytes | None]] | None = None,
    value: bytes | None = b'{"event_id": "e-1", "amount": "x"}',
    dlq_offset: int = 5,
) -> ConsumedRecord:
    headers = dead_letter_headers(
        ORIGINAL if original is None else original,
        stage=stage,  # type: ignore[arg-type]
        error_class=error_class,
        message="amount must be a number",
        http_status=None,
        attempts=0,
        source_topic="transactions",
        partition=partition,
        offset=offset,
        now_epoch=failed_at,
    )
    return ConsumedRecord("transactions.dlq", 0, dlq_offset, b"card-1", value, headers)


def test_a_dead_letter_is_read_with_its_original_headers_apart() -> None:
    """The envelope's fields are parsed and the original headers come back exactly, in order."""
    letter = read_dead_letter(dead_letter_record())
    assert letter.original_headers == tuple(ORIGINAL)
    assert (letter.stage, letter.error_class) == (
        "validate",
        "streamproc.errors.EventValidationError",
    )
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "transactions",
        2,
        77,
    )
    assert letter.failed_at == pytest.approx(NOW)
    assert (letter.replay_count, letter.event_id, letter.coordinates) == (
        0,
        "e-1",
        "transactions.dlq:0:5",
    )


def test_a_dead_letter_of_a_replayed_record_takes_the_last_envelope() -> None:
    """A replayed record that failed again carries its replay count among its original headers;
    with two envelopes (replayed by an older tool), the last value of each header wins."""
    first = dead_letter_record(stage="execute", original=[("trace", b"abc")])
    again = dead_letter_record(
        stage="validate", original=[*first.headers, (REPLAY_COUNT, b"2")], partition=1
    )
    letter = read_dead_letter(again)
    assert (letter.stage, letter.source_partition, letter.replay_count) == ("validate", 1, 2)
    assert letter.original_headers == (("trace", b"abc"),)


def test_replay_headers_are_the_originals_plus_count_and_source() -> None:
    """Replaying writes the original headers unchanged, a count one higher, and the source."""
    letter = read_dead_letter(dead_letter_record(original=[*ORIGINAL, (REPLAY_COUNT, b"1")]))
    assert replay_headers(letter) == [
        *ORIGINAL,
        (REPLAY_COUNT, b"2"),
        (REPLAY_SOURCE, b"transactions.dlq:0:5"),
    ]


def test_a_record_without_an_envelope_is_not_a_dead_letter() -> None:
    """A record with no streamproc.error.stage header is never replayed."""
    record = ConsumedRecord("transactions.dlq", 0, 1, None, b"{}", [("trace", b"x")])
    assert verdict(read_dead_letter(record), ReplayFilter(), 3) is Verdict.NOT_A_DEAD_LETTER


def test_the_replay_limit_counts_earlier_replays() -> None:
    """Below the limit a selected record is replayed; at the limit it is over the limit; a
    record the filter does not select is filtered whatever its count."""
    counted = [*ORIGINAL, (REPLAY_COUNT, b"2")]
    letter = read_dead_letter(dead_letter_record(original=counted))
    assert verdict(letter, ReplayFilter(), 3) is Verdict.REPLAY
    assert verdict(letter, ReplayFilter(), 2) is Verdict.OVER_LIMIT
    assert verdict(letter, ReplayFilter(stages=frozenset({"map"})), 2) is Verdict.FILTERED


HOUR = 3600.0


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (ReplayFilter(), True),
        (ReplayFilter(stages=frozenset({"validate", "map"})), True),
        (ReplayFilter(stages=frozenset({"execute"})), False),
        (ReplayFilter(error_classes=frozenset({"EventValidationError"})), True),
        (ReplayFilter(error_classes=frozenset({"streamproc.errors.EventValidationError"})), True),
        (ReplayFilter(error_classes=frozenset({"ValidationError"})), False),
        (ReplayFilter(failed_since=NOW - HOUR, failed_before=NOW + HOUR), True),
        (ReplayFilter(failed_since=NOW), True),
        (ReplayFilter(failed_before=NOW), False),
        (ReplayFilter(failed_since=NOW + 1), False),
        (ReplayFilter(source_partitions=frozenset({2, 3})), True),
        (ReplayFilter(source_partitions=frozenset({0})), False),
        (ReplayFilter(first_offset=77, last_offset=77), True),
        (ReplayFilter(first_offset=70), True),
        (ReplayFilter(last_offset=76), False),
        (ReplayFilter(first_offset=78), False),
        (ReplayFilter(event_ids=frozenset({"e-0", "e-1"})), True),
        (ReplayFilter(event_ids=frozenset({"e-2"})), False),
        (ReplayFilter(stages=frozenset({"validate"}), source_partitions=frozenset({0})), False),
    ],
)
def test_filters(selection: ReplayFilter, selected: bool) -> None:
    """Each criterion selects by its envelope field (or the value's event id); all must hold."""
    letter = read_dead_letter(dead_letter_record())
    assert selection.matches(letter) is selected


def test_a_dead_letter_without_the_filtered_field_is_not_selected() -> None:
    """A time, offset or event-id filter never selects a dead letter that lacks the field."""
    record = dead_letter_record(value=b"not json")
    bare = ConsumedRecord(
        record.topic,
        0,
        1,
        None,
        record.value,
        [(n, v) for n, v in record.headers if not n.endswith(("failed_at", "source.offset"))],
    )
    letter = read_dead_letter(bare)
    assert letter.event_id is None
    assert not ReplayFilter(failed_since=0).matches(letter)
    assert not ReplayFilter(first_offset=0).matches(letter)
    assert not ReplayFilter(event_ids=frozenset({"e-1"})).matches(letter)
    assert ReplayFilter(stages=frozenset({"validate"})).matches(letter)


def test_filter_problems_name_the_flags() -> None:
    """An empty time window or offset range, or an unknown stage, is named in flag terms."""
    problems = ReplayFilter(
        stages=frozenset({"parse"}),
        failed_since=NOW,
        failed_before=NOW,
        first_offset=9,
        last_offset=3,
    ).problems()
    assert problems == [
        "--stage: unknown stage(s) parse",
        "--since must be earlier than --until",
        "--offsets: the first offset is after the last",
    ]
    assert ReplayFilter(failed_since=NOW, failed_before=NOW + 1).problems() == []


def test_describe_says_what_was_selected() -> None:
    """The summary's "selected by" line names every criterion, or says there was none."""
    assert ReplayFilter().describe() == "every dead letter"
    text = ReplayFilter(
        stages=frozenset({"validate", "execute"}),
        failed_since=NOW,
        first_offset=10,
        event_ids=frozenset({"a", "b"}),
    ).describe()
    assert text == (
        "stage execute|validate · failed since 2026-11-28T18:04:15.250Z · offsets 10.. · "
        "2 event id(s)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1.5d", NOW - 129600),
        ("2026-11-28T18:04:15.250Z", NOW),
        ("2026-11-28T19:04:15.250+01:00", NOW),
        ("2026-11-28", 1795824000.0),
    ],
)
def test_times_are_rfc3339_dates_or_ago(text: str, expected: float) -> None:
    """--since/--until take an RFC 3339 date-time, a UTC date, or a duration back from now."""
    assert parse_instant(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-11-28T18:04:15", "-5m", ""])
def test_bad_times_are_refused_with_the_accepted_forms(text: str) -> None:
    """Anything else is a ValueError whose message lists what is accepted."""
    with pytest.raises(ValueError, match=r"is not a real date|time ago"):
        parse_instant(text, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100..200", (100, 200)), ("100..", (100, None)), ("..200", (None, 200)), ("7", (7, 7))],
)
def test_offset_ranges(text: str, expected: tuple[int | None, int | None]) -> None:
    """--offsets takes FIRST..LAST with either end optional, or one offset."""
    assert parse_offsets(text) == expected


@pytest.mark.parametrize("text", ["..", "", "a..b", "-5..7", "1-2", "1...2"])
def test_bad_offset_ranges_are_refused(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match=r"is not FIRST\.\.LAST"):
        parse_offsets(text)


def test_event_ids_may_be_repeated_or_comma_separated() -> None:
    """--event-id a,b --event-id c selects a, b and c."""
    assert parse_event_ids(["a,b", " c ", ","]) == frozenset({"a", "b", "c"})


def test_event_id_comes_from_the_value_only_when_it_is_a_string() -> None:
    """A value that is not a JSON object with a string event_id has no event id."""
    for value in (b"[1]", orjson.dumps({"event_id": 7}), b"", None):
        assert read_dead_letter(dead_letter_record(value=value)).event_id is None


PURE = [
    Path(streamproc.dlq.__file__).parent / "selection.py",
    Path(streamproc.dlq.__file__).parent / "pacing.py",
    # The plain record types the selection reads; they must stay free of I/O too.
    Path(streamproc.__file__).parent / "kafka" / "records.py",
]


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_the_selection_logic_is_pure(path: Path) -> None:
    """Filtering, pacing and the record types import no I/O, clock or logging module, and no
    streamproc module other than the pure ones (the core and the plain record types)."""
    leaks = [m for m in offending_imports(path.read_text()) if m != "streamproc.kafka.records"]
    assert leaks == []
