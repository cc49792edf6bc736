"""The status page in a real headless Chromium, served by a processor scoring events on the
real broker and the emulator.

The browser loads ``/`` from the processor's observability port and follows its event stream
while events flow. The test reads what a person would see (numbers, bars, tables) from the
rendered page, watches every redraw of the budget bars, and saves a screenshot of the page as
a test artifact (``test-artifacts/status-page.png``, or ``$TEST_ARTIFACTS_DIR``).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.config import ObservabilitySettings
from streamproc.emulator import EmulatorHandle
from tests.fixtures.chromium import open_page
from tests.fixtures.emulator import EmulatorFactory
from tests.fixtures.kafka import REPO_ROOT
from tests.integration.processor.harness import (
    TEST_ID,
    event,
    new_topics,
    paced,
    running,
    settings_for,
)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
EVENTS = 1_500
PER_SECOND = 300.0  # more than 8 slots of ~40 ms serve: the budget fills up
MALFORMED_EVERY = 25

# Installed in the page: on every redraw of the budgets, measure each bar as drawn.
WATCH_BUDGETS = """
window.budgetChecks = {redraws: 0, maxFraction: 0, overflow: [], overLimit: []};
new MutationObserver(() => {
  const seen = window.budgetChecks;
  seen.redraws += 1;
  for (const box of document.querySelectorAll("#budgets .budget")) {
    const bar = box.querySelector(".bar").getBoundingClientRect();
    const fill = box.querySelector(".fill").getBoundingClientRect();
    const [shown, limit] = box.querySelector(".detail").textContent.split(" executes")[0]
      .split(" / ").map((t) => Number(t.replace(/,/g, "")));
    seen.maxFraction = Math.max(seen.maxFraction, fill.width / bar.width);
    if (fill.right > bar.right + 0.5 || fill.width > bar.width + 0.5) {
      seen.overflow.push([fill.width, bar.width]);
    }
    if (shown > limit) seen.overLimit.push([shown, limit]);
  }
}).observe(document.getElementById("budgets"), {childList: true, subtree: true});
true
"""


def text_of(element_id: str) -> str:
    return f"document.getElementById({element_id!r}).textContent"


def number_of(element_id: str) -> str:
    return f"Number({text_of(element_id)}.replace(/,/g, ''))"


def record_at(prefix: str) -> Any:
    """The i-th input record: a valid event, or now and then one that is not JSON."""

    def make(i: int) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
            return b"card-x", b"{not json", [(TEST_ID, f"{prefix}-bad-{i}".encode())]
        ev = event(f"{prefix}-{i}", f"card-{i % 40}", amount=10 + i % 900)
        return str(ev["card_id"]).encode(), orjson.dumps(ev), [(TEST_ID, ev["event_id"].encode())]

    return make


async def test_the_status_page_follows_a_running_processor_in_a_browser(
    kafka_bootstrap: str,
    emulator_factory: EmulatorFactory,
    chromium: str,
    tmp_path: Path,
) -> None:
    """In Chromium, the page renders the replica, its numbers change while events flow, the
    budget bar never draws more than the limit (yet fills up under load), the recent outputs
    and the group appear, and no script error occurs; a screenshot is saved."""
    emulator: EmulatorHandle = emulator_factory(latency_ms=40)
    topics = new_topics(kafka_bootstrap, partitions=3)
    settings = settings_for(kafka_bootstrap, emulator.url, topics, f"page-{uuid.uuid4().hex[:8]}")
    settings = settings.model_copy(
        update={
            "observability": ObservabilitySettings(http_port=0),
            # Statistics every half second: the lag and the group state show within the test.
            "kafka": settings.kafka.model_copy(
                update={"consumer_overrides": {"statistics.interval.ms": "500"}}
            ),
        }
    )
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    async with running(settings) as handle:
        assert handle.server is not None
        url = f"http://127.0.0.1:{handle.server.port}/"
        async with open_page(chromium, tmp_path / "chromium") as page:
            await page.goto(url)
            await page.wait_for("Number(document.body.dataset.frames) >= 1", 15, "a first frame")
            assert await page.evaluate(text_of("identity-client")) == "streamproc"
            assert await page.evaluate(text_of("identity-pid")) == str(os.getpid())
            assert await page.evaluate(text_of("group-id")) == settings.kafka.group_id
            await page.evaluate(WATCH_BUDGETS)

            producer = paced(kafka_bootstrap, topics.input, record_at(prefix), EVENTS, PER_SECOND)
            # While events flow, each second's frame shows more decided and a rate in.
            seen_totals: list[int] = []
            seen_rates: list[float] = []
            while producer.is_alive() or not seen_totals:
                frame = await page.evaluate("Number(document.body.dataset.frames)")
                await page.wait_for(
                    f"Number(document.body.dataset.frames) > {frame}", 5, "the next frame"
                )
                seen_totals.append(await page.evaluate(number_of("total-decisions")))
                seen_rates.append(await page.evaluate(number_of("rate-in")))
            await asyncio.to_thread(producer.join, 30)
            assert len(set(seen_totals)) >= 3, seen_totals
            assert seen_totals == sorted(seen_totals)
            assert max(seen_rates) > 50, seen_rates

            answered = (
                f"{number_of('total-decisions')} + {number_of('total-dead-letters')} >= {EVENTS}"
            )
            await page.wait_for(answered, 60, "every event decided or dead-lettered on the page")
            await page.wait_for(
                f"{text_of('member-id')}.startsWith('streamproc-')", 30, "the member id"
            )
            await page.wait_for(f"{text_of('group-state')}.includes('steady')", 15, "the group")

            budget = await page.evaluate("window.budgetChecks")
            assert budget["redraws"] >= 5
            assert budget["overflow"] == []
            assert budget["overLimit"] == []
            assert 0.5 <= budget["maxFraction"] <= 1.0, budget

            partitions = await page.evaluate(text_of("partitions"))
            assert partitions == ", ".join(f"{topics.input}/{p}" for p in range(3))
            assert re.fullmatch(r"≤ [\d,.]+ ms", await page.evaluate(text_of("latency-p50")))
            assert "APPROVE" in await page.evaluate(text_of("decision-legend"))
            recent_ids = await page.evaluate(
                "[...document.querySelectorAll('#recent-decisions tbody tr td:nth-child(2)')]"
                ".map((td) => td.textContent)"
            )
            assert recent_ids
            assert all(eid.startswith(prefix) for eid in recent_ids)
            stages = await page.evaluate(
                "[...document.querySelectorAll('#recent-dead-letters tbody tr td:nth-child(2)')]"
                ".map((td) => td.textContent)"
            )
            assert stages
            assert set(stages) == {"decode"}
            dead = await page.evaluate(number_of("total-dead-letters"))
            assert dead == EVENTS // MALFORMED_EVERY
            assert await page.evaluate(text_of("connection-text")) == "live"

            png = await page.screenshot(ARTIFACTS / "status-page.png")
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            assert page.errors == []
