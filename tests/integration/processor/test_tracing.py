"""A payment's trace crosses the processor: from the input record's traceparent, through the
execute request the Control Room receives, to the decision's headers; the spans go out over
OTLP/HTTP, as the processor exports them to a collector."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from streamproc.config import ObservabilitySettings, TracingSettings
from tests.fixtures.kafka import produce_records
from tests.integration.processor.harness import (
    collecting,
    event,
    new_topics,
    record_of,
    running,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

FRAUD_FILE_ID = 201
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


@dataclass
class Collector:
    """An OTLP/HTTP traces endpoint that keeps what it is sent."""

    url: str = ""
    spans: list[Span] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        export = ExportTraceServiceRequest.FromString(raw)
        for resource_spans in export.resource_spans:
            self.resources.append(_attributes(resource_spans.resource.attributes))
            for scope in resource_spans.scope_spans:
                self.spans.extend(
                    Span(
                        s.name,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        _attributes(s.attributes),
                    )
                    for s in scope.spans
                )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, prefix: str) -> list[Span]:
        return [s for s in self.spans if s.name.startswith(prefix)]


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


@asynccontextmanager
async def collector() -> AsyncIterator[Collector]:
    received = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", received.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received.url = f"http://127.0.0.1:{port}/v1/traces"
    try:
        yield received
    finally:
        await runner.cleanup()


async def test_an_input_traceparent_reaches_the_control_room_and_the_decision(
    kafka_bootstrap: str, emulator_factory: Any, unique_group: str
) -> None:
    """On the real broker and the emulator: the input's traceparent is the parent of the
    event's spans, which the collector receives over OTLP; the Control Room receives the
    execute span's traceparent, and the decision carries the publish span's, all in the
    input's trace."""
    emulator = emulator_factory()
    topics = new_topics(kafka_bootstrap, partitions=1)
    async with collector() as otlp:
        tracing = TracingSettings(enabled=True, endpoint=otlp.url, service_name="fraud-scoring")
        settings = settings_for(
            kafka_bootstrap,
            emulator.url,
            topics,
            unique_group,
            processing={"decision_sla_ms": 10_000},
        ).model_copy(
            update={"observability": ObservabilitySettings(http_enabled=False, tracing=tracing)}
        )
        key, value, headers = record_of(event("traced-1", "card-1"))
        headers.append(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()))
        async with collecting(kafka_bootstrap, topics) as outputs, running(settings):
            await asyncio.to_thread(
                produce_records, kafka_bootstrap, topics.input, [(key, value, headers)]
            )
            await wait_for(outputs.decisions, 30, "the decision")
        # Stopped: the processor sent its last spans on its way out.
        await wait_for(lambda: otlp.named("publish"), 10, "the spans at the collector")
    (decision,) = outputs.decisions()
    assert decision.json["fallback"] is False
    (consume,) = otlp.named("consume")
    (wait,) = otlp.named("admission")
    (execute,) = otlp.named("execute")
    (publish,) = otlp.named("publish")
    assert consume.name == f"consume {topics.input}"
    assert (consume.trace_id, consume.parent_id) == (TRACE_ID, PARENT_ID)
    assert consume.attributes["streamproc.event_id"] == "traced-1"
    assert {s.trace_id for s in (wait, execute, publish)} == {TRACE_ID}
    assert {s.parent_id for s in (wait, execute, publish)} == {consume.span_id}
    assert (execute.attributes["streamproc.task"], execute.attributes["streamproc.attempt"]) == (
        "fraud", 1,
    )  # fmt: skip
    assert otlp.resources[0]["service.name"] == "fraud-scoring"
    sent = emulator.allocation_stats(FRAUD_FILE_ID)["lastTraceparent"]
    assert sent == f"00-{TRACE_ID}-{execute.span_id}-01"
    published = decision.headers["traceparent"]
    assert published == f"00-{TRACE_ID}-{publish.span_id}-01".encode()
