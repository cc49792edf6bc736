"""The demo: broker check, emulator, topics, processor, generator and end-to-end check, live.

One run, in order:

1. read the settings; route every log line to ``.demo/demo.log`` so nothing garbles the view;
2. check that a broker answers (else say ``make kafka-up``);
3. start the Control Room emulator on a thread (unless the config points at a real Control
   Room, or ``--no-emulator``), with lognormal latency around ``--latency-ms``;
4. create the topics; give the processor a consumer group of its own for this run, committed
   at the end of the input topic, so a rerun starts clean: it processes exactly the events
   this run produces, whatever earlier runs left behind;
5. run the processor in-process, and wait until its group owns every input partition, so the
   first events are not spent waiting for a rebalance (and decided late by fallback);
6. follow the decisions and dead-letter topics from their current ends, counting outcomes by
   event id (:class:`~streamproc.demo.ledger.Ledger`), and start the paced generator;
7. on Ctrl-C, SIGTERM or ``--duration``: stop the generator, wait (bounded) until every
   produced event has its output, stop the processor (drain and commit), read the outputs to
   their ends so a late duplicate would still be seen, and print the summary.

A second Ctrl-C ends the process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar
from urllib.parse import urlsplit

from streamproc import logs
from streamproc.app import Running, run_processor
from streamproc.config import Settings
from streamproc.demo.feed import SampleFeed, sample_producer_config
from streamproc.demo.generator import SampleGenerator, SampleRecord
from streamproc.demo.ledger import Ledger, RateMeter
from streamproc.demo.outputs import parse_dead_letter, parse_decision
from streamproc.demo.progress import LiveView, ProcessorView, Summary, Tick, summary_lines
from streamproc.demo.reader import (
    TopicFollower,
    broker_problem,
    commit_positions,
    end_offsets,
    group_owns_all,
    wait_for,
)
from streamproc.emulator import EmulatorHandle, run_in_thread
from streamproc.emulator import load_settings as load_emulator_settings
from streamproc.emulator.server import loop_factory
from streamproc.errors import ConfigError, StartupError, StreamprocError
from streamproc.kafka.admin import TopicSpec, describe_partitions, ensure_topics
from streamproc.kafka.records import ConsumedRecord

T = TypeVar("T")
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
OUTPUT_WAIT_S: Final = 15.0
ASSIGNMENT_WAIT_S: Final = 30.0
START_WAIT_S: Final = 60.0
TTY_REFRESH_S: Final = 1.0
PLAIN_REFRESH_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    rate: float = 200.0
    duration_s: float | None = None
    emulator_port: int | None = None
    use_emulator: bool = True
    partitions: int = 6
    latency_ms: float = 20.0
    malformed_ratio: float = 0.02
    seed: int | None = None
    log_dir: Path = Path(".demo")


@dataclass(slots=True)
class _Workers:
    """What runs once the demo has started, so one place can stop all of it."""

    stop_processor: asyncio.Event
    processor: asyncio.Task[None]
    stop_threads: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop_feed: threading.Event = dataclasses.field(default_factory=threading.Event)
    tasks: list[asyncio.Future[Any]] = dataclasses.field(default_factory=list)
    refresh: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        self.stop_feed.set()
        self.stop_threads.set()
        self.stop_processor.set()
        if self.refresh is not None:
            self.refresh.cancel()
            self.tasks.append(self.refresh)
        await asyncio.gather(self.processor, *self.tasks, return_exceptions=True)


class Demo:
    """One demo run; :meth:`run` returns the exit status."""

    def __init__(self, settings: Settings, options: DemoOptions, out: TextIO) -> None:
        self.settings = settings
        self.options = options
        self.view = LiveView(out)
        self.ledger = Ledger()
        self.log_path = options.log_dir / "demo.log"
        self.phase = "starting"
        self.problems: list[str] = []
        self._out = out
        self._stop_requested = asyncio.Event()
        self._redraw = asyncio.Event()
        self._interrupts = 0
        self._main: asyncio.Task[Any] | None = None
        self._running: Running | None = None
        self._feed: SampleFeed | None = None
        self._feed_started_at: float | None = None
        self._rates = RateMeter()
        self._metrics_note = ""

    # -- signals ------------------------------------------------------------------------------

    def _on_interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            self._out.write("\nstreamproc demo: aborted (second Ctrl-C); nothing was verified\n")
            self._out.flush()
            os._exit(130)
        if self.phase == "starting" and self._main is not None:
            self._main.cancel()
        else:
            self._stop_requested.set()

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self._redraw.set()

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> int:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_interrupt)
        try:
            with contextlib.ExitStack() as stack:
                await self._prepare(stack)
                return await self._run_started()
        except asyncio.CancelledError:
            if self._main is not None:
                self._main.uncancel()
            self._out.write("streamproc demo: interrupted during start-up\n")
            return 130
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _prepare(self, stack: contextlib.ExitStack) -> None:
        kafka = self.settings.kafka
        problem = await asyncio.to_thread(broker_problem, kafka.common_config())
        if problem is not None:
            raise StartupError(
                f"no Kafka broker answers at {kafka.bootstrap_servers}: start the local one with"
                " `make kafka-up` (`make demo` does it for you), or point"
                f" STREAMPROC_KAFKA__BOOTSTRAP_SERVERS at a running broker ({problem})"
            )
        self._write("streamproc demo")
        self._write(f"  broker        {kafka.bootstrap_servers}")
        self._free_metrics_port()
        self._start_control_room(stack)
        await self._create_topics()
        await self._start_group()

    def _free_metrics_port(self) -> None:
        """Serve metrics on a free port when the configured one is taken (by `streamproc run`,
        say): the metrics are a side show here, not a reason to refuse to start."""
        obs = self.settings.observability
        if not obs.http_enabled or obs.http_port == 0 or _can_bind(obs.http_host, obs.http_port):
            return
        self._metrics_note = f" ({obs.http_port} is in use)"
        free = obs.model_copy(update={"http_port": 0})
        self.settings = self.settings.model_copy(update={"observability": free})

    def _start_control_room(self, stack: contextlib.ExitStack) -> None:
        cr_url = self.settings.controlroom.url
        parts = urlsplit(cr_url)
        local = (parts.hostname or "") in LOOPBACK
        if not self.options.use_emulator or (not local and self.options.emulator_port is None):
            self._write(f"  Control Room  {cr_url} (as configured: no emulator started)")
            return
        port = self.options.emulator_port
        if port is None:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        overrides = {
            "host": "127.0.0.1",
            "port": port,
            "latency_ms": self.options.latency_ms,
            "latency_distribution": "lognormal",
            "latency_sigma": 0.5,
            "access_log": False,
            "log_level": "WARNING",
            "shutdown_grace_seconds": 1.0,
        }
        try:
            handle: EmulatorHandle = stack.enter_context(
                run_in_thread(load_emulator_settings(None, overrides))
            )
        except OSError as exc:
            raise StartupError(
                f"cannot start the Control Room emulator on 127.0.0.1:{port}: {exc.strerror}"
                " (is `make emulator` or another demo running?); stop it, or pass"
                " --emulator-port PORT (0 picks a free port)"
            ) from exc
        controlroom = self.settings.controlroom.model_copy(update={"url": handle.url})
        self.settings = self.settings.model_copy(update={"controlroom": controlroom})
        self._write(
            f"  Control Room  emulator at {handle.url}, Fraud Score API Task"
            f" answering in ~{self.options.latency_ms:g} ms (lognormal)"
        )

    async def _create_topics(self) -> None:
        kafka = self.settings.kafka
        partitions = self.options.partitions
        topics = {
            kafka.input_topic: TopicSpec(partitions),
            kafka.decisions_topic: TopicSpec(partitions),
            kafka.dead_letter_topic: TopicSpec(1),
        }
        common = kafka.common_config()
        await asyncio.to_thread(
            ensure_topics, kafka.bootstrap_servers, topics, client_config=common
        )
        actual = await asyncio.to_thread(
            describe_partitions, kafka.bootstrap_servers, kafka.input_topic, client_config=common
        )
        note = "" if actual == partitions else ": it existed already"
        self._write(
            f"  topics        {kafka.input_topic} ({actual} partitions{note}) ->"
            f" {kafka.decisions_topic}, {kafka.dead_letter_topic}"
        )

    async def _start_group(self) -> None:
        kafka = self.settings.kafka
        run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        group = f"{kafka.group_id}-demo-{run_id}-{os.getpid()}"
        common = kafka.common_config()
        ends = await asyncio.to_thread(end_offsets, common, [kafka.input_topic])
        await asyncio.to_thread(commit_positions, common, group, ends)
        self.settings = self.settings.model_copy(
            update={"kafka": kafka.model_copy(update={"group_id": group})}
        )
        self._write(
            f"  processor     consumer group {group} (new each run: only this run's events)"
        )

    async def _run_started(self) -> int:
        kafka = self.settings.kafka
        common = kafka.common_config()
        output_topics = [kafka.decisions_topic, kafka.dead_letter_topic]
        output_starts = await asyncio.to_thread(end_offsets, common, output_topics)
        started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
        stop_processor = asyncio.Event()
        workers = _Workers(
            stop_processor,
            asyncio.create_task(
                run_processor(self.settings, stop_processor, started=started), name="processor"
            ),
        )
        try:
            self._running = await self._first(started, workers.processor, START_WAIT_S)
            await self._await_assignment()
            follower = TopicFollower(common, output_starts, self._on_output)
            workers.tasks.append(
                asyncio.create_task(asyncio.to_thread(follower.run, workers.stop_threads))
            )
            feed = self._start_feed(workers.stop_feed)
            workers.tasks.append(feed)
            workers.refresh = asyncio.create_task(self._refresh_loop())
            await self._until_stop(feed, workers.processor)
            await self._shutdown(workers, feed, follower)
        finally:
            await workers.stop()
        self._show()
        return self._summarise()

    async def _first(
        self, started: asyncio.Future[Running], processor: asyncio.Task[None], timeout_s: float
    ) -> Running:
        waiting: set[asyncio.Future[Any]] = {started, processor}
        done, _ = await asyncio.wait(
            waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if started in done:
            running = started.result()
            if running.server is not None:
                obs = self.settings.observability
                base = f"http://{obs.http_host}:{running.server.port}"
                if obs.status_page:
                    self._write(f"  status page   {base}/ (live, in a browser)")
                self._write(f"  metrics       {base}/metrics" + self._metrics_note)
            return running
        if processor in done:
            try:
                processor.result()  # raises what stopped it
            except OSError as exc:  # the only socket it binds is the metrics server's
                raise StartupError(
                    f"the processor cannot serve metrics: {exc}; set"
                    " STREAMPROC_OBSERVABILITY__HTTP_PORT=0 for a free port"
                ) from exc
        raise StartupError(f"the processor did not start within {timeout_s:g} s; see the log")

    async def _await_assignment(self) -> None:
        """Wait until the processor's group owns every input partition (bounded)."""
        kafka = self.settings.kafka
        common = kafka.common_config()
        partitions = list(await asyncio.to_thread(end_offsets, common, [kafka.input_topic]))
        owned = await asyncio.to_thread(
            wait_for, lambda: group_owns_all(common, kafka.group_id, partitions), ASSIGNMENT_WAIT_S
        )
        if not owned:
            self.problems.append(
                f"the processor did not own every input partition within {ASSIGNMENT_WAIT_S:g} s"
            )

    def _start_feed(self, stop: threading.Event) -> asyncio.Future[Any]:
        kafka = self.settings.kafka
        generator = SampleGenerator(
            self.options.seed, malformed_ratio=self.options.malformed_ratio, clock=time.time
        )
        self._feed = SampleFeed(
            sample_producer_config(kafka.bootstrap_servers, **_security(kafka.common_config())),
            kafka.input_topic,
            generator,
            rate=self.options.rate,
            duration_s=self.options.duration_s,
            on_sent=self._on_sent,
            on_failed=self._on_failed,
        )
        until = f" for {self.options.duration_s:g} s" if self.options.duration_s else ""
        self._write(
            f"  generator     {self.options.rate:g} events/s{until},"
            f" {self.options.malformed_ratio:.0%} malformed on purpose, seed {generator.seed}"
        )
        self._write(f"  log           {self.log_path} (processor, emulator and Kafka clients)")
        self._write(
            "  Ctrl-C        stops producing, waits for every output, drains, sums up"
            " (twice: aborts)"
        )
        self._write("")
        self._enter("running")
        self._feed_started_at = time.monotonic()
        return asyncio.ensure_future(asyncio.to_thread(self._feed.run, stop))

    async def _until_stop(self, feed: asyncio.Future[Any], processor: asyncio.Task[None]) -> None:
        stop = asyncio.create_task(self._stop_requested.wait())
        await asyncio.wait({stop, feed, processor}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if processor.done():
            error = processor.exception() if not processor.cancelled() else None
            self.problems.append(f"the processor stopped: {error or 'cancelled'}")

    async def _shutdown(
        self, workers: _Workers, feed: asyncio.Future[Any], follower: TopicFollower
    ) -> None:
        self._enter("stopping the generator")
        workers.stop_feed.set()
        await asyncio.gather(feed, return_exceptions=True)
        assert self._feed is not None
        if self._feed.stats.first_error:
            self.problems.append(f"producing samples: {self._feed.stats.first_error}")
        self._enter("waiting for every event's output")
        processor = workers.processor
        answered = await self._poll(
            lambda: self.ledger.snapshot(time.monotonic()).outstanding == 0 or processor.done(),
            OUTPUT_WAIT_S,
        )
        if not answered:
            outstanding = self.ledger.snapshot(time.monotonic()).outstanding
            self.problems.append(f"{outstanding} event(s) had no output after {OUTPUT_WAIT_S:g} s")
        self._enter("stopping the processor (drain and commit)")
        workers.stop_processor.set()
        with contextlib.suppress(Exception):
            await processor
        self._running = None  # its gauges mean nothing once it has stopped
        # Outputs published while the processor drained are read before judging: a late
        # duplicate must be counted, not missed.
        kafka = self.settings.kafka
        ends = await asyncio.to_thread(
            end_offsets, kafka.common_config(), [kafka.decisions_topic, kafka.dead_letter_topic]
        )
        if not await self._poll(lambda: follower.reached(ends), 10.0):
            self.problems.append("the output topics could not be read to their end")
        self._enter("done")

    async def _poll(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # -- feeding the ledger (on the producer and reader threads) ------------------------------

    def _on_sent(self, record: SampleRecord) -> None:
        self.ledger.sent(record.event_id, record.kind)

    def _on_failed(self, record: SampleRecord, _reason: str) -> None:
        self.ledger.not_produced(record.event_id)

    def _on_output(self, record: ConsumedRecord) -> None:
        if record.topic == self.settings.kafka.dead_letter_topic:
            output = parse_dead_letter(record.value, record.headers)
        else:
            output = parse_decision(record.value, record.headers)
        self.ledger.seen(output, time.monotonic())

    # -- the view -----------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        interval = TTY_REFRESH_S if self.view.tty else PLAIN_REFRESH_S
        while True:
            self._redraw.clear()
            self._show()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can turn a cancel that lands
            # during its own timeout into TimeoutError, and this loop would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._redraw.wait()

    def _show(self) -> None:
        now = time.monotonic()
        snap = self.ledger.snapshot(now)
        produced_rate, processed_rate = self._rates.add(now, snap.sent, snap.answered)
        self.view.show(
            Tick(
                elapsed_s=now - (self._feed_started_at or now),
                phase=self.phase,
                snapshot=snap,
                produced_per_s=produced_rate,
                processed_per_s=processed_rate,
                processor=self._processor_view(),
            )
        )

    def _processor_view(self) -> ProcessorView | None:
        running = self._running
        if running is None:
            return None
        return ProcessorView(
            in_flight=running.processor.in_flight,
            paused=running.processor.paused,
            budgets=[(n, a.in_flight, a.limit) for n, a in sorted(running.allocations.items())],
        )

    def _summarise(self) -> int:
        now = time.monotonic()
        snap = self.ledger.snapshot(now, totals=True)
        started = self._feed_started_at or now
        stats = self._feed.stats if self._feed else None
        producing = 0.0
        if stats is not None and stats.started_at is not None:
            producing = (stats.finished_at or now) - stats.started_at
        last = snap.last_output_at or now
        summary = Summary(
            snapshot=snap,
            elapsed_s=max(last, started) - started,
            producing_s=producing,
            log_path=str(self.log_path),
            problems=tuple(self.problems),
        )
        self._write("")
        for line in summary_lines(summary):
            self._write(line)
        return 0 if snap.verdict.ok and not self.problems else 1

    def _write(self, line: str) -> None:
        self.view.message(line)


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _security(common: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in common.items() if k.startswith(("security.", "sasl."))}


def route_logs(settings: Settings, log_path: Path) -> TextIO:
    """Send structlog and stdlib logging to ``log_path``, so nothing garbles the live view."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stream = log_path.open("a", encoding="utf-8", buffering=1)
    obs = settings.observability
    logs.configure(obs.log_level, json=obs.log_format == "json", stream=stream)
    handler = logging.StreamHandler(stream)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    return stream


def run_demo(
    settings: Settings,
    options: DemoOptions,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Run the demo to its end; the exit status (0: every event came out exactly once)."""
    demo = Demo(settings, options, out)
    stream = route_logs(settings, demo.log_path)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(_guarded(demo.run(), err))
    finally:
        stream.close()


async def _guarded(run: Coroutine[Any, Any, int], err: TextIO) -> int:
    try:
        return await run
    except ConfigError as exc:
        err.write(f"streamproc demo: configuration error: {exc}\n")
        return 2
    except StreamprocError as exc:
        err.write(f"streamproc demo: {exc}\n")
        return 1
