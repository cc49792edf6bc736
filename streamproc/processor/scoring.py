"""Scoring one event: execute each routed API Task within its budget, retry, meet the deadline.

Per API Task a :class:`TaskRunner` takes a budget slot, executes once, and on a retryable error
backs off and tries again while the policy and the event's deadline allow it. The
:class:`EventScorer` runs the routed tasks concurrently and waits no longer than the deadline.
When the deadline comes first, the event is decided by fallback at once; a task still waiting
for a slot or backing off is cancelled, and one whose execute is on the wire is left to finish
(its slot stays taken until the API Task lets go of it: releasing early would overrun the real
budget). Its result, when it comes, is dropped and counted as late.

Each runner has its allocation's :class:`~streamproc.core.circuit.CircuitBreaker`: while the
endpoint is known to be down, an event falls back at once (``circuit_open``) instead of
spending a slot and an attempt timeout on it. A slot is taken only while an execute can still
finish in time by the recent service time (:class:`~streamproc.core.service_time.ServiceTime`),
and when that estimate has refused every event for a while, one execute goes ahead anyway as a
probe, so the estimate is re-learned rather than trusted for ever.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from prometheus_client import Counter

from streamproc.config import ApiTaskSettings
from streamproc.controlroom.values import BotValue
from streamproc.core.circuit import CircuitBreaker
from streamproc.core.deadlines import Deadline
from streamproc.core.mapping import TaskVerdict, read_task_output
from streamproc.core.retry import RetryPolicy, classify, next_delay
from streamproc.core.service_time import ServiceTime
from streamproc.errors import (
    ControlRoomError,
    EndpointConnectionError,
    EndpointTimeoutError,
    OverConcurrencyLimitError,
    RetryableError,
    ServerError,
    StreamprocError,
)
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.limiter import AsyncBudget

log = get_logger("processor.scoring")

TaskState = Literal["pending", "waiting_budget", "executing", "backoff", "done", "failed"]
FallbackReason = Literal[
    "deadline",
    "over_budget",
    "endpoint_unavailable",
    "retries_exhausted",
    "expired_on_arrival",
    "circuit_open",
]
# Failures that say the endpoint is unavailable, as opposed to busy (429) or refusing one event.
_UNAVAILABLE = (ServerError, EndpointConnectionError, EndpointTimeoutError)
# When the service-time estimate has refused every event this long, let one through anyway.
_ESTIMATE_PROBE_AFTER_S = 1.0


class ExecuteOutcome(Protocol):
    @property
    def outputs(self) -> dict[str, BotValue]: ...


class Executor(Protocol):
    """What a runner needs from ``controlroom.ExecuteSession``."""

    async def execute(
        self,
        bot_input: Mapping[str, BotValue],
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> ExecuteOutcome: ...


class RetriesExhaustedError(StreamprocError):
    """Every attempt the policy and the deadline allowed failed with a retryable error."""

    def __init__(self, last: RetryableError, attempts: int) -> None:
        self.last = last
        self.attempts = attempts
        super().__init__(f"gave up after {attempts} attempt(s): {last}")


class BudgetTimeoutError(StreamprocError):
    """No slot of the allocation's budget came free before the deadline."""


class CircuitOpenError(StreamprocError):
    """The allocation's circuit breaker is open: the endpoint is known to be unavailable."""


@dataclass(slots=True)
class TaskProgress:
    """What one API Task did for one event: read by the decision and the fallback reason."""

    name: str
    state: TaskState = "pending"
    attempts: int = 0
    latency_s: float = 0.0
    status: int | None = None
    verdict: TaskVerdict | None = None
    error: Exception | None = None
    failure: FallbackReason | None = None
    abandoned: bool = False

    def fallback_reason(self) -> FallbackReason:
        """Why this task has no verdict at the deadline, from what it was doing then."""
        if self.state == "waiting_budget":
            return "over_budget"
        if self.state == "backoff" and isinstance(self.error, RetryableError):
            return _reason_of_last_error(self.error)
        return "deadline"


def _reason_of_last_error(error: RetryableError) -> FallbackReason:
    if isinstance(error, OverConcurrencyLimitError):
        return "over_budget"  # the allocation is full on the Control Room's side
    if isinstance(error, ServerError | EndpointConnectionError):
        return "endpoint_unavailable"
    return "retries_exhausted"


def _fallback_reason(error: BaseException) -> FallbackReason | None:
    """The fallback reason for a task that ended with ``error``; None: permanent, dead-letter."""
    if isinstance(error, BudgetTimeoutError):
        return "over_budget"
    if isinstance(error, CircuitOpenError):
        return "circuit_open"
    if isinstance(error, RetriesExhaustedError):
        return _reason_of_last_error(error.last)
    return None


class _TaskMetrics:
    """One API Task's metric children, bound once: a label lookup per event adds up."""

    def __init__(self, metrics: ProcessorMetrics, task: str) -> None:
        self._attempts = metrics.attempts
        self._task = task
        self._by_outcome: dict[str, Counter] = {}
        self.latency = metrics.execute_latency.labels(task)
        self.late = metrics.late_results.labels(task)

    def attempts(self, outcome: str) -> Counter:
        child = self._by_outcome.get(outcome)
        if child is None:
            child = self._by_outcome[outcome] = self._attempts.labels(self._task, outcome)
        return child


@dataclass(slots=True)
class TaskRunner:
    """Executes one API Task for one event at a time, many events concurrently."""

    settings: ApiTaskSettings
    executor: Executor
    budget: AsyncBudget
    retry: RetryPolicy
    metrics: ProcessorMetrics
    clock: Callable[[], float] = time.time
    rand: Callable[[], float] = random.random
    circuit: CircuitBreaker = field(default_factory=CircuitBreaker)
    service: ServiceTime = field(default_factory=ServiceTime)
    monotonic: Callable[[], float] = time.monotonic
    _children: _TaskMetrics = field(init=False)
    _last_start: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        self._children = _TaskMetrics(self.metrics, self.settings.name)

    @property
    def name(self) -> str:
        return self.settings.name

    async def run(
        self,
        bot_input: Mapping[str, BotValue],
        deadline: Deadline,
        progress: TaskProgress,
        headers: Mapping[str, str],
    ) -> None:
        """Fill ``progress`` with a verdict, or raise the error that ends the attempts."""
        timeout_s = self.settings.attempt_timeout_ms / 1000
        while True:
            started, refuted = await self._admit(deadline, progress)
            progress.state = "executing"
            progress.attempts += 1
            try:
                result = await self.executor.execute(
                    bot_input,
                    timeout_s=timeout_s,
                    headers={**headers, "X-Attempt": str(progress.attempts)},
                )
            except ControlRoomError as exc:
                error = exc
            else:
                if self.circuit.succeeded():
                    # Samples from the outage describe an endpoint that is gone.
                    self.service.reset()
                    log.info("circuit_closed", task=self.name)
                elif self.monotonic() - started < refuted:
                    self.service.reset()  # the estimate refused what the endpoint now answers
                self._observe(progress, started, "ok", 200, sample=True)
                self._accept(progress, result)
                return
            finally:
                # Exactly once per slot: success, failure, or cancellation mid-attempt.
                self.budget.release()
            self._observe(
                progress,
                started,
                type(error).__name__,
                error.status,
                sample=isinstance(error, EndpointTimeoutError),
            )
            if isinstance(error, _UNAVAILABLE):
                self._failed(error, started)
            progress.error = error
            if progress.abandoned:
                progress.state = "failed"
                return
            delay = self._retry_delay(error, progress.attempts, deadline)
            if delay is None:
                progress.state = "failed"
                if isinstance(error, RetryableError):
                    raise RetriesExhaustedError(error, progress.attempts) from error
                raise error
            progress.state = "backoff"
            await asyncio.sleep(delay)

    async def _admit(self, deadline: Deadline, progress: TaskProgress) -> tuple[float, float]:
        """Hold a budget slot for an execute that may start now: its start time, and the
        estimate it tests when it is a probe (0.0 otherwise); or raise why there is none."""
        mono = self.monotonic()
        if self.circuit.refusing(mono):
            progress.state = "failed"
            raise CircuitOpenError(f"{self.name}: the endpoint is unavailable")
        progress.state = "waiting_budget"
        # A slot is only worth taking while an execute can still finish in time: under
        # overload, slots handed to events that will miss their deadline anyway would starve
        # the ones that would not.
        expected_s = self.service.estimate(mono)
        left_s = deadline.remaining(self.clock())
        refuted = 0.0
        if left_s <= expected_s and mono - self._last_start >= _ESTIMATE_PROBE_AFTER_S:
            # Nothing started for a while: probe rather than trust the estimate for ever.
            refuted, expected_s = expected_s, 0.0
        got = await self.budget.acquire(left_s - expected_s)
        if got and deadline.remaining(self.clock()) < expected_s:
            self.budget.release()
            got = False
        if not got:
            progress.state = "failed"
            raise BudgetTimeoutError(f"{self.name}: no budget slot in time for the deadline")
        mono = self.monotonic()
        if not self.circuit.allow(mono):  # it opened while this event waited for a slot
            self.budget.release()
            progress.state = "failed"
            raise CircuitOpenError(f"{self.name}: the endpoint is unavailable")
        self._last_start = mono
        return mono, refuted

    def _failed(self, error: ControlRoomError, started: float) -> None:
        outages = self.circuit.opened
        if not self.circuit.failed(started, self.monotonic()):
            return
        # One warning per outage; each failed probe re-opening it is routine until it ends.
        level = log.warning if self.circuit.opened != outages else log.debug
        level(
            "circuit_opened",
            task=self.name,
            error_class=type(error).__name__,
            http_status=error.status,
        )

    def _retry_delay(
        self, error: ControlRoomError, attempt: int, deadline: Deadline
    ) -> float | None:
        if classify(error) != "retry":
            return None
        return next_delay(
            self.retry,
            attempt,
            retry_after_s=getattr(error, "retry_after", None),
            remaining_s=deadline.remaining(self.clock()),
            expected_latency_s=self.service.estimate(self.monotonic()),
            rand=self.rand(),
        )

    def _observe(
        self,
        progress: TaskProgress,
        started: float,
        outcome: str,
        status: int | None,
        *,
        sample: bool,
    ) -> None:
        now = self.monotonic()
        elapsed = now - started
        progress.latency_s += elapsed
        progress.status = status
        if sample:  # a fast 5xx says nothing about how long an answer takes
            self.service.observe(elapsed, now)
        self._children.attempts(outcome).inc()
        self._children.latency.observe(elapsed)

    def _accept(self, progress: TaskProgress, result: ExecuteOutcome) -> None:
        if progress.abandoned:
            progress.state = "done"
            self._children.late.inc()
            return
        # A malformed output is the API Task's permanent fault for this event.
        progress.verdict = read_task_output(result.outputs, self.settings.mapping.outputs)
        progress.state = "done"


@dataclass(frozen=True, slots=True)
class Scored:
    """Every routed API Task answered in time."""

    progress: tuple[TaskProgress, ...]


@dataclass(frozen=True, slots=True)
class FellBack:
    """The deadline, the budget or the endpoint's health forced a fallback decision."""

    reason: FallbackReason
    progress: tuple[TaskProgress, ...]


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent error: the event goes to the dead-letter topic (stage "execute")."""

    error: BaseException
    task: str
    progress: tuple[TaskProgress, ...]


ScoreOutcome = Scored | FellBack | Failed


class EventScorer:
    """Runs the routed API Tasks of one event concurrently, bounded by its deadline."""

    def __init__(self, runners: Mapping[str, TaskRunner], clock: Callable[[], float] = time.time):
        self.runners = dict(runners)
        self.clock = clock
        self._late: set[asyncio.Task[None]] = set()

    async def score(
        self,
        inputs: Mapping[str, Mapping[str, BotValue]],
        deadline: Deadline,
        headers: Mapping[str, str],
    ) -> ScoreOutcome:
        progress = {name: TaskProgress(name) for name in inputs}
        tasks = {
            asyncio.create_task(
                self.runners[name].run(bot_input, deadline, progress[name], headers),
                name=f"execute:{name}",
            ): name
            for name, bot_input in inputs.items()
        }
        pending = set(tasks)
        # The deadline is in event (wall-clock) time; wait on the loop's monotonic clock so a
        # wall-clock step cannot stretch or cut the wait.
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline.remaining(self.clock())
        try:
            # Until the deadline: a task that ran out of retries or budget leaves the others
            # running, since a verdict still in time (maybe a stricter one) beats a fallback;
            # a permanent error ends the event at once, as a dead letter.
            while pending:
                remaining = until - loop.time()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        continue
                    reason = _fallback_reason(exc)
                    if reason is None:
                        self._abandon(pending, progress, tasks)
                        return Failed(exc, tasks[task], tuple(progress.values()))
                    progress[tasks[task]].failure = reason
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        for task in pending:
            state = progress[tasks[task]]
            state.failure = state.fallback_reason()
        self._abandon(pending, progress, tasks)
        snapshot = tuple(progress.values())
        failure = next((p.failure for p in snapshot if p.failure is not None), None)
        return Scored(snapshot) if failure is None else FellBack(failure, snapshot)

    def _abandon(
        self,
        pending: set[asyncio.Task[None]],
        progress: Mapping[str, TaskProgress],
        tasks: Mapping[asyncio.Task[None], str],
    ) -> None:
        for task in pending:
            state = progress[tasks[task]]
            state.abandoned = True
            if state.state == "executing":
                # Let the execute finish so its budget slot is released when the API Task's
                # is; keep a reference so the task is not garbage-collected mid-flight.
                self._late.add(task)
                task.add_done_callback(self._forget)
            else:
                task.cancel()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure is expected, not an unhandled error

    async def aclose(self) -> None:
        """Wait for abandoned executes still on the wire (bounded by their attempt timeout)."""
        if self._late:
            await asyncio.wait(set(self._late))
