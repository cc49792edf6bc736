from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.unit.processor.fakes import Harness, build


@pytest.fixture(autouse=True)
def _no_streamproc_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read STREAMPROC_* variables; the shell running the tests must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMPROC_"):
            monkeypatch.delenv(name)


MakeHarness = Callable[..., Harness]


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """Processors wired to fakes; each is stopped and drained at teardown."""
    made: list[Harness] = []

    def make(*args: Any, **kwargs: Any) -> Harness:
        harness = build(*args, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.aclose()
