"""Segmented statistics: medians, quantiles and sums per group without a Python loop per group.

Values are laid out group after group (``starts``/``counts`` describe the segments); each
function sorts within groups with one ``lexsort`` and reads the answers by index arithmetic.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def segments(group: npt.NDArray[np.integer]) -> tuple[I64, I64]:
    """Start and length of each run of a sorted group-id array."""
    if len(group) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    edge = np.flatnonzero(np.diff(group)) + 1
    starts = np.concatenate([[0], edge]).astype(np.int64)
    counts = np.diff(np.concatenate([starts, [len(group)]])).astype(np.int64)
    return starts, counts


def dense_ids(*keys: npt.NDArray[np.generic]) -> I64:
    """One integer id per distinct combination of key columns (any dtype, voids included)."""
    codes = [np.unique(k, return_inverse=True)[1].astype(np.int64).ravel() for k in keys]
    if len(codes) == 1:
        only: I64 = codes[0]
        return only
    order = np.lexsort(codes[::-1])
    stacked = np.stack([c[order] for c in codes])
    new = np.concatenate([[True], (np.diff(stacked, axis=1) != 0).any(axis=0)])
    ids = np.empty(len(order), np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids


def sort_within(group: I64, values: F64) -> F64:
    """``values`` sorted inside each group (groups must already be contiguous)."""
    out: F64 = values[np.lexsort((values, group))]
    return out


def quantile(sorted_values: F64, starts: I64, counts: I64, q: float) -> F64:
    """Linear-interpolated quantile of each segment of already within-group-sorted values."""
    if len(sorted_values) == 0:
        return np.zeros(len(starts))
    last = len(sorted_values) - 1
    c = np.maximum(counts, 1)
    pos = (c - 1) * q
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hi = np.minimum(lo + 1, c - 1)
    a = sorted_values[np.minimum(starts + lo, last)]
    b = sorted_values[np.minimum(starts + hi, last)]
    out: F64 = a + (b - a) * frac
    return out


def sums(values: F64, starts: I64, counts: I64) -> F64:
    out = np.zeros(len(starts))
    nz = counts > 0
    if nz.any():
        out[nz] = np.add.reduceat(values, starts[nz])
    return out


def median_and_mad(group: I64, values: F64, starts: I64, counts: I64) -> tuple[F64, F64]:
    """Per-group median and median absolute deviation (groups contiguous)."""
    s = sort_within(group, values)
    med = quantile(s, starts, counts, 0.5)
    dev = np.abs(values - np.repeat(med, counts))
    mad = quantile(sort_within(group, dev), starts, counts, 0.5)
    return med, mad


def bowley(sorted_values: F64, starts: I64, counts: I64, min_iqr: float) -> F64:
    """Bowley skewness (Q1+Q3-2·Q2)/(Q3-Q1); 0 where the spread is below ``min_iqr``."""
    q1 = quantile(sorted_values, starts, counts, 0.25)
    q2 = quantile(sorted_values, starts, counts, 0.5)
    q3 = quantile(sorted_values, starts, counts, 0.75)
    iqr = q3 - q1
    flat = (iqr < min_iqr) | (q2 == q1) | (q2 == q3)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(flat, 0.0, (q1 + q3 - 2 * q2) / np.where(iqr == 0, 1, iqr))
    return np.asarray(skew, dtype=np.float64)


def spearman(x: F64, y: F64) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant."""
    if len(x) < 3:
        return 0.0
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def _ranks(v: F64) -> F64:
    order = np.argsort(v, kind="stable")
    sv = v[order]
    first = np.concatenate([[True], sv[1:] != sv[:-1]])
    run = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [len(v)]])
    avg = (starts + ends - 1) / 2.0
    out = np.empty(len(v))
    out[order] = avg[run]
    return out
