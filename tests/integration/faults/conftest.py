"""Each fault test runs once per delivery mode in its long version (``--chaos``). The short
versions (``make test``) run the modes a test module names in ``SHORT_RUN_MODES`` (default:
all), so that ``make test`` stays short: the crash and failover tests check both modes there,
the others at-least-once only."""

from __future__ import annotations

import pytest

from tests.integration.faults.processes import DELIVERY_MODES, delivery_params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "delivery" not in metafunc.fixturenames:
        return
    modes = DELIVERY_MODES
    if not metafunc.config.getoption("--chaos"):
        modes = getattr(metafunc.module, "SHORT_RUN_MODES", DELIVERY_MODES)
    metafunc.parametrize("delivery", delivery_params(modes), scope="module")
