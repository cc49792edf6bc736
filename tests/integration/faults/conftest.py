"""Each fault test runs once per delivery mode in its long version (``--chaos``). The short
versions (``make test``) run the modes a test module names in ``SHORT_RUN_MODES`` (default:
all), so that ``make test`` stays short: the crash and failover tests check both modes there,
the others at-least-once only.

``fault_topics(servers, partitions, ...)`` makes a test's topics (``topics.fresh_topics``) and
deletes them when the test ends, so the brokers do not collect them run after run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.stack import Topics
from tests.fixtures.faults import long_runs
from tests.integration.faults.processes import DELIVERY_MODES, delivery_params
from tests.integration.faults.topics import TopicsFactory, delete_topics, fresh_topics


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "delivery" not in metafunc.fixturenames:
        return
    modes = DELIVERY_MODES
    if not long_runs(metafunc.config):
        modes = getattr(metafunc.module, "SHORT_RUN_MODES", DELIVERY_MODES)
    metafunc.parametrize("delivery", delivery_params(modes), scope="module")


@pytest.fixture
def fault_topics() -> Iterator[TopicsFactory]:
    made: list[tuple[str, Topics]] = []

    def make(servers: str, partitions: int, **options: Any) -> Topics:
        topics = fresh_topics(servers, partitions, **options)
        made.append((servers, topics))
        return topics

    yield make
    for servers, topics in made:
        delete_topics(servers, topics)
