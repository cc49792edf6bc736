"""Admission to an allocation's slots: which waiting event a free slot takes, which to shed.

An allocation has ``C`` slots, and an execute takes a service time ``S``. Above ``C / E[S]``
events per second, some events must be decided by fallback; the point is that every slot
still goes to an execute that finishes in time, and that the others are shed cheaply and
early. The policy, after "Fail at Scale" (Maurer, ACM Queue 2015) and CoDel (Nichols and
Jacobson, 2012):

- **Arrival order while the queue drains.** When the queue has been empty within the last
  ``standing_s``, it is a burst: free slots take the oldest event first (FIFO), so no event
  waits behind later ones.
- **Newest first under a standing queue.** When it has not been empty for ``standing_s``, the
  offered load exceeds the slots: free slots take the newest event (LIFO), which has the most
  time left, and the oldest, the likeliest to miss anyway, are shed from the old end.
- **Only what can finish in time.** An event is started only when ``now + S_q`` is within its
  deadline, ``S_q`` being a high quantile of recent service times. A waiting event is shed
  ("over_budget": no slot came in time) as soon as it is predicted to miss: behind ``k``
  others it starts after about ``k * S_typ / C`` (``S_typ`` the median service time), and the
  oldest waits behind every other one under newest-first. So, under sustained overload, the
  events that will not be scored get their fallback early, not at their deadline, and a
  backlog with a long deadline is still scored in full.
- **Predicted at arrival.** An arriving event that would wait behind ``k`` others and then
  still need ``S_q`` past its deadline is refused at once ("infeasible"), before it takes any
  room.

Items are the caller's objects with a ``deadline`` (epoch seconds) and a ``waiting`` flag; an
item whose ``waiting`` went False (decided meanwhile, or its partition revoked) is dropped
when met. Every operation is amortised O(1): an item enters the deque once and leaves it once.
Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class AdmissionPolicy(BaseModel):
    """How an allocation's queue is served and shed (``[processing.admission]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Serve newest first under a standing queue; false keeps arrival order always.
    adaptive_lifo: bool = True
    # A queue that was not empty for this long is standing, not a burst.
    standing_ms: float = Field(100.0, gt=0, le=60_000, allow_inf_nan=False)
    # The service-time quantile an execute must fit in before its deadline.
    service_quantile: float = Field(0.95, gt=0, le=1.0, allow_inf_nan=False)


class Plan(NamedTuple):
    """What admission plans with: service-time quantile and median, and the slots."""

    quantile_s: float
    typical_s: float
    slots: int


class Waiting(Protocol):
    @property
    def deadline(self) -> float: ...

    @property
    def waiting(self) -> bool: ...


W = TypeVar("W", bound=Waiting)


class AdmissionQueue(Generic[W]):
    """The events waiting for one allocation's slots."""

    __slots__ = ("_entries", "_last_empty", "_lifo", "_standing_s")

    def __init__(self, policy: AdmissionPolicy | None = None, *, now: float = 0.0) -> None:
        policy = policy or AdmissionPolicy()
        self._lifo = policy.adaptive_lifo
        self._standing_s = policy.standing_ms / 1000
        self._entries: deque[W] = deque()  # oldest first
        self._last_empty = now

    def __len__(self) -> int:
        return len(self._entries)

    def standing(self, now: float) -> bool:
        """Whether the queue has held something continuously for ``standing_ms``."""
        if not self._entries:
            self._last_empty = now
            return False
        return now - self._last_empty >= self._standing_s

    def feasible(self, deadline: float, now: float, plan: Plan) -> bool:
        """Whether an event arriving now could still start and finish by ``deadline``."""
        ahead = 0 if self._lifo and self.standing(now) else len(self._entries)
        start = now + (ahead + 1) * plan.typical_s / max(plan.slots, 1)
        return start + plan.quantile_s <= deadline

    def push(self, item: W, now: float) -> None:
        if not self._entries:
            self._last_empty = now
        self._entries.append(item)

    def pop(self, now: float, plan: Plan, shed: list[W]) -> W | None:
        """The item a free slot should execute now, or None; items predicted to miss their
        deadline go to ``shed``."""
        self.sweep(now, plan, shed)
        quantile_s = plan.quantile_s
        entries = self._entries
        newest_first = self._lifo and self.standing(now)
        while entries:
            item = entries.pop() if newest_first else entries.popleft()
            if not item.waiting:
                continue
            if now + quantile_s > item.deadline:
                shed.append(item)
                continue
            if not entries:
                self._last_empty = now
            return item
        self._last_empty = now
        return None

    def sweep(self, now: float, plan: Plan, shed: list[W]) -> None:
        """Shed from the old end what is predicted to miss its deadline."""
        entries = self._entries
        last_in_line = self._lifo and self.standing(now)
        per_slot_s = plan.typical_s / max(plan.slots, 1)
        while entries:
            item = entries[0]
            if not item.waiting:
                entries.popleft()
                continue
            ahead = len(entries) - 1 if last_in_line else 0
            if now + ahead * per_slot_s + plan.quantile_s <= item.deadline:
                break
            entries.popleft()
            shed.append(item)
        if not entries:
            self._last_empty = now

    def drain(self) -> list[W]:
        """Every item still waiting, oldest first; the queue is left empty."""
        items = [item for item in self._entries if item.waiting]
        self._entries.clear()
        return items
