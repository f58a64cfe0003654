"""When flows happen: a diurnal, weekly intensity over the span, and its inverse for sampling times.

Traffic peaks at 20:00 UTC (evening in the simulated eyeball networks) and dips near 08:00;
weekends carry 85 % of weekday traffic. Times are drawn by inverting the cumulative intensity on
a one-minute grid, which also lets generation run in time order: chunk c covers the quantiles
[c/K, (c+1)/K) and so a time slice with as many flows as any other chunk.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flowatlas.simulate.config import MS, US

DIURNAL_AMPLITUDE = 0.5
PEAK_HOUR = 20.0
WEEKEND_FACTOR = 0.85
_GRID_US = 60 * US


def intensity(t_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Relative flow rate at the given times (mean about 1)."""
    hours = (t_us % (86_400 * US)) / (3_600 * US)
    daily = 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (hours - PEAK_HOUR) / 24.0)
    weekday = (t_us // (86_400 * US) + 3) % 7  # 1970-01-01 was a Thursday; 5, 6 = Sat, Sun
    return daily * np.where(weekday >= 5, WEEKEND_FACTOR, 1.0)


class Timeline:
    def __init__(self, start_us: int, end_us: int) -> None:
        self.start_us = start_us
        self.end_us = end_us
        edges = np.arange(start_us, end_us, _GRID_US, dtype=np.int64)
        self._edges = np.append(edges, end_us).astype(np.float64)
        widths = np.diff(self._edges)
        mass = intensity(edges + (widths / 2).astype(np.int64)) * widths
        cdf = np.concatenate([[0.0], np.cumsum(mass)])
        self._cdf = cdf / cdf[-1]
        self._edges_ms = (self._edges - start_us) / MS  # relative, so floats stay small

    def at(self, quantiles: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Times (whole milliseconds) at the given quantiles of the cumulative intensity."""
        t = np.interp(quantiles, self._cdf, self._edges)
        return (t // MS).astype(np.int64) * MS

    def quantile_of(self, t_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The cumulative intensity at the given times (inverse of :meth:`at`)."""
        q: npt.NDArray[np.float64] = np.interp(t_us.astype(np.float64), self._edges, self._cdf)
        return q

    def sorted_times(self, rng: np.random.Generator, out: npt.NDArray[np.int64], low: float,
                     high: float, lo_us: int, hi_us: int) -> None:
        """Fill ``out`` with sorted times (whole ms) at uniform quantiles in [low, high).

        Sorted uniforms come from normalised cumulative exponential gaps (no sort); times are
        clamped into [lo_us, hi_us) so a chunk never spills over its slice through rounding.
        """
        n = len(out)
        if n == 0:
            return
        q = rng.standard_exponential(n + 1)
        np.cumsum(q, out=q)
        scale = (high - low) / q[-1]
        q = q[:-1]
        q *= scale
        q += low
        t = np.interp(q, self._cdf, self._edges_ms)
        np.clip(t, (lo_us - self.start_us) // MS, (hi_us - self.start_us) // MS - 1, out=t)
        np.copyto(out, t, casting="unsafe")  # truncation is floor here: t >= 0
        out *= MS
        out += self.start_us
