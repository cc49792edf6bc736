"""The container tests need podman, set up by ``make containers`` (scripts/containers.sh up).

Where it is not set up they are skipped, with the reason. With CONTAINER_TESTS=require
(``make test`` sets it once it has set podman up) a missing piece fails them instead, so a run
that was meant to exercise the containers cannot pass by skipping them. The figures the tests
measure (image size, event counts) are printed at the end of the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.fixtures.containers import ContainerEngineError, build_project_image, engine_problem

FIGURES: list[str] = []

Report = Callable[[str], None]


@pytest.fixture(scope="session", autouse=True)
def container_engine() -> None:
    """Podman with the base images and its API, or a skip (a failure when required)."""
    problem = engine_problem()
    if problem is None:
        return
    message = f"the container tests need `make containers` (root, Debian 12): {problem}"
    if os.environ.get("CONTAINER_TESTS") == "require":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def streamproc_image(container_engine: None) -> str:
    """The project's image, built from its Dockerfile by podman."""
    started = time.monotonic()
    try:
        tag = build_project_image()
    except ContainerEngineError as exc:
        pytest.fail(str(exc), pytrace=False)
    FIGURES.append(f"image {tag} built in {time.monotonic() - started:.0f} s")
    return tag


@pytest.fixture
def report() -> Report:
    """Adds a line to the figures printed at the end of the run."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("container figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
