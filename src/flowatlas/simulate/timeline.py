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

    def at(self, quantiles: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Times (whole milliseconds) at the given quantiles of the cumulative intensity."""
        t = np.interp(quantiles, self._cdf, self._edges)
        return (t // MS).astype(np.int64) * MS

    def sorted_quantiles(self, rng: np.random.Generator, n: int, low: float,
                         high: float) -> npt.NDArray[np.float64]:
        """``n`` sorted uniform draws in [low, high) without a sort (normalised exponential gaps)."""
        gaps = rng.standard_exponential(n + 1)
        cum = np.cumsum(gaps)
        out: npt.NDArray[np.float64] = low + (high - low) * (cum[:-1] / cum[-1])
        return out
