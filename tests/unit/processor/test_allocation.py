"""Allocations: executes within the budget, retries within the deadline, fallbacks on time,
the circuit breaker, and the service-time estimate that decides what is worth a slot."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from streamproc.core.circuit import CircuitBreaker, CircuitPolicy
from streamproc.core.retry import RetryPolicy
from streamproc.core.values import StringValue
from streamproc.errors import (
    AuthError,
    BadRequestError,
    ControlRoomError,
    EndpointTimeoutError,
    OverConcurrencyLimitError,
    ServerError,
)
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    DLQ,
    T0,
    Advance,
    FakeExecutor,
    Harness,
    answer_of,
    body,
    eventually,
    header,
    make_settings,
    record,
    sample,
    settle,
    verdict,
)

NO_WAIT = RetryPolicy(max_attempts=3, base_delay_ms=0, max_delay_ms=0)
ONE_ATTEMPT = RetryPolicy(max_attempts=1)
OPENS_AFTER_3 = CircuitPolicy(failure_threshold=3, open_ms=1_000, probe_interval_ms=1_000)


def attempts(h: Harness, outcome: str, task: str = "fraud") -> float:
    return sample(h.metrics, "streamproc_execute_attempts_total", task=task, outcome=outcome)


async def test_a_verdict_in_time_is_scored(make_harness: MakeHarness) -> None:
    """An execute that answers in time gives the API Task's verdict, with correlation headers."""
    h = make_harness(executors={"fraud": FakeExecutor(verdict("DECLINE", "87", "velocity"))})
    await h.start()
    h.source.feed(record(0))
    decision = body(await answer_of(h, 0, 0))
    assert (decision["decision"], decision["score"], decision["fallback"]) == (
        "DECLINE", 87, False,
    )  # fmt: skip
    assert decision["reasons"] == ["velocity"]
    assert decision["tasks"]["fraud"]["attempts"] == 1
    (call,) = h.executor.calls
    assert call.timeout_s == 2.0
    assert (call.headers["X-Request-Id"], call.headers["X-Attempt"]) == ("p0-0", "1")
    assert call.bot_input["iStrEventId"] == {"type": "STRING", "string": "p0-0"}
    assert attempts(h, "ok") == 1
    assert h.allocation.in_flight == 0


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
    make_harness: MakeHarness, error: ControlRoomError
) -> None:
    """429, 5xx and timeouts are retried after the policy's backoff, then the verdict counts."""
    policy = RetryPolicy(max_attempts=3, base_delay_ms=10, max_delay_ms=100, jitter="none")
    h = make_harness(make_settings(retry=policy))
    h.executor.script(error, error, verdict("REVIEW", "55"))
    await h.start()
    h.source.feed(record(0))
    decision = body(await answer_of(h, 0, 0))
    assert (decision["decision"], decision["fallback"]) == ("REVIEW", False)
    assert decision["tasks"]["fraud"]["attempts"] == 3
    calls = h.executor.calls
    assert [c.attempt for c in calls] == [1, 2, 3]
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.010 * 0.99
    assert gaps[1] >= 0.020 * 0.99  # exponential: base * 2 ** (attempt - 1)
    assert attempts(h, type(error).__name__) == 2
    assert attempts(h, "ok") == 1
    assert h.allocation.in_flight == 0


async def test_retry_after_is_a_floor_for_the_backoff(make_harness: MakeHarness) -> None:
    """The server's Retry-After is waited out even when the policy's backoff is shorter."""
    h = make_harness(make_settings(retry=NO_WAIT))
    h.executor.script(OverConcurrencyLimitError("busy", status=429, retry_after=0.03))
    await h.start()
    h.source.feed(record(0))
    await answer_of(h, 0, 0)
    first, second = h.executor.calls
    assert second.at - first.at >= 0.03 * 0.99


async def test_retries_stop_when_the_deadline_cannot_be_met(make_harness: MakeHarness) -> None:
    """No retry is attempted when its backoff would end past the deadline; a 5xx endpoint
    that cannot be retried into in time is "endpoint_unavailable"."""
    policy = RetryPolicy(max_attempts=5, base_delay_ms=100, max_delay_ms=100, jitter="none")
    h = make_harness(make_settings(retry=policy, sla_ms=200))
    # The attempt takes 150 ms of event time and fails; 50 ms are left, the backoff is 100 ms.
    h.executor.script(Advance(h.clock, 0.15, ServerError("down", status=503)))
    await h.start()
    h.source.feed(record(0))
    decision = body(await answer_of(h, 0, 0))
    assert (decision["fallback"], decision["fallback_reason"]) == (True, "endpoint_unavailable")
    assert len(h.executor.calls) == 1
    assert decision["tasks"]["fraud"]["attempts"] == 1


async def test_retries_stop_after_max_attempts(make_harness: MakeHarness) -> None:
    """An endpoint that keeps failing gets max_attempts tries, then the event falls back,
    the reason naming the cause: 5xx is "endpoint_unavailable"."""
    h = make_harness(
        make_settings(retry=NO_WAIT, circuit_breaker=CircuitPolicy(enabled=False)),
        executors={"fraud": FakeExecutor(ServerError("down", status=502))},
    )
    await h.start()
    h.source.feed(record(0))
    decision = body(await answer_of(h, 0, 0))
    assert decision["fallback_reason"] == "endpoint_unavailable"
    assert len(h.executor.calls) == 3
    assert h.allocation.in_flight == 0


async def test_no_budget_slot_before_the_deadline_falls_back_over_budget(
    make_harness: MakeHarness,
) -> None:
    """When the allocation stays full until an event's deadline, it falls back "over_budget",
    at its deadline and without an execute."""
    h = make_harness(make_settings(sla_ms=500), limits={"fraud": 1})
    held = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0, key="A", occurred_at=T0 + 10))  # holds the only slot
    await asyncio.wait_for(held.entered.wait(), 2)
    h.source.feed(record(1, key="B"))
    await eventually(lambda: len(h.allocation.queue) == 1, "the second event waiting")
    await settle()
    assert not h.sink.answered(0, 1)
    h.clock.advance(0.5)
    decision = body(await answer_of(h, 0, 1))
    assert (decision["fallback"], decision["fallback_reason"]) == (True, "over_budget")
    assert decision["tasks"]["fraud"]["attempts"] == 0
    assert h.executor.event_ids() == ["p0-0"]
    held.release()


async def test_a_slow_execute_falls_back_at_the_deadline_and_keeps_its_slot(
    make_harness: MakeHarness,
) -> None:
    """At the deadline: fallback; the execute keeps its slot until the API Task answers, and
    its late result is counted and dropped."""
    h = make_harness(make_settings(sla_ms=500))
    held = h.executor.hold("p0-0", then=verdict("DECLINE", "99"))
    await h.start()
    h.source.feed(record(0))
    await asyncio.wait_for(held.entered.wait(), 2)
    h.clock.advance(0.5)
    decision = body(await answer_of(h, 0, 0))
    assert (decision["decision"], decision["fallback_reason"]) == ("REVIEW", "deadline")
    assert decision["tasks"]["fraud"]["status"] == "deadline"
    assert h.allocation.in_flight == 1  # the API Task is still working on it
    assert sample(h.metrics, "streamproc_late_results_total", task="fraud") == 0
    held.release()
    await eventually(lambda: h.allocation.in_flight == 0, "the slot back")
    assert sample(h.metrics, "streamproc_late_results_total", task="fraud") == 1
    await settle()
    assert len(h.sink.sent) == 1  # the late DECLINE never becomes a second output


@pytest.mark.parametrize(
    "error",
    [
        BadRequestError("iNumAmount is required", status=400),
        AuthError("token rejected after refresh", status=401),
    ],
    ids=["400", "401"],
)
async def test_a_permanent_error_is_dead_lettered_without_retry(
    make_harness: MakeHarness, error: ControlRoomError
) -> None:
    """A 4xx the client cannot fix dead-letters the event at once (stage execute), no retry."""
    h = make_harness(executors={"fraud": FakeExecutor(error)})
    await h.start()
    h.source.feed(record(0))
    out = await answer_of(h, 0, 0)
    assert out.topic == DLQ
    assert header(out, "streamproc.error.stage") == "execute"
    assert header(out, "streamproc.error.attempts") == "1"
    assert len(h.executor.calls) == 1
    assert h.allocation.in_flight == 0


async def test_a_malformed_bot_output_is_dead_lettered(make_harness: MakeHarness) -> None:
    """A 200 whose botOutput breaks the contract dead-letters the event with BadOutputError."""
    broken = {"oNumScore": StringValue("12"), "oStrDecision": StringValue("MAYBE")}
    h = make_harness(executors={"fraud": FakeExecutor(broken)})
    await h.start()
    h.source.feed(record(0))
    out = await answer_of(h, 0, 0)
    assert out.topic == DLQ
    assert header(out, "streamproc.error.class") == "streamproc.errors.BadOutputError"
    assert len(h.executor.calls) == 1


async def test_never_more_executes_than_the_limit(make_harness: MakeHarness) -> None:
    """Under contention no more than the allocation's limit execute at once, and every event
    is still scored."""
    h = make_harness(limits={"fraud": 3})
    holds = [h.executor.hold(f"p0-{o}") for o in range(30)]
    await h.start()
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(30)))
    await eventually(lambda: h.executor.running == 3, "three executes")
    await settle()
    assert h.executor.running == 3
    for held in holds:
        held.release()
    await h.outputs(30)
    assert h.executor.max_running == 3
    assert all(not body(out)["fallback"] for out in h.sink.sent)


async def test_a_freed_slot_sends_its_next_execute_before_the_answer_is_published(
    make_harness: MakeHarness,
) -> None:
    """A slot is the scarce resource: as soon as an execute answers, the slot's next queued
    event is sent, and the answered event's decision is built and produced after that."""
    h = make_harness(limits={"fraud": 1})
    first = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0, key="card-0"), record(1, key="card-1"))
    await eventually(lambda: h.executor.running == 1, "the first execute")
    first.release()
    await h.outputs(2)
    assert h.timeline.index("execute", "p0-1") < h.timeline.index("produce", (0, 0))


async def test_routed_tasks_run_concurrently(make_harness: MakeHarness) -> None:
    """The API Tasks routed for one event execute at the same time, each within its budget."""
    h = make_harness(make_settings(tasks=("fraud", "aml")))
    fraud_held = h.executors["fraud"].hold("p0-0", then=verdict("APPROVE", "10"))
    aml_held = h.executors["aml"].hold("p0-0", then=verdict("REVIEW", "60"))
    await h.start()
    h.source.feed(record(0))
    await asyncio.wait_for(asyncio.gather(fraud_held.entered.wait(), aml_held.entered.wait()), 2)
    assert h.allocations["fraud"].in_flight == h.allocations["aml"].in_flight == 1
    fraud_held.release()
    aml_held.release()
    decision = body(await answer_of(h, 0, 0))
    tasks = {name: t["decision"] for name, t in decision["tasks"].items()}
    assert tasks == {"fraud": "APPROVE", "aml": "REVIEW"}
    assert (decision["decision"], decision["fallback"]) == ("REVIEW", False)


async def test_a_failing_task_does_not_wait_for_the_others(make_harness: MakeHarness) -> None:
    """When one routed task fails permanently the event is dead-lettered at once; the other
    task's answer, when it comes, is late."""
    h = make_harness(make_settings(tasks=("fraud", "aml")))
    fraud_held = h.executors["fraud"].hold("p0-0", then=BadRequestError("bad", status=422))
    aml_held = h.executors["aml"].hold("p0-0")
    await h.start()
    h.source.feed(record(0))
    await asyncio.wait_for(asyncio.gather(fraud_held.entered.wait(), aml_held.entered.wait()), 2)
    fraud_held.release()
    out = await answer_of(h, 0, 0)
    assert out.topic == DLQ
    aml_held.release()
    await eventually(lambda: h.allocations["aml"].in_flight == 0, "aml's slot back")
    assert sample(h.metrics, "streamproc_late_results_total", task="aml") == 1


async def test_one_task_out_of_retries_waits_for_the_others_in_time(
    make_harness: MakeHarness,
) -> None:
    """When one routed task gives up (retries spent) the event still waits, until its
    deadline, for the other task's verdict, which the fallback then keeps."""
    h = make_harness(
        make_settings(tasks=("fraud", "aml"), retry=NO_WAIT),
        executors={"fraud": FakeExecutor(OverConcurrencyLimitError("full", status=429))},
    )
    aml_held = h.executors["aml"].hold("p0-0", then=verdict("DECLINE", "90"))
    await h.start()
    h.source.feed(record(0))
    await asyncio.wait_for(aml_held.entered.wait(), 2)
    await eventually(lambda: len(h.executors["fraud"].calls) == 3, "fraud's three attempts")
    await settle()
    assert not h.sink.answered(0, 0)  # fraud gave up, but aml may still answer in time
    aml_held.release()
    decision = body(await answer_of(h, 0, 0))
    assert (decision["decision"], decision["fallback_reason"]) == ("DECLINE", "over_budget")
    assert decision["tasks"]["fraud"]["status"] == "over_budget"
    assert decision["tasks"]["aml"]["decision"] == "DECLINE"


async def test_a_slot_is_not_spent_on_an_execute_that_cannot_finish_in_time(
    make_harness: MakeHarness,
) -> None:
    """With executes known to take 50 ms and 30 ms left, the event is decided at once,
    "infeasible", and no slot is spent on it; with 200 ms left it is scored."""
    h = make_harness(make_settings(sla_ms=500))
    h.executor.default = Advance(h.clock, 0.05, verdict())
    await h.start()
    h.source.feed(record(0, key="A"))
    await answer_of(h, 0, 0)  # learns: 50 ms
    h.source.feed(record(1, key="B", occurred_at=h.clock() - 0.47))
    refused = body(await answer_of(h, 0, 1))
    assert (refused["fallback"], refused["fallback_reason"]) == (True, "infeasible")
    assert len(h.executor.calls) == 1
    h.source.feed(record(2, key="C", occurred_at=h.clock() - 0.3))
    scored = body(await answer_of(h, 0, 2))
    assert scored["fallback"] is False
    assert len(h.executor.calls) == 2


async def test_an_estimate_past_every_deadline_does_not_stop_executes_for_good(
    make_harness: MakeHarness,
) -> None:
    """After executes of 2 s, a 500 ms event is refused at once; but once nothing has started
    for a second, one goes ahead as a probe, and its fast answer replaces the estimate."""
    h = make_harness(make_settings(sla_ms=500))
    await h.start()
    h.source.feed(record(0, key="A"))
    await answer_of(h, 0, 0)
    for _ in range(20):
        h.allocation.service.observe(2.0, h.clock())  # then executes took 2 s
    h.source.feed(record(1, key="B", occurred_at=h.clock()))
    assert body(await answer_of(h, 0, 1))["fallback_reason"] == "infeasible"
    assert len(h.executor.calls) == 1
    h.clock.advance(1.0)
    h.executor.default = Advance(h.clock, 0.02, verdict())  # the endpoint is quick again
    h.source.feed(record(2, key="C", occurred_at=h.clock()))
    assert body(await answer_of(h, 0, 2))["fallback"] is False  # the probe
    h.source.feed(record(3, key="D", occurred_at=h.clock()))
    assert body(await answer_of(h, 0, 3))["fallback"] is False  # no probe needed
    assert len(h.executor.calls) == 3


def breaker_harness(make_harness: MakeHarness, executor: FakeExecutor) -> Harness:
    return make_harness(
        make_settings(retry=ONE_ATTEMPT),
        executors={"fraud": executor},
        circuit=CircuitBreaker(OPENS_AFTER_3),
    )


async def reasons(h: Harness, offsets: range) -> list[str | None]:
    found = []
    for offset in offsets:
        found.append(body(await answer_of(h, 0, offset))["fallback_reason"])
    return found


async def test_consecutive_5xx_open_the_circuit_and_later_events_spend_no_execute(
    make_harness: MakeHarness,
) -> None:
    """Three 503s in a row open the allocation's circuit: the next events fall back at once,
    "circuit_open", without an execute or a retry."""
    h = breaker_harness(make_harness, FakeExecutor(ServerError("unavailable", status=503)))
    await h.start()
    for o in range(3):
        h.source.feed(record(o, key=f"card-{o}"))
        await answer_of(h, 0, o)
    h.source.feed(*(record(o, key=f"card-{o}") for o in range(3, 8)))
    assert await reasons(h, range(3)) == ["endpoint_unavailable"] * 3
    assert await reasons(h, range(3, 8)) == ["circuit_open"] * 5
    assert len(h.executor.calls) == 3
    assert h.allocation.in_flight == 0


async def test_timeouts_open_the_circuit_but_429s_do_not(make_harness: MakeHarness) -> None:
    """A hanging endpoint (attempt timeouts) is unavailable; a full allocation (429) is not."""
    busy = breaker_harness(
        make_harness, FakeExecutor(OverConcurrencyLimitError("full", status=429))
    )
    await busy.start()
    for o in range(5):
        busy.source.feed(record(o, key=f"card-{o}"))
        await answer_of(busy, 0, o)
    assert busy.allocation.circuit.state(busy.clock()) == "closed"
    hung = breaker_harness(make_harness, FakeExecutor(EndpointTimeoutError("no answer")))
    await hung.start()
    for o in range(3):
        hung.source.feed(record(o, key=f"card-{o}"))
        await answer_of(hung, 0, o)
    assert hung.allocation.circuit.state(hung.clock()) == "open"


async def test_an_open_circuit_probes_once_per_interval_and_closes_on_success(
    make_harness: MakeHarness,
) -> None:
    """After open_ms one event probes; the probe's answer closes the circuit and every event
    is scored again."""
    h = breaker_harness(make_harness, FakeExecutor(ServerError("unavailable", status=503)))
    await h.start()
    for o in range(3):
        h.source.feed(record(o, key=f"card-{o}"))
        await answer_of(h, 0, o)
    h.clock.advance(1.0)
    h.executor.default = verdict()
    for o in range(3, 6):
        h.source.feed(record(o, key=f"card-{o}", occurred_at=h.clock()))
        assert body(await answer_of(h, 0, o))["fallback"] is False
    assert h.allocation.circuit.state(h.clock()) == "closed"
    assert len(h.executor.calls) == 6


async def test_a_failed_probe_keeps_the_circuit_open(make_harness: MakeHarness) -> None:
    """A probe that fails re-opens the circuit: the events right after it spend nothing."""
    h = breaker_harness(make_harness, FakeExecutor(ServerError("unavailable", status=503)))
    await h.start()
    for o in range(3):
        h.source.feed(record(o, key=f"card-{o}"))
        await answer_of(h, 0, o)
    h.clock.advance(1.0)
    h.source.feed(record(3, key="probe", occurred_at=h.clock()))
    assert await reasons(h, range(3, 4)) == ["endpoint_unavailable"]
    h.source.feed(record(4, key="later", occurred_at=h.clock()))
    assert await reasons(h, range(4, 5)) == ["circuit_open"]
    assert len(h.executor.calls) == 4
