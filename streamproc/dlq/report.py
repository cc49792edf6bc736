"""What a replay tells its operator: one line per notable record, progress, and a summary.

Progress goes to stderr so that stdout (the record lines and the summary) can be piped: on a
terminal a bar redrawn in place, elsewhere (a pipe, a CI log) a plain line every few seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from streamproc.dlq.selection import DeadLetter, Verdict

TTY_REFRESH_S: Final = 0.1
PLAIN_REFRESH_S: Final = 5.0
BAR_WIDTH: Final = 24


@dataclass(slots=True)
class Tally:
    """Counts of one run; ``total`` is what there is to read, known once partitions are held."""

    assigned: bool = False  # the group has given this run its partitions
    total: int = 0
    read: int = 0
    replayed: int = 0  # acknowledged by the broker (in a dry run: would be replayed)
    filtered: int = 0
    over_limit: int = 0
    not_dead_letters: int = 0
    failed: int = 0
    replayed_by_stage: Counter[str] = field(default_factory=Counter)

    def count(self, verdict: Verdict) -> None:
        """One dead letter read, with what was decided for it (replays count when acked)."""
        self.read += 1
        if verdict is Verdict.FILTERED:
            self.filtered += 1
        elif verdict is Verdict.OVER_LIMIT:
            self.over_limit += 1
        elif verdict is Verdict.NOT_A_DEAD_LETTER:
            self.not_dead_letters += 1


def record_line(letter: DeadLetter, verdict: Verdict, max_replays: int, *, dry_run: bool) -> str:
    """One line about a record a replay writes (in a dry run) or refuses (over the limit)."""
    name = (letter.error_class or "?").rsplit(".", 1)[-1]
    source = (
        f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"
        if letter.source_topic
        else "?"
    )
    what = f"event {letter.event_id or '-'}  stage {letter.stage}  {name}  from {source}"
    if verdict is Verdict.OVER_LIMIT:
        return (
            f"over limit    {letter.coordinates}  {what}  replayed {letter.replay_count} times"
            f" already (limit {max_replays})"
        )
    label = "would replay" if dry_run else "replayed"
    return (
        f"{label:<13} {letter.coordinates}  {what}  replay {letter.replay_count + 1}"
        f" of at most {max_replays}"
    )


def progress_line(tally: Tally, elapsed_s: float) -> str:
    """``[#####-----]  52%  520/1,000 read · 400 replayed · 3 over limit · 98/s``."""
    if not tally.assigned:
        return f"waiting for the consumer group to assign partitions ({elapsed_s:.0f} s)"
    total = max(tally.total, tally.read)
    share = tally.read / total if total else 1.0
    filled = round(share * BAR_WIDTH)
    rate = tally.replayed / elapsed_s if elapsed_s > 0 else 0.0
    parts = [
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {share:4.0%}",
        f"{tally.read:,}/{total:,} read",
        f"{tally.replayed:,} replayed",
    ]
    if tally.over_limit:
        parts.append(f"{tally.over_limit:,} over limit")
    if tally.failed:
        parts.append(f"{tally.failed:,} failed")
    parts.append(f"{rate:,.0f}/s")
    return " · ".join(parts)


class ProgressView:
    """Shows :func:`progress_line` on ``stream`` at a bounded pace; ``clock`` is monotonic."""

    def __init__(self, stream: TextIO, clock: Callable[[], float], *, tty: bool) -> None:
        self._stream = stream
        self._clock = clock
        self._tty = tty
        self._started = clock()
        self._shown_at: float | None = None
        self._drawn = False

    def update(self, tally: Tally, *, force: bool = False) -> None:
        now = self._clock()
        every = TTY_REFRESH_S if self._tty else PLAIN_REFRESH_S
        if not force and self._shown_at is not None and now - self._shown_at < every:
            return
        if not force and self._shown_at is None and not self._tty and now - self._started < every:
            return  # a short run in a pipe needs no progress line, only its summary
        self._shown_at = now
        line = progress_line(tally, now - self._started)
        if self._tty:
            self._stream.write(f"\r{line}\x1b[K")
            self._drawn = True
        else:
            self._stream.write(f"dlq replay: {line}\n")
        self._stream.flush()

    def interrupt(self) -> None:
        """Clear the bar so a line can be printed; it is redrawn on the next update."""
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False
            self._shown_at = None

    def close(self, tally: Tally) -> None:
        """Leave the final state on screen (a terminal) and end its line."""
        if self._tty:
            self.update(tally, force=True)
            self._stream.write("\n")
            self._stream.flush()

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the summary names besides the counts."""

    source: str
    target: str
    group: str
    selection: str
    max_replays: int
    dry_run: bool
    committed: bool
    outcome: str  # "done", "interrupted" or why it stopped


def summary_lines(tally: Tally, facts: RunFacts, elapsed_s: float) -> list[str]:
    dry = facts.dry_run
    title = "streamproc dlq replay: summary" + (
        " (dry run: nothing written, position not committed)" if dry else ""
    )
    stages = " · ".join(f"{s} {n:,}" for s, n in tally.replayed_by_stage.most_common())
    rate = tally.replayed / elapsed_s if elapsed_s > 0 else 0.0
    lines = [
        title,
        f"  from          {facts.source} (consumer group {facts.group})",
        f"  to            {facts.target}",
        f"  selected by   {facts.selection}",
        f"  read          {tally.read:,} of {max(tally.total, tally.read):,} dead letters",
        f"  {'would replay' if dry else 'replayed':<13} {tally.replayed:,}"
        + (f" ({stages})" if stages else ""),
        f"  over limit    {tally.over_limit:,} (replayed {facts.max_replays} times already:"
        " reported, not replayed)",
        f"  filtered out  {tally.filtered:,}",
    ]
    if tally.not_dead_letters:
        lines.append(
            f"  skipped       {tally.not_dead_letters:,} (no streamproc.error.stage header:"
            " not a streamproc dead letter)"
        )
    if tally.failed:
        lines.append(f"  failed        {tally.failed:,} (not acknowledged by the broker)")
    lines.append(f"  took          {elapsed_s:.1f} s ({rate:,.1f} replayed/s)")
    if dry:
        position = "not committed (dry run)"
    elif facts.committed:
        position = "committed: a next run starts after the records read"
    else:
        position = "unchanged: nothing was read"
    lines.append(f"  position      {position}")
    lines.append(f"  result        {facts.outcome}")
    return lines
