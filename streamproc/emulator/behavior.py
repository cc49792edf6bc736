"""Simulated latency and injected failures, per API Task, drawn from a seeded RNG.

Latency distributions (milliseconds):

- ``fixed``: always ``latency_ms``;
- ``uniform``: uniform in ``[latency_ms - latency_jitter_ms, latency_ms + latency_jitter_ms]``,
  floored at 0 (with no jitter this is ``fixed``);
- ``lognormal``: median ``latency_ms``, shape ``latency_sigma``: a long right tail like real
  service times.

Each admitted execute draws one latency, then one fate: with probability ``error_rate`` it
answers ``error_status`` (500 or 503) after the latency; with probability ``hang_rate`` it
holds the request open for ``hang_max_seconds`` (the real-time timeout is one minute) and then
answers 504, unless the client gives up first. Each task has its own RNG seeded from the
global seed and its file id, so a run replays the same draws for the same request order.

The hot path reads a compiled copy (plain slots), never the pydantic model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Distribution = Literal["fixed", "uniform", "lognormal"]
_MAX_LATENCY_MS = 600_000.0


class BehaviorSettings(BaseModel):
    """How one API Task answers: latency and failure injection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(0.0, ge=0, le=_MAX_LATENCY_MS)
    latency_jitter_ms: float = Field(0.0, ge=0, le=_MAX_LATENCY_MS)
    latency_distribution: Distribution = "uniform"
    latency_sigma: float = Field(0.5, gt=0, le=5)
    error_rate: float = Field(0.0, ge=0, le=1)
    error_status: Literal[500, 503] = 500
    hang_rate: float = Field(0.0, ge=0, le=1)
    hang_max_seconds: float = Field(60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _rates_fit(self) -> Self:
        if self.error_rate + self.hang_rate > 1:
            raise ValueError("error_rate + hang_rate must not exceed 1")
        return self


class BehaviorPatch(BaseModel):
    """A partial :class:`BehaviorSettings`: only the fields given override the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float | None = None
    latency_jitter_ms: float | None = None
    latency_distribution: Distribution | None = None
    latency_sigma: float | None = None
    error_rate: float | None = None
    error_status: Literal[500, 503] | None = None
    hang_rate: float | None = None
    hang_max_seconds: float | None = None

    def apply(self, base: BehaviorSettings) -> BehaviorSettings:
        given = self.model_dump(exclude_none=True)
        return BehaviorSettings.model_validate({**base.model_dump(), **given})


class Fate(Enum):
    """What an admitted execute does once its latency has passed."""

    SUCCEED = "succeed"
    FAIL = "fail"
    HANG = "hang"


class TaskBehavior:
    """The live behaviour of one API Task; replaced atomically by :meth:`update`."""

    __slots__ = (
        "_error_rate",
        "_fail_or_hang",
        "_jitter",
        "_latency",
        "_mode",
        "_rng",
        "_sigma",
        "error_status",
        "hang_max_seconds",
        "settings",
    )

    def __init__(self, settings: BehaviorSettings, seed: str) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self._compile(settings)

    def _compile(self, settings: BehaviorSettings) -> None:
        self.settings = settings
        self._latency = settings.latency_ms / 1000.0
        self._jitter = settings.latency_jitter_ms / 1000.0
        self._sigma = settings.latency_sigma
        self._mode = settings.latency_distribution
        if self._mode == "uniform" and self._jitter == 0:
            self._mode = "fixed"
        self._error_rate = settings.error_rate
        self._fail_or_hang = settings.error_rate + settings.hang_rate
        self.error_status = settings.error_status
        self.hang_max_seconds = settings.hang_max_seconds

    def update(self, patch: Mapping[str, Any]) -> BehaviorSettings:
        """Apply a partial update; raises pydantic's ValidationError when invalid.

        Strict: a JSON body has real numbers and booleans, so ``"5"`` or ``true`` for a
        number is refused, as the OpenAPI document says.
        """
        merged = BehaviorSettings.model_validate(
            {**self.settings.model_dump(), **patch}, strict=True
        )
        self._compile(merged)
        return merged

    def draw(self) -> tuple[float, Fate]:
        """One latency in seconds and one fate for an admitted request."""
        latency = self._latency
        if self._mode == "uniform":
            latency = max(0.0, self._rng.uniform(latency - self._jitter, latency + self._jitter))
        elif self._mode == "lognormal" and latency > 0:
            latency = min(latency * math.exp(self._rng.gauss(0.0, self._sigma)), 600.0)
        if self._fail_or_hang == 0:
            return latency, Fate.SUCCEED
        roll = self._rng.random()
        if roll < self._error_rate:
            return latency, Fate.FAIL
        if roll < self._fail_or_hang:
            return latency, Fate.HANG
        return latency, Fate.SUCCEED
