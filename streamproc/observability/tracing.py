"""Traces of each event, with OpenTelemetry: one trace follows a payment across systems.

Each consumed record gets these spans::

    consume <input topic>      CONSUMER  from intake until its output is acknowledged
    ├── admission <task>       INTERNAL  the wait for a budget slot (one per attempt)
    ├── execute <task>         CLIENT    one execute attempt, until the API Task answers
    ├── ...                              (a retry waits and executes again)
    └── publish <output topic> PRODUCER  the decision or dead letter, from produce to ack

**Propagation** (W3C Trace Context): a ``traceparent`` header on the input record (with its
``tracestate``) is the consume span's parent; without one, the consume span starts a trace.
Onward, each execute request carries its attempt span as ``traceparent``, and the decision or
dead letter its publish span. A dead letter keeps the input's headers, but its
``traceparent``/``tracestate`` are replaced by the publish span's, in the same trace, so a
replayed dead letter continues that trace. An event the sampler leaves out records nothing but
still passes its trace on, marked not sampled.

**Cost.** The composition root builds an :class:`EventTracer` only when
``[observability.tracing] enabled``; otherwise nothing here is imported and each stage of the
processor tests one attribute (``flight.trace``). Per event, the spans live in its
:class:`EventTrace`, held by its flight: no context variables, nothing global.

**What spans say.** The event (id, partition, offset), the API Task, the attempt number, the
HTTP status and error class of a failed attempt, the decision and its fallback reason or the
dead letter's stage. Never a credential, a URL, an error message or the event's own fields:
messages can quote what a server sent back.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamproc.kafka.records import OutputRecord

if TYPE_CHECKING:
    from streamproc.config import TracingSettings
    from streamproc.core.decisions import FallbackReason
    from streamproc.errors import ControlRoomError
    from streamproc.processor.flight import Flight, Work
    from streamproc.processor.outcomes import Outcome

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_CONTEXT_HEADERS = (TRACEPARENT, TRACESTATE)
_ROOT = Context()  # no ambient span: an input without a traceparent starts a trace
_PROPAGATOR = TraceContextTextMapPropagator()
_ERROR = Status(StatusCode.ERROR)  # no description: an error's message may quote a server


def tracer_provider(
    settings: TracingSettings, exporter: SpanExporter | None = None
) -> TracerProvider:
    """Spans sampled by ``settings.sample_ratio`` (an input's traceparent decides for its own
    trace), batched to ``exporter``: by default OTLP/HTTP to ``settings.endpoint``, which
    reads ``OTEL_EXPORTER_OTLP_HEADERS`` and the other standard variables."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": settings.service_name, "service.version": version("streamproc")}
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
        shutdown_on_exit=False,  # the processor shuts it down, after its last acknowledgement
    )
    if exporter is None:
        exporter = OTLPSpanExporter(endpoint=settings.endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class EventTracer:
    """Starts each consumed record's trace (the processor's ``Tracer``)."""

    def __init__(self, tracer: Tracer, *, input_topic: str) -> None:
        self.tracer = tracer
        self._consume = f"consume {input_topic}"

    def consumed(self, flight: Flight) -> None:
        record = flight.record
        parent = _ROOT
        carrier = {
            name: value.decode("latin-1")
            for name, value in record.headers
            if name in _CONTEXT_HEADERS and value is not None
        }
        if carrier:
            parent = _PROPAGATOR.extract(carrier, _ROOT)  # an invalid one is ignored
        span = self.tracer.start_span(
            self._consume,
            parent,
            SpanKind.CONSUMER,
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            },
        )
        flight.trace = EventTrace(self.tracer, span)


class EventTrace:
    """One event's spans, told of each stage (the processor's ``Trace``)."""

    __slots__ = ("_executes", "_parent", "_publish", "_tracer", "_waits", "recording", "span")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self.span = span
        # Not sampled: no child spans, and the consume span's context is what goes onward.
        self.recording = span.is_recording()
        self._tracer = tracer
        self._parent = set_span_in_context(span, _ROOT)
        self._waits: dict[str, Span] = {}  # by task: each work waits for one slot at a time
        self._executes: dict[str, Span] = {}
        self._publish: Span | None = None

    def waiting(self, work: Work) -> None:
        """``work`` is queued for a slot of its allocation, or handed to an idle one."""
        if self.recording:
            self._waits[work.task] = self._tracer.start_span(
                f"admission {work.task}",
                self._parent,
                SpanKind.INTERNAL,
                {"streamproc.task": work.task, "streamproc.attempt": work.attempts + 1},
            )

    def gave_up(self, work: Work, reason: FallbackReason) -> None:
        """``work`` left the queue without a slot (shed, or the circuit opened)."""
        wait = self._waits.pop(work.task, None)
        if wait is not None:
            wait.set_attribute("streamproc.fallback_reason", reason)
            wait.end()

    def executing(self, work: Work, headers: dict[str, str]) -> None:
        """An attempt starts (``work.attempts`` counts it): its wait ends, its span starts,
        and ``headers``, the request's, get its trace context."""
        if not self.recording:
            _put_context(headers, self.span)
            return
        wait = self._waits.pop(work.task, None)
        if wait is not None:
            wait.end()
        span = self._tracer.start_span(
            f"execute {work.task}",
            self._parent,
            SpanKind.CLIENT,
            {
                "streamproc.task": work.task,
                "streamproc.attempt": work.attempts,
                "http.request.method": "POST",
            },
        )
        self._executes[work.task] = span
        _put_context(headers, span)

    def executed(self, work: Work, error: ControlRoomError | None) -> None:
        """The attempt of ``work`` answered, or failed with ``error``."""
        span = self._executes.pop(work.task, None)
        if span is None:
            return
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            if error.status is not None:
                span.set_attribute("http.response.status_code", error.status)
            span.set_status(_ERROR)
        if work.flight.settled:
            span.set_attribute("streamproc.late", True)  # decided without it, at the deadline
        span.end()

    def publishing(self, flight: Flight, outcome: Outcome) -> None:
        """``flight`` is decided: waits still open end, and the output is produced with the
        publish span's trace context in its headers."""
        for work in flight.works:
            wait = self._waits.pop(work.task, None)
            if wait is not None:
                wait.set_attribute("streamproc.fallback_reason", work.failure or "deadline")
                wait.end()
        output = outcome.record
        carrier = self.span
        if self.recording:
            _describe(self.span, flight, outcome)
            carrier = self._publish = self._tracer.start_span(
                f"publish {output.topic}",
                self._parent,
                SpanKind.PRODUCER,
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": output.topic,
                },
            )
        context: dict[str, str] = {}
        _put_context(context, carrier)
        outcome.record = _with_context(output, context)

    def acknowledged(self, error: BaseException | None) -> None:
        """The broker has the output (``error`` None), or refused it: the event's spans end."""
        for span in (self._publish, self.span):
            if span is None:
                continue
            if error is not None:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(_ERROR)
            span.end()


def _describe(span: Span, flight: Flight, outcome: Outcome) -> None:
    """What became of the event, on its consume span."""
    if flight.event is not None:
        span.set_attribute("streamproc.event_id", flight.event.event_id)
    span.set_attribute("streamproc.outcome", outcome.kind)
    if outcome.kind == "dead_letter":
        span.set_attribute("streamproc.dead_letter.stage", outcome.label)
        return
    span.set_attribute("streamproc.decision", outcome.label)
    span.set_attribute("streamproc.fallback", outcome.fallback_reason is not None)
    if outcome.fallback_reason is not None:
        span.set_attribute("streamproc.fallback_reason", outcome.fallback_reason)


def _put_context(carrier: dict[str, str], span: Span) -> None:
    """``span``'s W3C trace context, as ``traceparent`` (and ``tracestate``) entries."""
    context = span.get_span_context()
    carrier[TRACEPARENT] = (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    if context.trace_state:
        carrier[TRACESTATE] = context.trace_state.to_header()


def _with_context(record: OutputRecord, context: dict[str, str]) -> OutputRecord:
    """``record`` with the trace ``context`` for headers: a trace header it had (a dead letter
    keeps the input's) is replaced in place, one it lacks is added at the end."""
    headers: list[tuple[str, bytes | None]] = []
    for name, value in record.headers:
        if name in _CONTEXT_HEADERS:
            if name in context:
                headers.append((name, context.pop(name).encode()))
        else:
            headers.append((name, value))
    headers.extend((name, value.encode()) for name, value in context.items())
    return OutputRecord(record.topic, record.key, record.value, headers)
