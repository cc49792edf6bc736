"""TaskRunner and EventScorer: execute within the budget, retry within the deadline, fall back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from streamproc.config import ApiTaskSettings
from streamproc.controlroom.values import BotValue, StringValue
from streamproc.core.circuit import CircuitBreaker, CircuitPolicy
from streamproc.core.deadlines import Deadline
from streamproc.core.retry import RetryPolicy
from streamproc.errors import (
    AuthError,
    BadOutputError,
    BadRequestError,
    ControlRoomError,
    EndpointTimeoutError,
    OverConcurrencyLimitError,
    ServerError,
)
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.processor.limiter import AsyncBudget
from streamproc.processor.scoring import (
    EventScorer,
    Failed,
    FellBack,
    Scored,
    ScoreOutcome,
    TaskRunner,
)
from tests.unit.processor.fakes import (
    Advance,
    FakeClock,
    FakeExecutor,
    eventually,
    sample,
    verdict,
)

BOT_INPUT: dict[str, BotValue] = {"iStrEventId": StringValue("e-1")}
HEADERS = {"X-Request-Id": "e-1"}
NO_WAIT = RetryPolicy(max_attempts=3, base_delay_ms=0, max_delay_ms=0)


class CountingBudget(AsyncBudget):
    """An AsyncBudget that counts successful acquires and releases."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(name, limit)
        self.acquired = 0
        self.released = 0

    async def acquire(self, timeout_s: float | None) -> bool:
        got = await super().acquire(timeout_s)
        self.acquired += got
        return got

    def release(self) -> None:
        self.released += 1
        super().release()


class Rig:
    """One or more runners over fake executors, with a scorer and a fake clock."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.metrics = ProcessorMetrics()
        self.runners: dict[str, TaskRunner] = {}

    def runner(
        self,
        executor: FakeExecutor,
        *,
        name: str = "fraud",
        limit: int = 4,
        retry: RetryPolicy = NO_WAIT,
        attempt_timeout_ms: int = 2_000,
        circuit: CircuitPolicy | None = None,
    ) -> TaskRunner:
        settings = ApiTaskSettings(
            name=name, repository_path=f"Bots\\{name}", attempt_timeout_ms=attempt_timeout_ms
        )
        runner = TaskRunner(
            settings,
            executor,
            CountingBudget(name, limit),
            retry,
            self.metrics,
            clock=self.clock,
            rand=lambda: 0.0,
            circuit=CircuitBreaker(circuit or CircuitPolicy(enabled=False)),
            monotonic=self.clock,
        )
        self.runners[name] = runner
        return runner

    def budget(self, name: str = "fraud") -> CountingBudget:
        budget = self.runners[name].budget
        assert isinstance(budget, CountingBudget)
        return budget

    def scorer(self) -> EventScorer:
        return EventScorer(self.runners, clock=self.clock)

    def deadline(self, remaining_s: float = 60.0) -> Deadline:
        return Deadline(self.clock.now + remaining_s)

    async def score(
        self,
        scorer: EventScorer,
        remaining_s: float = 60.0,
        inputs: Mapping[str, Mapping[str, BotValue]] | None = None,
    ) -> ScoreOutcome:
        inputs = inputs or {name: BOT_INPUT for name in self.runners}
        return await asyncio.wait_for(scorer.score(inputs, self.deadline(remaining_s), HEADERS), 5)

    def attempts(self, outcome: str, task: str = "fraud") -> float:
        return sample(self.metrics, "streamproc_execute_attempts_total", task=task, outcome=outcome)


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_a_verdict_in_time_is_scored(rig: Rig) -> None:
    """An execute that answers in time gives Scored with the API Task's verdict."""
    executor = FakeExecutor(verdict("DECLINE", "87", "velocity"))
    rig.runner(executor)
    outcome = await rig.score(rig.scorer())
    assert isinstance(outcome, Scored)
    (progress,) = outcome.progress
    assert progress.verdict is not None
    assert (progress.verdict.decision, str(progress.verdict.score)) == ("DECLINE", "87")
    assert progress.verdict.reasons == ("velocity",)
    assert (progress.state, progress.attempts, progress.status) == ("done", 1, 200)
    (call,) = executor.calls
    assert call.timeout_s == 2.0
    assert (call.headers["X-Request-Id"], call.headers["X-Attempt"]) == ("e-1", "1")
    assert rig.attempts("ok") == 1
    assert rig.budget().in_flight == 0


@pytest.mark.parametrize(
    "error",
    [
        OverConcurrencyLimitError("over the limit", status=429),
        ServerError("unavailable", status=503),
        EndpointTimeoutError("no answer"),
    ],
    ids=["429", "503", "timeout"],
)
async def test_retryable_errors_are_retried_after_a_backoff(
    rig: Rig, error: ControlRoomError
) -> None:
    """429, 5xx and timeouts are retried after the policy's backoff, then the verdict counts."""
    executor = FakeExecutor()
    executor.script(error, error, verdict("REVIEW", "55"))
    policy = RetryPolicy(max_attempts=3, base_delay_ms=10, max_delay_ms=100, jitter="none")
    rig.runner(executor, retry=policy)
    outcome = await rig.score(rig.scorer())
    assert isinstance(outcome, Scored)
    assert outcome.progress[0].attempts == 3
    assert [c.attempt for c in executor.calls] == [1, 2, 3]
    gaps = [b.at - a.at for a, b in zip(executor.calls, executor.calls[1:], strict=False)]
    assert gaps[0] >= 0.010 * 0.99
    assert gaps[1] >= 0.020 * 0.99  # exponential: base * 2 ** (attempt - 1)
    assert rig.attempts(type(error).__name__) == 2
    assert rig.attempts("ok") == 1
    assert rig.budget().acquired == rig.budget().released == 3


async def test_retry_after_is_a_floor_for_the_backoff(rig: Rig) -> None:
    """The server's Retry-After is waited out even when the policy's backoff is shorter."""
    executor = FakeExecutor()
    executor.script(OverConcurrencyLimitError("busy", status=429, retry_after=0.03))
    rig.runner(executor)  # the policy alone would retry at once
    assert isinstance(await rig.score(rig.scorer()), Scored)
    first, second = executor.calls
    assert second.at - first.at >= 0.03 * 0.99


async def test_retries_stop_when_the_deadline_cannot_be_met(rig: Rig) -> None:
    """No retry is attempted when its backoff would end past the deadline; a 5xx endpoint
    that cannot be retried into in time is "endpoint_unavailable"."""
    executor = FakeExecutor()
    # The attempt takes 150 ms of event time and fails; 50 ms are left, the backoff is 100 ms.
    executor.script(Advance(rig.clock, 0.15, ServerError("down", status=503)))
    policy = RetryPolicy(max_attempts=5, base_delay_ms=100, max_delay_ms=100, jitter="none")
    rig.runner(executor, retry=policy)
    outcome = await rig.score(rig.scorer(), remaining_s=0.2)
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "endpoint_unavailable"
    assert len(executor.calls) == 1
    assert outcome.progress[0].attempts == 1
    assert rig.budget().in_flight == 0


async def test_retries_stop_after_max_attempts(rig: Rig) -> None:
    """An endpoint that keeps failing gets max_attempts tries, then the event falls back,
    the reason naming the cause: 5xx is "endpoint_unavailable"."""
    executor = FakeExecutor(ServerError("down", status=502))
    rig.runner(executor)
    outcome = await rig.score(rig.scorer())
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "endpoint_unavailable"
    assert len(executor.calls) == 3
    assert rig.budget().acquired == rig.budget().released == 3


async def test_no_budget_slot_before_the_deadline_falls_back_over_budget(rig: Rig) -> None:
    """When the allocation stays full until the deadline, the event falls back "over_budget"."""
    executor = FakeExecutor()
    rig.runner(executor, limit=1)
    budget = rig.budget()
    assert await budget.acquire(None)  # someone else's execute holds the only slot
    outcome = await rig.score(rig.scorer(), remaining_s=0.03)
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "over_budget"
    assert executor.calls == []
    await eventually(lambda: budget.waiting == 0, "the waiter to leave the queue")
    assert budget.in_flight == 1
    budget.release()
    assert budget.in_flight == 0


async def test_a_slow_execute_falls_back_at_the_deadline_and_keeps_its_slot(rig: Rig) -> None:
    """At the deadline: fallback; the execute keeps its slot, and its late result is counted."""
    executor = FakeExecutor()
    held = executor.hold("e-1", then=verdict("DECLINE", "99"))
    rig.runner(executor)
    scorer = rig.scorer()
    outcome = await rig.score(scorer, remaining_s=0.03)
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "deadline"
    budget = rig.budget()
    assert budget.in_flight == 1  # the API Task is still working on it
    late = sample(rig.metrics, "streamproc_late_results_total", task="fraud")
    assert late == 0
    held.release()
    await asyncio.wait_for(scorer.aclose(), 2)
    assert budget.in_flight == 0
    assert budget.acquired == budget.released == 1
    assert sample(rig.metrics, "streamproc_late_results_total", task="fraud") == 1
    # The late DECLINE never reaches the outcome already returned.
    assert outcome.progress[0].verdict is None


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("iNumAmount is required", status=400),
        AuthError("token rejected after refresh", status=401),
    ],
    ids=["400", "401"],
)
async def test_a_permanent_error_fails_without_retry(rig: Rig, error: ControlRoomError) -> None:
    """A 4xx the client cannot fix is Failed at once (dead letter), never retried."""
    executor = FakeExecutor(error)
    rig.runner(executor)
    outcome = await rig.score(rig.scorer())
    assert isinstance(outcome, Failed)
    assert (outcome.error, outcome.task) == (error, "fraud")
    assert len(executor.calls) == 1
    assert rig.budget().acquired == rig.budget().released == 1


async def test_a_malformed_bot_output_fails(rig: Rig) -> None:
    """A 200 whose botOutput breaks the contract is Failed with BadOutputError."""
    executor = FakeExecutor({"oNumScore": StringValue("12"), "oStrDecision": StringValue("MAYBE")})
    rig.runner(executor)
    outcome = await rig.score(rig.scorer())
    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, BadOutputError)
    assert outcome.error.variable == "oStrDecision"
    assert len(executor.calls) == 1
    assert rig.budget().in_flight == 0


async def test_the_slot_is_released_once_when_scoring_is_cancelled(rig: Rig) -> None:
    """Cancelling an event mid-execute (shutdown) releases its slot exactly once."""
    executor = FakeExecutor()
    held = executor.hold("e-1")
    rig.runner(executor, limit=1)
    scoring = asyncio.create_task(rig.scorer().score({"fraud": BOT_INPUT}, rig.deadline(), {}))
    await asyncio.wait_for(held.entered.wait(), 2)
    scoring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await scoring
    budget = rig.budget()
    await eventually(lambda: executor.cancelled == 1, "the execute to be cancelled")
    assert budget.acquired == budget.released == 1
    assert budget.in_flight == 0
    assert await budget.acquire(0)


async def test_routed_tasks_run_concurrently(rig: Rig) -> None:
    """The API Tasks routed for one event execute at the same time, each within its budget."""
    fraud = FakeExecutor(verdict("APPROVE", "10"))
    aml = FakeExecutor(verdict("REVIEW", "60"))
    fraud_held = fraud.hold("e-1", then=verdict("APPROVE", "10"))
    aml_held = aml.hold("e-1", then=verdict("REVIEW", "60"))
    rig.runner(fraud, name="fraud")
    rig.runner(aml, name="aml")
    scoring = asyncio.create_task(rig.score(rig.scorer()))
    # Both are executing before either answers.
    await asyncio.wait_for(asyncio.gather(fraud_held.entered.wait(), aml_held.entered.wait()), 2)
    assert rig.budget("fraud").in_flight == rig.budget("aml").in_flight == 1
    fraud_held.release()
    aml_held.release()
    outcome = await scoring
    assert isinstance(outcome, Scored)
    decisions = {p.name: p.verdict.decision for p in outcome.progress if p.verdict}
    assert decisions == {"fraud": "APPROVE", "aml": "REVIEW"}


async def test_a_failing_task_abandons_the_other_tasks(rig: Rig) -> None:
    """When one routed task fails permanently, the others are abandoned (not waited for)."""
    fraud = FakeExecutor(BadRequestError("bad input", status=422))
    aml = FakeExecutor()
    aml_held = aml.hold("e-1")
    rig.runner(fraud, name="fraud")
    rig.runner(aml, name="aml")
    scorer = rig.scorer()
    outcome = await rig.score(scorer)
    assert isinstance(outcome, Failed)
    assert outcome.task == "fraud"
    aml_held.release()
    await asyncio.wait_for(scorer.aclose(), 2)
    assert rig.budget("aml").in_flight == 0
    assert sample(rig.metrics, "streamproc_late_results_total", task="aml") == 1


async def test_one_task_out_of_retries_waits_for_the_others_in_time(rig: Rig) -> None:
    """When one routed task gives up (retries spent) the event still waits, until its
    deadline, for the other task's verdict, which the fallback then keeps."""
    fraud = FakeExecutor(OverConcurrencyLimitError("full", status=429))
    aml = FakeExecutor()
    aml_held = aml.hold("e-1", then=verdict("DECLINE", "90"))
    rig.runner(fraud, name="fraud")
    rig.runner(aml, name="aml")
    scoring = asyncio.create_task(rig.score(rig.scorer()))
    await asyncio.wait_for(aml_held.entered.wait(), 2)
    await eventually(lambda: len(fraud.calls) == 3, "fraud's three attempts")
    assert not scoring.done()  # fraud gave up, but aml may still answer in time
    aml_held.release()
    outcome = await asyncio.wait_for(scoring, 2)
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "over_budget"  # 429: the allocation was full at the source
    by_task = {p.name: p for p in outcome.progress}
    assert by_task["fraud"].failure == "over_budget"
    assert by_task["aml"].verdict is not None
    assert by_task["aml"].verdict.decision == "DECLINE"


async def test_a_slot_is_not_spent_on_an_execute_that_cannot_finish_in_time(rig: Rig) -> None:
    """With executes known to take ~50 ms and 30 ms left, a free slot is left for events that
    can still be answered in time: the event falls back "over_budget" without an execute."""
    executor = FakeExecutor(Advance(rig.clock, 0.05, verdict()))
    rig.runner(executor)
    assert isinstance(await rig.score(rig.scorer()), Scored)  # learns: 50 ms
    outcome = await rig.score(rig.scorer(), remaining_s=0.03)
    assert isinstance(outcome, FellBack)
    assert outcome.reason == "over_budget"
    assert len(executor.calls) == 1
    assert rig.budget().in_flight == 0


async def test_with_time_for_an_execute_the_slot_is_used(rig: Rig) -> None:
    """The same expected latency with 200 ms left: the execute runs and scores the event."""
    executor = FakeExecutor(Advance(rig.clock, 0.05, verdict()))
    rig.runner(executor)
    assert isinstance(await rig.score(rig.scorer()), Scored)
    outcome = await rig.score(rig.scorer(), remaining_s=0.2)
    assert isinstance(outcome, Scored)
    assert len(executor.calls) == 2


async def test_an_estimate_past_every_deadline_does_not_stop_executes_for_good(
    rig: Rig,
) -> None:
    """After executes of 2 s, a 500 ms event is refused at once; but once nothing has started
    for a second, one goes ahead as a probe, and its fast answer replaces the estimate."""
    executor = FakeExecutor(verdict())
    runner = rig.runner(executor)
    scorer = rig.scorer()
    assert isinstance(await rig.score(scorer), Scored)
    for _ in range(20):
        runner.service.observe(2.0, rig.clock())  # then executes took 2 s
    refused = await rig.score(scorer, remaining_s=0.5)
    assert isinstance(refused, FellBack)
    assert len(executor.calls) == 1
    rig.clock.advance(1.0)
    executor.script(Advance(rig.clock, 0.02, verdict()))  # the endpoint is quick again
    assert isinstance(await rig.score(scorer, remaining_s=0.5), Scored)  # the probe
    assert isinstance(await rig.score(scorer, remaining_s=0.5), Scored)  # no probe needed
    assert len(executor.calls) == 3


OPENS_AFTER_3 = CircuitPolicy(failure_threshold=3, open_ms=1_000, probe_interval_ms=1_000)
ONE_ATTEMPT = RetryPolicy(max_attempts=1)


async def test_consecutive_5xx_open_the_circuit_and_later_events_spend_no_execute(
    rig: Rig,
) -> None:
    """Three 503s in a row open the allocation's circuit: the next events fall back at once,
    "circuit_open", without an execute or a retry."""
    executor = FakeExecutor(ServerError("unavailable", status=503))
    rig.runner(executor, circuit=OPENS_AFTER_3, retry=ONE_ATTEMPT)
    scorer = rig.scorer()
    for _ in range(3):
        outcome = await rig.score(scorer)
        assert isinstance(outcome, FellBack)
        assert outcome.reason == "endpoint_unavailable"
    for _ in range(5):
        outcome = await rig.score(scorer)
        assert isinstance(outcome, FellBack)
        assert outcome.reason == "circuit_open"
    assert len(executor.calls) == 3
    assert rig.budget().in_flight == 0


async def test_timeouts_open_the_circuit_but_429s_do_not(rig: Rig) -> None:
    """A hanging endpoint (attempt timeouts) is unavailable; a full allocation (429) is not."""
    busy = FakeExecutor(OverConcurrencyLimitError("full", status=429))
    rig.runner(busy, name="busy", circuit=OPENS_AFTER_3, retry=ONE_ATTEMPT)
    for _ in range(5):
        await rig.score(rig.scorer(), inputs={"busy": BOT_INPUT})
    assert rig.runners["busy"].circuit.state(rig.clock()) == "closed"
    hung = FakeExecutor(EndpointTimeoutError("no answer", status=None))
    rig.runner(hung, name="hung", circuit=OPENS_AFTER_3, retry=ONE_ATTEMPT)
    for _ in range(3):
        await rig.score(rig.scorer(), inputs={"hung": BOT_INPUT})
    assert rig.runners["hung"].circuit.state(rig.clock()) == "open"


async def test_an_open_circuit_probes_once_per_interval_and_closes_on_success(
    rig: Rig,
) -> None:
    """After open_ms one event probes while the others still fall back at once; the probe's
    answer closes the circuit and every event is scored again."""
    executor = FakeExecutor(ServerError("unavailable", status=503))
    rig.runner(executor, circuit=OPENS_AFTER_3, retry=ONE_ATTEMPT)
    scorer = rig.scorer()
    for _ in range(3):
        await rig.score(scorer)
    rig.clock.advance(1.0)
    executor.script(verdict())
    assert isinstance(await rig.score(scorer), Scored)  # the probe
    assert rig.runners["fraud"].circuit.state(rig.clock()) == "closed"
    executor.script(verdict(), verdict())
    assert isinstance(await rig.score(scorer), Scored)
    assert isinstance(await rig.score(scorer), Scored)
    assert len(executor.calls) == 6


async def test_a_failed_probe_keeps_the_circuit_open(rig: Rig) -> None:
    """A probe that fails re-opens the circuit: the events right after it spend nothing."""
    executor = FakeExecutor(ServerError("unavailable", status=503))
    rig.runner(executor, circuit=OPENS_AFTER_3, retry=ONE_ATTEMPT)
    scorer = rig.scorer()
    for _ in range(3):
        await rig.score(scorer)
    rig.clock.advance(1.0)
    probe = await rig.score(scorer)
    assert isinstance(probe, FellBack)
    assert probe.reason == "endpoint_unavailable"
    later = await rig.score(scorer)
    assert isinstance(later, FellBack)
    assert later.reason == "circuit_open"
    assert len(executor.calls) == 4
