"""What a replay shows while it runs and when it ends."""

from __future__ import annotations

import io

from streamproc.dlq.report import (
    PLAIN_REFRESH_S,
    ProgressView,
    RunFacts,
    Tally,
    progress_line,
    record_line,
    summary_lines,
)
from streamproc.dlq.selection import REPLAY_COUNT, Verdict, read_dead_letter
from tests.unit.dlq.test_selection import ORIGINAL, dead_letter_record


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tally(**counts: int) -> Tally:
    t = Tally(assigned=True)
    for name, value in counts.items():
        setattr(t, name, value)
    return t


def test_the_progress_line_shows_share_counts_and_rate() -> None:
    """Read against total as a bar and a percentage, replays, over-limit ones and the rate."""
    line = progress_line(tally(total=1000, read=520, replayed=400, over_limit=3), 4.0)
    assert line == (
        "[############------------]  52% · 520/1,000 read · 400 replayed · 3 over limit · 100/s"
    )


def test_before_the_group_assigns_partitions_the_line_says_so() -> None:
    """While the group has not assigned partitions yet, no bar claims any progress."""
    assert progress_line(Tally(), 7.2) == (
        "waiting for the consumer group to assign partitions (7 s)"
    )


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    """On a terminal each update rewrites the same line (carriage return, clear to end)."""
    stream, clock = io.StringIO(), Clock()
    view = ProgressView(stream, clock, tty=True)
    view.update(tally(total=10, read=1))
    clock.now += 1
    view.update(tally(total=10, read=5))
    view.close(tally(total=10, read=10))
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "\n" not in text.rstrip("\n")
    assert " 50% · 5/10 read" in text
    assert text.endswith("10/10 read · 0 replayed · 0/s\x1b[K\n")


def test_in_a_pipe_plain_lines_come_every_few_seconds() -> None:
    """Without a terminal: no escape codes, and at most one line per interval."""
    stream, clock = io.StringIO(), Clock()
    view = ProgressView(stream, clock, tty=False)
    view.update(tally(total=10, read=1))  # too early: a short run prints only its summary
    for _ in range(30):
        clock.now += 0.5
        view.update(tally(total=10, read=2))
    view.close(tally(total=10, read=10))
    lines = stream.getvalue().splitlines()
    assert len(lines) == int(15 / PLAIN_REFRESH_S)
    assert all(line.startswith("dlq replay: [") for line in lines)
    assert "\x1b" not in stream.getvalue()
    assert "\r" not in stream.getvalue()


def test_record_lines_say_where_from_and_which_replay() -> None:
    """A dry-run line names the dead letter, the event, stage, class, source and the replay
    number; an over-limit line says how often it was replayed."""
    letter = read_dead_letter(dead_letter_record(original=[*ORIGINAL, (REPLAY_COUNT, b"1")]))
    assert record_line(letter, Verdict.REPLAY, 3, dry_run=True) == (
        "would replay  transactions.dlq:0:5  event e-1  stage validate  EventValidationError"
        "  from transactions:2:77  replay 2 of at most 3"
    )
    assert record_line(letter, Verdict.OVER_LIMIT, 1, dry_run=False) == (
        "over limit    transactions.dlq:0:5  event e-1  stage validate  EventValidationError"
        "  from transactions:2:77  replayed 1 times already (limit 1)"
    )


def test_the_summary_gives_every_count_and_the_position() -> None:
    """The summary names source, target, group and filter, each count and the position."""
    t = tally(total=9, read=9, replayed=4, filtered=3, over_limit=1, not_dead_letters=1)
    t.replayed_by_stage.update({"validate": 3, "execute": 1})
    facts = RunFacts(
        source="transactions.dlq",
        target="transactions",
        group="streamproc-dlq-replay",
        selection="stage validate|execute",
        max_replays=3,
        dry_run=False,
        committed=True,
        outcome="done",
    )
    assert summary_lines(t, facts, 2.0) == [
        "streamproc dlq replay: summary",
        "  from          transactions.dlq (consumer group streamproc-dlq-replay)",
        "  to            transactions",
        "  selected by   stage validate|execute",
        "  read          9 of 9 dead letters",
        "  replayed      4 (validate 3 · execute 1)",
        "  over limit    1 (replayed 3 times already: reported, not replayed)",
        "  filtered out  3",
        "  skipped       1 (no streamproc.error.stage header: not a streamproc dead letter)",
        "  took          2.0 s (2.0 replayed/s)",
        "  position      committed: a next run starts after the records read",
        "  result        done",
    ]


def test_a_dry_run_summary_says_nothing_was_written() -> None:
    """A dry run's summary says "would replay" and that the position was not committed."""
    facts = RunFacts("d", "t", "g", "every dead letter", 3, True, False, "done")
    lines = summary_lines(tally(read=2, replayed=2), facts, 1.0)
    assert lines[0].endswith("(dry run: nothing written, position not committed)")
    assert "  would replay  2" in lines
    assert "  position      not committed (dry run)" in lines
