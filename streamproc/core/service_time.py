"""How long an execute takes now: a high quantile of recent service times, forgotten with age.

Admission asks "can an execute started now still finish before this event's deadline?". A mean
answers that wrongly for half of the executes; a high quantile (p90 by default) of the recent
ones answers it for most. Two properties keep the estimate from locking itself:

- samples older than ``max_age_s`` are ignored, so a slow spell is forgotten even when no new
  execute is made (an estimate that only executes can lower would stop executes for good);
- with no recent sample the estimate is 0: unknown means "try", and the tries re-learn it.

The quantile is recomputed at most once per ``refresh_every`` samples, or when the oldest
sample ages out: per event, reading it is a comparison and an attribute load.

Time is in seconds on a monotonic clock, passed in.
"""

from __future__ import annotations

from collections import deque


class ServiceTime:
    """Recent execute durations of one allocation: their ``quantile`` and their median."""

    __slots__ = (
        "_max_age_s",
        "_median",
        "_q",
        "_refresh_every",
        "_samples",
        "_since_refresh",
        "_stale_at",
        "_value",
    )

    def __init__(
        self,
        *,
        quantile: float = 0.9,
        window: int = 128,
        max_age_s: float = 10.0,
        refresh_every: int = 8,
    ) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        if window < 1 or refresh_every < 1 or not max_age_s > 0:
            raise ValueError("window, refresh_every and max_age_s must be positive")
        self._q = quantile
        self._max_age_s = max_age_s
        self._refresh_every = refresh_every
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)
        self._value = 0.0
        self._median = 0.0
        # When the oldest sample in the value ages out; infinite while the value is from none.
        self._stale_at = float("inf")
        self._since_refresh = 0  # samples observed since the value was computed

    def observe(self, duration_s: float, now: float) -> None:
        """One execute took ``duration_s``, ending at ``now``."""
        self._samples.append((now, duration_s))
        self._since_refresh += 1

    def estimate(self, now: float) -> float:
        """The quantile of the samples younger than ``max_age_s``; 0.0 when there are none."""
        since = self._since_refresh
        if (
            now >= self._stale_at
            or since >= self._refresh_every
            or (since and self._stale_at == float("inf"))
        ):
            self._refresh(now)
        return self._value

    def typical(self, now: float) -> float:
        """The median of the same samples: what an execute usually takes."""
        self.estimate(now)
        return self._median

    def reset(self) -> None:
        """Forget every sample (the endpoint changed: e.g. it recovered from an outage)."""
        self._samples.clear()
        self._value = self._median = 0.0
        self._stale_at = float("inf")
        self._since_refresh = 0

    def __len__(self) -> int:
        return len(self._samples)

    def _refresh(self, now: float) -> None:
        samples = self._samples
        horizon = now - self._max_age_s
        while samples and samples[0][0] <= horizon:
            samples.popleft()
        self._since_refresh = 0
        if not samples:
            self._value = self._median = 0.0
            self._stale_at = float("inf")
            return
        durations = sorted(d for _, d in samples)
        index = min(len(durations) - 1, int(self._q * len(durations)))
        self._value = durations[index]
        self._median = durations[len(durations) // 2]
        self._stale_at = samples[0][0] + self._max_age_s
