"""Tracing: each event's spans, continued from its traceparent and passed on to the execute
request and the output record, read back from the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from streamproc.config import TracingSettings
from streamproc.core.circuit import CircuitPolicy
from streamproc.errors import BadRequestError, ServerError
from streamproc.observability.tracing import EventTracer, tracer_provider
from tests.unit.processor.conftest import MakeHarness
from tests.unit.processor.fakes import (
    DLQ,
    T0,
    FakeExecutor,
    answer_of,
    body,
    eventually,
    header,
    make_settings,
    record,
    settle,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "vendor=opaque"


class Traced:
    """An :class:`EventTracer` whose spans are kept in memory."""

    def __init__(self, sample_ratio: float = 1.0) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = tracer_provider(
            TracingSettings(enabled=True, sample_ratio=sample_ratio), self.exporter
        )
        self.tracer = EventTracer(self.provider.get_tracer("test"), input_topic="transactions")

    def spans(self) -> list[ReadableSpan]:
        """Every span ended so far, by start time."""
        self.provider.force_flush()
        return sorted(self.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def of_event(self, event_id: str) -> list[ReadableSpan]:
        """The consume span of ``event_id`` and every span below it."""
        (root,) = [
            s for s in self.named("consume") if attrs(s).get("streamproc.event_id") == event_id
        ]
        trace = root.context.span_id
        return [root] + [s for s in self.spans() if s.parent and s.parent.span_id == trace]


@pytest.fixture
def traced() -> Iterator[Traced]:
    traced = Traced()
    yield traced
    traced.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def traceparent_of(span: ReadableSpan) -> str:
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def sampled(traceparent: str) -> bool:
    return bool(int(traceparent.split("-")[3], 16) & 1)


def traced_record(offset: int, *, traceparent: str = TRACEPARENT, **kwargs: Any) -> Any:
    eid = kwargs.pop("event_id", f"p0-{offset}")
    headers = [
        ("x-test-id", eid.encode()),
        ("traceparent", traceparent.encode()),
        ("tracestate", TRACESTATE.encode()),
    ]
    return record(offset, event_id=eid, headers=headers, **kwargs)


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    return [s.name for s in spans]


async def test_an_input_traceparent_is_continued_to_the_execute_and_the_decision(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """The input's traceparent is the parent of the event's consume span, under which the
    wait, the execute and the publish hang; the execute request carries the execute span and
    the decision the publish span, in the input's trace and with its tracestate."""
    h = make_harness(tracer=traced.tracer)
    await h.start()
    h.source.feed(traced_record(0))
    out = await answer_of(h, 0, 0)
    consume, wait, execute, publish = traced.of_event("p0-0")
    assert names([consume, wait, execute, publish]) == [
        "consume transactions", "admission fraud", "execute fraud", "publish decisions",
    ]  # fmt: skip
    assert f"{consume.context.trace_id:032x}" == TRACE_ID
    assert consume.parent is not None
    assert consume.parent.is_remote
    assert f"{consume.parent.span_id:016x}" == PARENT_ID
    assert consume.context.trace_state.to_header() == TRACESTATE
    assert [s.kind for s in (consume, wait, execute, publish)] == [
        SpanKind.CONSUMER, SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER,
    ]  # fmt: skip
    assert attrs(consume) | {"streamproc.outcome": "decision"} == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "transactions",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "streamproc.event_id": "p0-0",
        "streamproc.outcome": "decision",
        "streamproc.decision": "APPROVE",
        "streamproc.fallback": False,
    }
    assert attrs(wait) == {"streamproc.task": "fraud", "streamproc.attempt": 1}
    assert attrs(execute) == {
        "streamproc.task": "fraud", "streamproc.attempt": 1, "http.request.method": "POST",
    }  # fmt: skip
    assert attrs(publish)["messaging.destination.name"] == "decisions"
    (call,) = h.executor.calls
    assert call.headers["traceparent"] == traceparent_of(execute)
    assert call.headers["tracestate"] == TRACESTATE
    assert header(out, "traceparent") == traceparent_of(publish)
    assert header(out, "tracestate") == TRACESTATE
    # The event's span covers it from intake to the broker's acknowledgement.
    assert consume.start_time is not None
    assert publish.end_time is not None
    assert consume.start_time <= wait.start_time <= execute.start_time  # type: ignore[operator]
    assert consume.end_time is not None
    assert consume.end_time >= publish.end_time


async def test_without_a_traceparent_each_event_starts_its_own_trace(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """An input without trace context gets a new trace, which its output record continues."""
    h = make_harness(tracer=traced.tracer)
    await h.start()
    h.source.feed(record(0, key="A"), record(1, key="B"))
    outs = [await answer_of(h, 0, 0), await answer_of(h, 0, 1)]
    roots = [traced.of_event(f"p0-{offset}")[0] for offset in (0, 1)]
    assert [root.parent for root in roots] == [None, None]
    assert roots[0].context.trace_id != roots[1].context.trace_id
    for out, root in zip(outs, roots, strict=True):
        trace_id = (header(out, "traceparent") or "").split("-")[1]
        assert trace_id == f"{root.context.trace_id:032x}"


async def test_each_attempt_has_its_own_wait_and_execute_span(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """A retried execute shows two waits and two attempts, numbered; the failed one says its
    error class and HTTP status, and each request carries its own attempt's span."""
    h = make_harness(tracer=traced.tracer)
    h.executor.script(ServerError("unavailable", status=503), event_id="p0-0")
    await h.start()
    h.source.feed(traced_record(0))
    assert body(await answer_of(h, 0, 0))["tasks"]["fraud"]["attempts"] == 2
    spans = traced.of_event("p0-0")
    assert names(spans) == [
        "consume transactions", "admission fraud", "execute fraud",
        "admission fraud", "execute fraud", "publish decisions",
    ]  # fmt: skip
    _, wait1, first, wait2, second, _ = spans
    assert [attrs(s)["streamproc.attempt"] for s in (wait1, first, wait2, second)] == [1, 1, 2, 2]
    assert attrs(first)["error.type"] == "ServerError"
    assert attrs(first)["http.response.status_code"] == 503
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description is None
    assert "error.type" not in attrs(second)
    assert second.status.status_code is StatusCode.UNSET
    assert [c.headers["traceparent"] for c in h.executor.calls] == [
        traceparent_of(first), traceparent_of(second),
    ]  # fmt: skip


async def test_a_fallback_names_its_reason_on_the_event_and_on_the_wait_it_ended(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """An event that waited for a slot until its deadline: its span says fallback over_budget,
    and so does its wait, which ends at the decision; no execute span."""
    h = make_harness(make_settings(sla_ms=500), limits={"fraud": 1}, tracer=traced.tracer)
    held = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0, key="A", occurred_at=T0 + 10))  # holds the only slot
    await asyncio.wait_for(held.entered.wait(), 2)
    h.source.feed(record(1, key="B"))
    await eventually(lambda: len(h.allocation.queue) == 1, "the second event waiting")
    h.clock.advance(0.5)
    assert body(await answer_of(h, 0, 1))["fallback_reason"] == "over_budget"
    consume, wait, publish = traced.of_event("p0-1")
    assert attrs(consume)["streamproc.fallback"] is True
    assert attrs(consume)["streamproc.fallback_reason"] == "over_budget"
    assert wait.name == "admission fraud"
    assert attrs(wait)["streamproc.fallback_reason"] == "over_budget"
    assert wait.end_time is not None
    assert publish.start_time is not None
    assert wait.end_time <= publish.start_time
    held.release()
    await answer_of(h, 0, 0)
    await settle()
    assert names(traced.of_event("p0-1")) == names([consume, wait, publish])  # no late attempt


async def test_a_wait_given_up_ends_then_not_at_the_decision(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """With two API Tasks, a wait that ends without a slot (here the circuit opened meanwhile)
    ends then, naming why, while the other task still runs."""
    settings = make_settings(
        tasks=("fraud", "aml"), circuit_breaker=CircuitPolicy(failure_threshold=1)
    )
    executors = {"fraud": FakeExecutor(), "aml": FakeExecutor()}
    h = make_harness(settings, executors=executors, limits={"aml": 1}, tracer=traced.tracer)
    aml = h.allocations["aml"]
    down = executors["aml"].hold("p0-0", then=ServerError("unavailable", status=503))
    scoring = executors["fraud"].hold("p0-1")
    await h.start()
    h.source.feed(record(0, key="A"))
    await asyncio.wait_for(down.entered.wait(), 2)
    h.source.feed(record(1, key="B"))
    await asyncio.wait_for(scoring.entered.wait(), 2)
    await eventually(lambda: len(aml.queue) == 1, "the second event waiting for aml")
    down.release()  # the endpoint is down: the circuit opens, and the waiting work gives up

    def reasons() -> list[Any]:
        return [attrs(s).get("streamproc.fallback_reason") for s in traced.named("admission aml")]

    await eventually(lambda: len(reasons()) == 2, "the second aml wait to end")
    assert reasons() == [None, "circuit_open"]
    assert not h.sink.answered(0, 1)
    scoring.release()
    decision = body(await answer_of(h, 0, 1))
    assert decision["tasks"]["aml"]["status"] == "circuit_open"


async def test_a_late_answer_is_marked_on_its_attempt(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """An execute still running at the deadline ends, when it answers, marked late."""
    h = make_harness(make_settings(sla_ms=500), tracer=traced.tracer)
    held = h.executor.hold("p0-0")
    await h.start()
    h.source.feed(record(0))
    await asyncio.wait_for(held.entered.wait(), 2)
    h.clock.advance(0.5)
    assert body(await answer_of(h, 0, 0))["fallback_reason"] == "deadline"
    held.release()
    await eventually(lambda: bool(traced.named("execute")), "the late attempt's span")
    (execute,) = traced.named("execute")
    assert attrs(execute)["streamproc.late"] is True
    assert attrs(traced.of_event("p0-0")[0])["streamproc.fallback_reason"] == "deadline"


async def test_a_dead_letter_carries_its_publish_span_in_place_of_the_inputs(
    make_harness: MakeHarness, traced: Traced
) -> None:
    """A dead letter keeps the input's headers in their place, but its traceparent names the
    span that published it, in the input's trace; the event's span says the stage."""
    h = make_harness(tracer=traced.tracer)
    await h.start()
    h.source.feed(traced_record(0, value=b"{not json", event_id="bad"))
    out = await answer_of(h, 0, 0)
    assert out.topic == DLQ
    (consume,) = traced.named("consume")
    (publish,) = traced.named("publish")
    assert publish.name == f"publish {DLQ}"
    assert attrs(consume)["streamproc.outcome"] == "dead_letter"
    assert attrs(consume)["streamproc.dead_letter.stage"] == "decode"
    assert [name for name, _ in out.headers][:3] == ["x-test-id", "traceparent", "tracestate"]
    assert [v for k, v in out.headers if k == "traceparent"] == [traceparent_of(publish).encode()]
    assert f"{publish.context.trace_id:032x}" == TRACE_ID
    assert header(out, "streamproc.error.stage") == "decode"


async def test_no_secret_reaches_a_span(make_harness: MakeHarness, traced: Traced) -> None:
    """Errors that quote a token, a password or an API key (message, body, URL) leave no trace
    of them in any span's name, attributes, events or status."""
    secrets = ["eyJ-Token-Secret-1", "Password-Secret-2", "ApiKey-Secret-3"]
    quoted = " ".join(secrets)
    h = make_harness(tracer=traced.tracer)
    h.executor.script(
        ServerError(quoted, status=503, body={"message": quoted}, url=f"https://cr/?t={quoted}"),
        BadRequestError(quoted, status=400, body={"details": quoted}, method="POST", url=quoted),
        event_id="p0-0",
    )
    await h.start()
    h.source.feed(traced_record(0))
    assert (await answer_of(h, 0, 0)).topic == DLQ
    spans = traced.spans()
    assert len(spans) == 6  # consume, two waits, two attempts, publish
    text = repr(
        [
            (
                s.name,
                s.attributes,
                s.status.description,
                s.resource.attributes,
                [(e.name, e.attributes) for e in s.events],
            )
            for s in spans
        ]
    )
    assert "execute fraud" in text
    assert "BadRequestError" in text  # the class is there, what it quotes is not
    for secret in secrets:
        assert secret not in text


async def test_an_event_the_sampler_leaves_out_still_passes_its_trace_on(
    make_harness: MakeHarness,
) -> None:
    """At sample_ratio 0, a new trace records nothing but still reaches the execute and the
    decision, marked not sampled; an input's sampled traceparent is still recorded."""
    traced = Traced(sample_ratio=0.0)
    h = make_harness(tracer=traced.tracer)
    await h.start()
    h.source.feed(record(0, key="A"))
    out = await answer_of(h, 0, 0)
    assert traced.spans() == []
    sent = h.executor.calls[0].headers["traceparent"]
    published = header(out, "traceparent") or ""
    assert not sampled(sent)
    assert not sampled(published)
    assert sent.split("-")[1] == published.split("-")[1]
    h.source.feed(traced_record(1, key="B"))
    await answer_of(h, 0, 1)
    assert names(traced.of_event("p0-1"))[0] == "consume transactions"
    traced.provider.shutdown()


async def test_without_a_tracer_nothing_is_added(make_harness: MakeHarness) -> None:
    """Tracing off (the default): no trace headers on the execute or the decision, and an
    input's trace headers are not copied onto a decision."""
    h = make_harness()
    await h.start()
    h.source.feed(traced_record(0))
    out = await answer_of(h, 0, 0)
    assert "traceparent" not in h.executor.calls[0].headers
    assert header(out, "traceparent") is None
