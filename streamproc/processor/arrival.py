"""The arrival stage: an event whose turn has come (the head of its key's lane) is judged.

In order, each a cheap, synchronous decision:

1. **Expired?** Past its deadline, or too close to it for any execute: fallback
   ``expired_on_arrival`` at once, without spending an execute.
2. **Routed and mapped.** The routing rules pick its API Tasks; each task's request body is
   built once now (a mapping error makes a dead letter, stage ``map``).
3. **Admitted per allocation.** Each allocation takes its work to execute, or refuses it on
   the spot: the circuit is open (``circuit_open``), or the event is predicted not to finish
   in time (``infeasible``). When every task refused, the event is decided at once.

What this returns is the event's outcome when it is already decided, else None: its works are
running or queued, and the allocations report them as they finish.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from streamproc.config import Settings
from streamproc.core.deadlines import deadline_epoch, expired_on_arrival
from streamproc.core.mapping import compile_bot_input
from streamproc.errors import BadInputError
from streamproc.processor.allocation import Allocation
from streamproc.processor.flight import Flight, Work
from streamproc.processor.outcomes import Outcome, Outcomes


class Arrival:
    def __init__(
        self,
        settings: Settings,
        allocations: Mapping[str, Allocation],
        outcomes: Outcomes,
    ) -> None:
        proc = settings.processing
        self._sla_s = proc.decision_sla_ms / 1000
        if proc.delivery == "exactly_once":
            # A decision is seen only when its transaction commits, up to one interval later:
            # the deadline counts to that commit, so the event must be decided sooner.
            self._sla_s -= proc.transaction_interval_ms / 1000
        self._min_useful_s = proc.min_useful_ms / 1000
        self._skew_s = proc.clock_skew_tolerance_ms / 1000
        self._routing = settings.routing
        self._inputs = {t.name: compile_bot_input(t.mapping) for t in settings.api_tasks}
        self._allocations = allocations
        self._outcomes = outcomes

    def begin(self, flight: Flight, now: float) -> Outcome | None:
        """Judge ``flight`` now: its outcome when decided at once, else None (works admitted)."""
        event = flight.event
        assert event is not None
        deadline = deadline_epoch(event.occurred_at_epoch, self._sla_s, now, self._skew_s)
        if expired_on_arrival(deadline, now, self._min_useful_s):
            return self._outcomes.fallback(flight, "expired_on_arrival")
        flight.deadline = deadline
        route = self._routing.route(event)
        flight.rule = route.rule
        try:
            works = tuple(
                Work(flight, name, _compact(orjson.dumps({"botInput": self._inputs[name](event)})))
                for name in route.tasks
            )
        except BadInputError as exc:
            return self._outcomes.dead_letter(flight.record, exc)
        flight.works = works
        flight.open = len(works)
        for work in works:
            reason = self._allocations[work.task].admit(work, now)
            if reason is not None:
                work.state = "failed"
                work.failure = reason
                flight.open -= 1
        if flight.open == 0:
            return self._outcomes.decided(flight)
        return None


def _compact(body: bytes) -> bytes:
    """``body`` in a buffer of its own length: orjson returns its output in a 4 KB one, and
    a body waits in the admission queue, possibly thousands at a time."""
    return bytes(memoryview(body))
