"""Latency distributions and failure injection draws."""

from __future__ import annotations

import statistics

import pytest
from pydantic import ValidationError

from streamproc.emulator.behavior import BehaviorPatch, BehaviorSettings, Fate, TaskBehavior


def draws(
    settings: BehaviorSettings, n: int = 2000, seed: str = "0:201"
) -> list[tuple[float, Fate]]:
    behavior = TaskBehavior(settings, seed)
    return [behavior.draw() for _ in range(n)]


def test_default_is_instant_success() -> None:
    """No latency and no failures by default."""
    assert set(draws(BehaviorSettings(), 50)) == {(0.0, Fate.SUCCEED)}


def test_fixed_latency_ignores_jitter() -> None:
    """fixed always answers latency_ms."""
    settings = BehaviorSettings(latency_ms=20, latency_jitter_ms=5, latency_distribution="fixed")
    assert {latency for latency, _ in draws(settings, 100)} == {0.02}


def test_uniform_latency_stays_within_jitter() -> None:
    """uniform draws in [latency - jitter, latency + jitter], centred on latency."""
    values = [lat for lat, _ in draws(BehaviorSettings(latency_ms=20, latency_jitter_ms=5))]
    assert min(values) >= 0.015
    assert max(values) <= 0.025
    assert statistics.mean(values) == pytest.approx(0.02, abs=0.0005)


def test_uniform_latency_is_floored_at_zero() -> None:
    """Jitter larger than the latency never yields a negative delay."""
    values = [lat for lat, _ in draws(BehaviorSettings(latency_ms=1, latency_jitter_ms=10))]
    assert min(values) >= 0


def test_lognormal_latency_has_the_given_median() -> None:
    """lognormal draws have median latency_ms and a right tail."""
    settings = BehaviorSettings(latency_ms=10, latency_distribution="lognormal", latency_sigma=0.5)
    values = [lat for lat, _ in draws(settings, 4000)]
    assert statistics.median(values) == pytest.approx(0.01, rel=0.08)
    assert max(values) > 0.02


def test_draws_replay_for_the_same_seed() -> None:
    """Two behaviours with one seed draw the same sequence; another seed differs."""
    settings = BehaviorSettings(latency_ms=10, latency_jitter_ms=5, error_rate=0.3)
    assert draws(settings, 100) == draws(settings, 100)
    assert draws(settings, 100) != draws(settings, 100, seed="1:201")


def test_failure_and_hang_rates() -> None:
    """error_rate and hang_rate shares of fates, roughly."""
    fates = [fate for _, fate in draws(BehaviorSettings(error_rate=0.2, hang_rate=0.1), 5000)]
    assert fates.count(Fate.FAIL) / 5000 == pytest.approx(0.2, abs=0.03)
    assert fates.count(Fate.HANG) / 5000 == pytest.approx(0.1, abs=0.03)


def test_update_changes_only_the_given_fields() -> None:
    """A partial update keeps the other fields and recompiles the draws."""
    behavior = TaskBehavior(BehaviorSettings(latency_ms=5), "s")
    updated = behavior.update({"error_rate": 1.0, "error_status": 503})
    assert (updated.latency_ms, updated.error_rate, updated.error_status) == (5, 1.0, 503)
    assert behavior.draw() == (0.005, Fate.FAIL)
    assert behavior.error_status == 503


@pytest.mark.parametrize(
    "patch",
    [
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"error_status": 404},
        {"latency_distribution": "gaussian"},
        {"error_rate": 0.6, "hang_rate": 0.6},
        {"hang_max_seconds": 0},
        {"unknown": 1},
    ],
)
def test_invalid_updates_are_refused_and_change_nothing(patch: dict[str, object]) -> None:
    """Out-of-range values, unknown fields and rates summing above 1 raise, keeping the old."""
    behavior = TaskBehavior(BehaviorSettings(), "s")
    with pytest.raises(ValidationError):
        behavior.update(patch)
    assert behavior.settings == BehaviorSettings()


def test_patch_applies_over_a_base() -> None:
    """A per-task patch overrides only its fields."""
    base = BehaviorSettings(latency_ms=10, error_rate=0.1)
    assert BehaviorPatch(latency_ms=3).apply(base) == BehaviorSettings(latency_ms=3, error_rate=0.1)
