"""The service-time estimate: a high quantile of recent executes that forgets old ones."""

from __future__ import annotations

import pytest

from streamproc.core.service_time import ServiceTime


def test_with_no_samples_the_estimate_is_zero() -> None:
    """Unknown means "try": admission must not refuse on an estimate it never measured."""
    assert ServiceTime().estimate(100.0) == 0.0


def test_the_estimate_is_a_high_quantile_not_the_mean() -> None:
    """Nine 10 ms executes and one of 200 ms: p90 is 200 ms, where the mean would say 29."""
    estimate = ServiceTime(quantile=0.9, refresh_every=1)
    for i in range(9):
        estimate.observe(0.010, float(i))
    estimate.observe(0.200, 9.0)
    assert estimate.estimate(9.0) == pytest.approx(0.200)


def test_the_first_sample_counts_at_once() -> None:
    """No batching of the first refresh: one sample is enough to estimate from."""
    estimate = ServiceTime(refresh_every=32)
    estimate.observe(0.05, 1.0)
    assert estimate.estimate(1.0) == pytest.approx(0.05)


def test_old_samples_are_forgotten_without_new_ones() -> None:
    """A slow spell stops counting after max_age_s even when nothing is executed since."""
    estimate = ServiceTime(max_age_s=5.0)
    for i in range(20):
        estimate.observe(2.0, 10.0 + i * 0.01)
    assert estimate.estimate(11.0) == pytest.approx(2.0)
    assert estimate.estimate(15.3) == 0.0


def test_the_window_keeps_only_the_newest_samples() -> None:
    """Once the window is full, each new sample pushes the oldest one out."""
    estimate = ServiceTime(window=4, refresh_every=1)
    for _ in range(4):
        estimate.observe(1.0, 0.0)
    for _ in range(4):
        estimate.observe(0.01, 0.1)
    assert estimate.estimate(0.1) == pytest.approx(0.01)
    assert len(estimate) == 4


def test_reset_forgets_everything() -> None:
    """After an outage the old samples describe an endpoint that is gone."""
    estimate = ServiceTime()
    estimate.observe(2.0, 1.0)
    estimate.reset()
    assert estimate.estimate(1.0) == 0.0
    estimate.observe(0.02, 1.1)
    assert estimate.estimate(1.1) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "kwargs", [{"quantile": 0.0}, {"quantile": 1.5}, {"window": 0}, {"max_age_s": 0.0}]
)
def test_nonsense_parameters_are_refused(kwargs: dict[str, float]) -> None:
    """A quantile outside (0, 1] or a non-positive window or age is a programming error."""
    with pytest.raises(ValueError, match="must be"):
        ServiceTime(**kwargs)  # type: ignore[arg-type]
