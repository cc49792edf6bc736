"""The composition root: builds a running processor from :class:`Settings`, and tears it down.

Start-up fails fast, with one clear error, on anything that would otherwise fail every event:
credentials the Control Room rejects, a repository path without an allocation, a missing
topic, or an API Task without any budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from streamproc.config import ControlRoomSettings, Settings, describe
from streamproc.controlroom.client import ControlRoomClient
from streamproc.controlroom.credentials import (
    ApiKeyCredentials,
    BearerCredentials,
    Credentials,
    PasswordCredentials,
)
from streamproc.controlroom.transport import DEFAULT_TRANSPORT, ExecuteTransport, TransportKind
from streamproc.controlroom.transport_aiohttp import AiohttpExecuteTransport
from streamproc.controlroom.transport_httptools import HttptoolsExecuteTransport
from streamproc.controlroom.transport_httpx import HttpxExecuteTransport
from streamproc.controlroom.transport_pyreqwest import PyreqwestExecuteTransport
from streamproc.core.budgets import resolve_limit
from streamproc.core.circuit import STATE_CODE, CircuitBreaker
from streamproc.errors import (
    AccessDetailsError,
    AuthError,
    ConfigError,
    KafkaAdminError,
    KafkaDeliveryError,
    PermissionDeniedError,
    RetryableError,
    StartupError,
)
from streamproc.kafka.admin import (
    GroupDescription,
    describe_group,
    describe_partitions,
    missing_topics,
)
from streamproc.kafka.consumer import KafkaSource
from streamproc.kafka.producer import KafkaSink
from streamproc.kafka.statistics import ConsumerStatistics
from streamproc.logs import get_logger
from streamproc.observability.metrics import ProcessorMetrics
from streamproc.observability.recent import RecentOutputs
from streamproc.observability.server import HealthProbe, ObservabilityServer, build_app
from streamproc.observability.status import Identity, StatusBoard
from streamproc.observability.statuspage import StatusPage
from streamproc.processor.allocation import Allocation
from streamproc.processor.budget_share import BudgetSplitter
from streamproc.processor.engine import Processor
from streamproc.processor.flight import Flight, Tracer
from streamproc.processor.ports import Sink

log = get_logger("app")
T = TypeVar("T")


def credentials(cr: ControlRoomSettings, *, admin: bool = False) -> Credentials:
    """The identity to log in with; ``admin`` selects the optional allocation reader."""
    if admin:
        assert cr.admin_username is not None
        if cr.admin_api_key is not None:
            return ApiKeyCredentials(cr.admin_username, cr.admin_api_key)
        assert cr.admin_password is not None
        return PasswordCredentials(cr.admin_username, cr.admin_password)
    if cr.bearer_token is not None:
        return BearerCredentials(token=cr.bearer_token)
    assert cr.username is not None
    if cr.api_key is not None:
        return ApiKeyCredentials(cr.username, cr.api_key)
    assert cr.password is not None
    return PasswordCredentials(cr.username, cr.password)


def control_room(cr: ControlRoomSettings, *, admin: bool = False) -> ControlRoomClient:
    return ControlRoomClient(
        cr.url,
        credentials(cr, admin=admin),
        auth_version=cr.auth_version,
        verify_tls=cr.verify_tls,
        ca_file=cr.ca_file,
        timeout_s=cr.request_timeout_ms / 1000,
        refresh_margin_s=cr.token_refresh_margin_s,
    )


async def allocation_limits(settings: Settings) -> dict[str, int]:
    """concurrencyLimit per repository path, read with the admin identity if configured."""
    cr = settings.controlroom
    if not cr.has_admin:
        return {}
    wanted = {t.repository_path for t in settings.api_tasks}
    limits: dict[str, int] = {}
    async with control_room(cr, admin=True) as admin:
        async for allocation in admin.allocations():
            if allocation.file_path in wanted:
                limits[allocation.file_path] = allocation.concurrency_limit
    return limits


def resolve_budgets(settings: Settings, allocations: Mapping[str, int]) -> dict[str, int]:
    budgets: dict[str, int] = {}
    for i, task in enumerate(settings.api_tasks):
        resolution = resolve_limit(
            task.name,
            configured=task.concurrency_limit,
            allocation=allocations.get(task.repository_path),
            config_key=f"api_tasks.{i}.concurrency_limit",
        )
        if resolution.warning:
            log.warning("budget_conflict", task=task.name, detail=resolution.warning)
        log.info("budget", task=task.name, limit=resolution.limit, source=resolution.source)
        budgets[task.name] = resolution.limit
    return budgets


@dataclass
class Running:
    """Handles a caller (the CLI, the demo, a test) may inspect while the processor runs."""

    processor: Processor
    metrics: ProcessorMetrics
    allocations: dict[str, Allocation]
    server: ObservabilityServer | None


async def when_reachable(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    timeout_s: float,
    *,
    first_delay_s: float = 0.5,
) -> T:
    """``attempt()``, retried with backoff while the service does not answer yet.

    Containers start in any order: a processor up before its broker or Control Room should
    wait for them, not crash-loop. Errors that waiting cannot fix (refused credentials, a
    missing topic, a bad path) are raised at once.
    """
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    while True:
        try:
            return await attempt()
        except (RetryableError, KafkaAdminError) as exc:
            if isinstance(exc, KafkaAdminError) and not exc.retriable:
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(f"{what}: no answer within {timeout_s:g} s: {exc}") from exc
            log.warning("waiting_for_dependency", what=what, error=str(exc), retry_in_s=delay)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


async def check_topics(settings: Settings) -> None:
    kafka = settings.kafka
    topics = [kafka.input_topic, kafka.decisions_topic, kafka.dead_letter_topic]
    if kafka.corrections_topic is not None:
        topics.append(kafka.corrections_topic)
    missing = await asyncio.to_thread(
        missing_topics, kafka.bootstrap_servers, topics, kafka.common_config()
    )
    if missing:
        raise ConfigError("kafka", f"topic(s) not found on the broker: {', '.join(missing)}")


def make_execute_transport(
    kind: TransportKind = DEFAULT_TRANSPORT,
    *,
    max_connections: int = 64,
    verify_tls: bool = True,
    ca_file: str | Path | None = None,
) -> ExecuteTransport:
    """A pooled transport for executes; one per process is enough (it is safe to share).

    ``verify_tls`` and ``ca_file`` mean what they mean in :mod:`streamproc.controlroom.trust`.
    """
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "verify_tls": verify_tls,
        "ca_file": ca_file,
    }
    if kind == "httptools":
        return HttptoolsExecuteTransport(**options)
    if kind == "aiohttp":
        return AiohttpExecuteTransport(**options)
    if kind == "httpx":
        return HttpxExecuteTransport(**options)
    if kind == "pyreqwest":
        return PyreqwestExecuteTransport(**options)
    raise ValueError(
        f"unknown execute transport {kind!r}; "
        "expected 'httptools', 'pyreqwest', 'aiohttp' or 'httpx'"
    )


async def build_allocations(
    settings: Settings,
    stack: AsyncExitStack,
    limits: Mapping[str, int],
    metrics: ProcessorMetrics,
) -> dict[str, Allocation]:
    """One allocation per API Task, its execution URL fetched now so a bad path fails at start."""
    cr = settings.controlroom
    proc = settings.processing
    client = control_room(cr)
    stack.push_async_callback(client.aclose)
    transport = make_execute_transport(
        cr.execute_transport,
        # Every slot of every budget holds one connection for its whole round trip.
        max_connections=sum(limits.values()),
        verify_tls=cr.verify_tls,
        ca_file=cr.ca_file,
    )
    stack.push_async_callback(transport.aclose)
    allocations: dict[str, Allocation] = {}
    for task in settings.api_tasks:
        session = client.execution_session(
            task.repository_path, transport, refresh_interval_s=cr.access_refresh_interval_s
        )
        stack.push_async_callback(session.aclose)
        try:
            await when_reachable("the Control Room", session.refresh, proc.startup_timeout_s)
        except AccessDetailsError as exc:
            raise ConfigError(f"api_tasks.{task.name}.repository_path", exc.reason) from exc
        except (AuthError, PermissionDeniedError) as exc:
            raise ConfigError(cr.identity_key, f"cannot get an execution URL: {exc}") from exc
        allocation = Allocation(
            task,
            session,
            limit=limits[task.name],
            retry=proc.retry,
            metrics=metrics,
            admission=proc.admission,
            circuit=CircuitBreaker(proc.circuit_breaker),
        )
        metrics.allocation_budget.labels(task.name).set(allocation.limit)
        metrics.allocation_in_flight.labels(task.name).set_function(
            lambda a=allocation: a.in_flight  # type: ignore[misc]
        )
        metrics.circuit_state.labels(task.name).set_function(
            lambda a=allocation: STATE_CODE[a.circuit.state(time.monotonic())]  # type: ignore[misc]
        )
        allocations[task.name] = allocation
    return allocations


def budget_splitter(
    settings: Settings,
    budgets: Mapping[str, Allocation],
    limits: Mapping[str, int],
    metrics: ProcessorMetrics,
) -> BudgetSplitter | None:
    if settings.processing.budget_split != "by_assignment":
        return None
    kafka = settings.kafka

    async def input_partitions() -> int:
        return await asyncio.to_thread(
            describe_partitions,
            kafka.bootstrap_servers,
            kafka.input_topic,
            client_config=kafka.common_config(),
        )

    return BudgetSplitter(budgets, limits, input_partitions, metrics)


def status_page(
    settings: Settings,
    processor: Processor,
    recent: RecentOutputs | None,
    statistics: ConsumerStatistics,
) -> StatusPage | None:
    """The live status page; None when it is turned off."""
    if recent is None:
        return None
    kafka = settings.kafka
    identity = Identity.here(kafka.client_id, kafka.group_id, time.time())
    board = StatusBoard(processor, recent, identity, group=lambda: statistics.group)

    def member_lookup() -> GroupDescription:
        return describe_group(
            kafka.bootstrap_servers, kafka.group_id, client_config=kafka.common_config()
        )

    return StatusPage(board, member_lookup)


async def start_server(
    settings: Settings,
    processor: Processor,
    metrics: ProcessorMetrics,
    stack: AsyncExitStack,
    status: StatusPage | None = None,
) -> ObservabilityServer | None:
    obs = settings.observability
    if not obs.http_enabled:
        return None
    probe = HealthProbe(
        ready=processor.ready,
        last_poll_monotonic=lambda: processor.last_poll_monotonic,
        stall_after_s=settings.kafka.max_poll_interval_ms / 2000,
    )
    # What /healthz decides, as metrics: alert rules see a stall the way the probe does.
    metrics.intake_stall.set(probe.stall_after_s)
    metrics.intake_idle.set_function(lambda: time.monotonic() - processor.last_poll_monotonic)
    server = ObservabilityServer(build_app(metrics, probe, status), obs.http_host, obs.http_port)
    await server.start()
    stack.push_async_callback(server.stop)
    log.info("observability_listening", host=obs.http_host, port=server.port)
    return server


def event_tracer(settings: Settings, stack: AsyncExitStack) -> Tracer | None:
    """The spans of each event, exported over OTLP; None when tracing is off, and then the
    OpenTelemetry SDK is not even imported (that takes about a third of a second)."""
    tracing = settings.observability.tracing
    if not tracing.enabled:
        return None
    from streamproc.observability.tracing import EventTracer, tracer_provider  # noqa: PLC0415

    provider = tracer_provider(tracing)
    # Pushed first, so run last: after the final acknowledgements have ended their spans.
    stack.push_async_callback(asyncio.to_thread, provider.shutdown)
    log.info("tracing", endpoint=tracing.endpoint, sample_ratio=tracing.sample_ratio)
    return EventTracer(provider.get_tracer("streamproc"), input_topic=settings.kafka.input_topic)


async def run_processor(
    settings: Settings,
    stop: asyncio.Event,
    *,
    metrics: ProcessorMetrics | None = None,
    started: asyncio.Future[Running] | None = None,
) -> None:
    """Build, run until ``stop`` is set, drain, and release every resource."""
    log.info("starting", settings=describe(settings))
    metrics = metrics or ProcessorMetrics()
    patience = settings.processing.startup_timeout_s
    await when_reachable("the Kafka broker", lambda: check_topics(settings), patience)
    try:
        allocations = await when_reachable(
            "the Control Room", lambda: allocation_limits(settings), patience
        )
    except (AuthError, PermissionDeniedError) as exc:
        raise ConfigError("controlroom.admin_username", f"cannot read allocations: {exc}") from exc
    limits = resolve_budgets(settings, allocations)

    async with AsyncExitStack() as stack:
        tracer = event_tracer(settings, stack)
        by_task = await build_allocations(settings, stack, limits, metrics)
        kafka = settings.kafka
        sinks: list[KafkaSink[Flight | None]] = []

        def sink(on_delivery: Callable[[Flight | None, KafkaDeliveryError | None], None]) -> Sink:
            transactional = settings.processing.delivery == "exactly_once"
            config = kafka.producer_config(transactional=transactional)
            sinks.append(KafkaSink(config, on_delivery))
            return sinks[-1]

        splitter = budget_splitter(settings, by_task, limits, metrics)
        if splitter is not None:
            await splitter.prime()
        # The statistics first: kafka.consumer_overrides may set their interval.
        statistics = ConsumerStatistics(metrics.consumer_lag)
        consumer_config = statistics.client_config() | kafka.consumer_config()
        obs = settings.observability
        recent = RecentOutputs() if obs.http_enabled and obs.status_page else None
        processor = Processor(
            settings,
            lambda p: KafkaSource(
                consumer_config, [kafka.input_topic], p, batch_size=kafka.consume_batch_size
            ),
            sink,
            by_task,
            metrics,
            on_assignment=splitter,
            on_output=recent,
            tracer=tracer,
        )
        stack.push_async_callback(sinks[0].close)
        await sinks[0].warm_up([kafka.decisions_topic, kafka.dead_letter_topic])
        status = status_page(settings, processor, recent, statistics)
        server = await start_server(settings, processor, metrics, stack, status)
        interval = settings.observability.progress_interval_s
        if interval > 0:
            reporter = asyncio.create_task(report_progress(metrics, by_task, interval))
            stack.callback(reporter.cancel)
        if started is not None and not started.done():
            started.set_result(Running(processor, metrics, by_task, server))
        await processor.run(stop)


async def report_progress(
    metrics: ProcessorMetrics, allocations: Mapping[str, Allocation], interval_s: float
) -> None:
    """Log totals and rates periodically, so a long run shows its progress in the logs."""
    previous = metrics.totals()
    while True:
        await asyncio.sleep(interval_s)
        now = metrics.totals()
        mono = time.monotonic()
        log.info(
            "progress",
            **{k: int(v) for k, v in now.items()},
            decided_per_s=round((now["decided"] - previous["decided"]) / interval_s, 1),
            budgets={n: f"{a.in_flight}/{a.limit}" for n, a in allocations.items()},
            queued={n: len(a.queue) for n, a in allocations.items()},
            circuits={n: a.circuit.state(mono) for n, a in allocations.items()},
            fallbacks={values[0]: int(c.value) for values, c in metrics.fallbacks.children.items()},
        )
        previous = now
