"""The Grafana dashboard and the Prometheus rules of deploy/, checked with promtool and against a
running processor's /metrics.

promtool (Debian's ``prometheus`` package, installed by ``scripts/tools.sh promtool``) checks
the rules' syntax, runs their unit tests, and parses every dashboard query. A processor on the
real broker and the emulator is then scraped: each series a query selects must be exported,
with the labels the query groups by, or the panel or alert would be empty forever.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamproc.config import ObservabilitySettings
from streamproc.emulator import EmulatorHandle
from tests.fixtures.kafka import REPO_ROOT
from tests.integration.deploy.promql import TARGET_LABELS, grouping_labels, selectors
from tests.integration.processor.harness import (
    collecting,
    event,
    new_topics,
    produce_raw,
    running,
    send_fresh,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "streamproc.json"
# Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", '"$job"': '".+"'}


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path, installed by the project's own tool script when missing."""
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "tools.sh"), "promtool"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/tools.sh promtool failed:\n{result.stderr[-3000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def dashboard_queries() -> list[tuple[str, str, list[str]]]:
    """(panel title, PromQL as Prometheus receives it, legends) of every dashboard target."""
    document = orjson.loads(DASHBOARD.read_bytes())
    queries = []
    for panel in panels(document["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr, [target.get("legendFormat", "")]))
    return queries


def rule_queries() -> list[tuple[str, str, list[str]]]:
    """(alert name, PromQL, templates) of every rule in alerts.yml."""
    document = yaml.safe_load(ALERTS.read_text())
    return [
        (rule["alert"], rule["expr"], list(rule.get("annotations", {}).values()))
        for group in document["groups"]
        for rule in group["rules"]
    ]


def test_alert_rules_and_config_pass_promtool(promtool: str) -> None:
    """`promtool check rules` and `check config` accept deploy/prometheus."""
    rules = run(promtool, "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 8 rules found" in rules.stdout
    config = run(promtool, "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert config.returncode == 0, config.stdout + config.stderr


def test_each_alert_fires_on_its_situation(promtool: str) -> None:
    """The rules' unit tests pass: each alert fires on what it names, and not just short of it."""
    result = run(promtool, "test", "rules", "alerts.test.yml", cwd=DEPLOY / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        item["alertname"]
        for test in yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yml").read_text())["tests"]
        for item in test["alert_rule_test"]
    }
    assert tested == {name for name, _, _ in rule_queries()}


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each dashboard query, as Grafana sends it, parses as PromQL (promtool)."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr, _) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    file = tmp_path / "dashboard-queries.yml"
    file.write_text(yaml.safe_dump(rules))
    result = run(promtool, "check", "rules", str(file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_has_the_panels_people_look_for() -> None:
    """The dashboard shows each view its readers asked for, and is provisioned from a file."""
    titles = {title for title, _, _ in dashboard_queries()}
    assert {
        "Throughput",
        "Decision mix",
        "Fallbacks by reason",
        "Budget use per allocation",
        "Execute latency",
        "Decision latency",
        "Consumer lag",
        "Dead letters by stage",
        "Commit lag",
        "Circuit breakers",
    } <= titles
    document = orjson.loads(DASHBOARD.read_bytes())
    kinds = {p["title"]: p["type"] for p in panels(document["panels"])}
    assert kinds["Execute latency"] == kinds["Decision latency"] == "heatmap"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"


Samples = dict[str, list[dict[str, str]]]


def scrape(port: int) -> Samples:
    """Every exported sample's labels, by sample name (``_total``, ``_bucket``... included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


async def scrape_until(
    port: int, done: Callable[[Samples], bool], what: str, timeout_s: float = 30
) -> Samples:
    """Scrape (off the event loop, which serves /metrics) until ``done``; bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await asyncio.to_thread(scrape, port)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_every_series_queried_is_exported_by_a_running_processor(
    kafka_bootstrap: str, emulator: EmulatorHandle
) -> None:
    """Scraping a processor that decided events and dead-lettered one finds every series that a
    dashboard panel or an alert rule selects, with the labels it groups by."""
    topics = new_topics(kafka_bootstrap, partitions=2)
    settings = settings_for(
        kafka_bootstrap,
        emulator.url,
        topics,
        f"obs-{uuid.uuid4().hex[:8]}",
        # Scored by the API Task even on a loaded machine, so execute series exist.
        processing={"decision_sla_ms": 60_000},
    )
    settings = settings.model_copy(
        update={
            "observability": ObservabilitySettings(http_port=0),
            # Statistics every half second, so consumer lag is exported within the test.
            "kafka": settings.kafka.model_copy(
                update={"consumer_overrides": {"statistics.interval.ms": "500"}}
            ),
        }
    )
    async with collecting(kafka_bootstrap, topics) as outputs, running(settings) as handle:
        assert handle.server is not None
        assert handle.server.port is not None
        port = handle.server.port
        # Produced off the event loop, which runs the processor.
        events = await asyncio.to_thread(
            send_fresh,
            kafka_bootstrap,
            topics.input,
            lambda: [event(f"obs-{i}", f"card-{i % 5}") for i in range(20)],
        )
        await asyncio.to_thread(
            produce_raw, kafka_bootstrap, topics.input, [("not-json", b"{nope")]
        )
        await wait_for(lambda: outputs.count() >= len(events) + 1, 60, "every output")
        samples = await scrape_until(
            port,
            lambda s: (
                {x["partition"] for x in s.get("streamproc_consumer_lag", [])} == {"0", "1"}
                and bool(s.get("streamproc_commit_lag"))
            ),
            "consumer and commit lag of both partitions",
        )

    missing: list[str] = []
    for source, expr, legends in dashboard_queries() + rule_queries():
        used = selectors(expr)
        assert used, f"{source}: no streamproc series in {expr!r}"
        labels: set[str] = set(TARGET_LABELS)
        for selector in used:
            found = [
                exported
                for name, series in samples.items()
                for exported in series
                if selector.matches(name, exported)
            ]
            if not found:
                missing.append(f"{source}: {selector}")
            for exported in found:
                labels.update(exported)
        absent = grouping_labels(expr, legends) - labels - {"value"}
        if absent:
            missing.append(f"{source}: labels {sorted(absent)} on none of its series")
    assert not missing, "\n".join(missing)
    # Consumer lag is per partition of the input topic, and nothing is left to consume.
    lags = {(s["topic"], s["partition"]) for s in samples["streamproc_consumer_lag"]}
    assert lags == {(topics.input, "0"), (topics.input, "1")}
