"""Beacon detection: how periodic is each (source, destination, destination port) contact?

Two families of evidence are computed for every pair with enough contacts:

* RITA's scores (v5): Bowley skew and MAD of the inter-contact gaps (timestamp score) and of the
  per-contact sizes (data-size score), the hourly histogram score and the duration score.
* A lattice score that survives packet sampling. Under 1:N sampling a check-in is recorded only
  if one of its packets is sampled, so observed gaps become random whole multiples of the
  period and skew/MAD fail. For candidate periods P (divisors of the smallest gaps, refined by
  least squares), ``R(P) = mean(cos(2π·gap/P))`` is 1 when every gap is a multiple of P and
  about 0 for gaps with no period; the largest P within reach of the best R is reported (a
  period's divisors fit as well as the period itself). R is discounted by what the best of the
  candidates would reach on gaps with no period at all (about sqrt(ln C / n)).

The final score is periodicity (the better of the lattice score and RITA's timestamp score
rescaled so that aperiodic gaps score 0 rather than about 0.5) times ``0.5 + 0.5·support``,
where support is the mean of RITA's size (dropped when sampled: sampled sizes are noise),
histogram and duration scores; then a penalty for long sessions whose records are merely cut
by the exporter's active timeout (``busy``: share of the pair's span covered by its flows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.analytics import groups as g
from flowatlas.analytics.frame import ADDR, Addrs, FlowFrame, addr_column, fetch
from flowatlas.atlas import Atlas
from flowatlas.query.model import Selection

US = 1_000_000
HOUR_US = 3600 * US
MIN_CONTACTS = 4
MIN_PERIOD_S = 5.0
DIVISORS = np.arange(1, 9, dtype=np.float64)
F64 = npt.NDArray[np.float64]


@dataclass
class PairScores:
    """Per-pair scores and their evidence (parallel arrays, one row per pair)."""

    src: Addrs
    dst: Addrs
    port: npt.NDArray[np.int32]
    contacts: npt.NDArray[np.int64]
    first: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    period_s: F64
    ts_skew: F64
    ts_mad: F64
    rita_ts: F64
    lattice: F64
    size: F64
    hist: F64
    duration: F64
    busy: F64
    sampling: F64
    score: F64
    columns: tuple[str, ...] = field(default=(
        "src", "dst", "port", "score", "period_s", "contacts", "rita_ts", "lattice", "size",
        "hist", "duration", "busy", "sampling", "first", "last"))

    def __len__(self) -> int:
        return len(self.score)

    def take(self, index: npt.NDArray[Any]) -> PairScores:
        return PairScores(**{k: (v[index] if isinstance(v, np.ndarray) else v)
                             for k, v in self.__dict__.items()})

    def lookup(self, src: np.void, dst: np.void) -> npt.NDArray[np.intp]:
        """Rows for one (src, dst) pair (any port)."""
        return np.flatnonzero((self.src == src) & (self.dst == dst))


@dataclass
class BeaconReport:
    pairs: PairScores
    window_s: float
    flows: int

    def to_table(self) -> pa.Table:
        p = self.pairs
        return pa.table({
            "src_addr": addr_column(p.src), "dst_addr": addr_column(p.dst),
            "dst_port": pa.array(p.port, pa.int32()),
            "score": np.round(p.score, 3), "period_s": np.round(p.period_s, 1),
            "contacts": p.contacts, "rita_ts": np.round(p.rita_ts, 3),
            "lattice": np.round(p.lattice, 3), "size": np.round(p.size, 3),
            "hist": np.round(p.hist, 3), "duration": np.round(p.duration, 3),
            "busy": np.round(p.busy, 3), "sampling": p.sampling,
            "first": pa.array(p.first, pa.timestamp("us", "UTC")),
            "last": pa.array(p.last, pa.timestamp("us", "UTC")),
        })

    def to_dict(self) -> dict[str, Any]:
        from flowatlas.formats import to_records

        return {"window_s": self.window_s, "flows": self.flows,
                "pairs": to_records(self.to_table())}


def find_beacons(atlas: Atlas, selection: Selection, *, min_contacts: int = MIN_CONTACTS,
                 top: int | None = 100, min_score: float = 0.0) -> BeaconReport:
    """Rank (src, dst, dst port) pairs of a selection by how periodic their contact is."""
    frame = fetch(atlas, selection)
    w = selection.window
    span = None
    if w.since and w.until:
        span = (int(w.since.timestamp() * US), int(w.until.timestamp() * US))
    scores = score_pairs(frame, min_contacts=min_contacts, span=span)
    keep = np.flatnonzero(scores.score >= min_score)
    keep = keep[np.argsort(-scores.score[keep], kind="stable")]
    if top is not None:
        keep = keep[:top]
    window_s = float((span[1] - span[0]) / US) if span else (
        float((frame.end.max() - frame.start.min()) / US) if len(frame) else 0.0)
    return BeaconReport(scores.take(keep), window_s, len(frame))


def score_pairs(frame: FlowFrame, *, min_contacts: int = MIN_CONTACTS,
                span: tuple[int, int] | None = None) -> PairScores:
    """Scores of every (src, dst, dst port) pair of ``frame`` with ``min_contacts`` or more."""
    if len(frame) == 0:
        return _empty()
    pair = g.dense_ids(frame.src, frame.dst, frame.dport)
    order = np.lexsort((frame.start, pair))
    pair, f = pair[order], frame.take(order)
    starts, counts = g.segments(pair)
    ok = counts >= min_contacts
    if not ok.any():
        return _empty()
    rows = np.repeat(ok, counts)
    pair, f = pair[rows], f.take(np.flatnonzero(rows))
    pair = np.repeat(np.arange(int(ok.sum())), counts[ok])
    starts, counts = g.segments(pair)
    n = len(starts)
    lo, hi = span if span else (int(f.start.min()), int(f.end.max()))
    span_s = max((hi - lo) / US, 1.0)

    # Gaps between successive distinct contact times, in seconds.
    t = f.start.astype(np.float64) / US
    same_pair = np.concatenate([[False], pair[1:] == pair[:-1]])
    gap = np.diff(t, prepend=0.0)
    gmask = same_pair & (gap > 0)
    gp, gv = pair[gmask], gap[gmask]
    gstarts, gcounts = _segments_for(gp, n)
    has = gcounts >= 3
    ts_skew = np.zeros(n)
    ts_mad = np.zeros(n)
    rita_ts = np.zeros(n)
    lattice = np.zeros(n)
    period = np.zeros(n)
    if has.any():
        sg = g.sort_within(gp, gv)
        ts_skew[has] = g.bowley(sg, gstarts[has], gcounts[has], 10.0)[...]
        med, mad = g.median_and_mad(gp, gv, gstarts, np.maximum(gcounts, 1))
        ts_mad = np.where(has, np.clip((med - mad) / np.maximum(med, 1e-9), 0, 1), 0)
        rita_ts = np.where(has, ((1 - np.abs(ts_skew)) + ts_mad) / 2, 0)
        lattice, period = _lattice(gp, gv, sg, gstarts, gcounts, has)
        period = np.where(period > 0, period, med)

    # Sizes: the sampling-scaled bytes of each contact.
    size_v = f.est_bytes
    ss = g.sort_within(pair, size_v)
    s_skew = g.bowley(ss, starts, counts, 10.0)
    s_med, s_mad = g.median_and_mad(pair, size_v, starts, counts)
    size = ((1 - np.abs(s_skew)) + np.clip((s_med - s_mad) / np.maximum(s_med, 1e-9), 0, 1)) / 2
    sampling = g.quantile(g.sort_within(pair, f.rate), starts, counts, 0.5)

    hist, longest = _hourly(pair, f.start, n, lo, hi)
    first = f.start[starts]
    last = f.end[starts + counts - 1]
    coverage = np.clip((f.start[starts + counts - 1] - first) / US / span_s, 0, 1)
    duration = np.maximum(coverage, np.minimum(longest / 12.0, 1.0))
    busy = np.clip(g.sums((f.end - f.start).astype(np.float64) / US, starts, counts)
                   / np.maximum((last - first) / US, 1.0), 0, 1)

    # RITA's timestamp score sits near 0.5 for gaps with no period at all (exponential gaps),
    # so it is rescaled to put that floor at 0 before it can stand for periodicity.
    periodic = np.maximum(np.clip(2 * rita_ts - 1, 0, 1), lattice)
    sampled = sampling > 1
    support = np.where(sampled, (hist + duration) / 2, (size + hist + duration) / 3)
    score = periodic * (0.5 + 0.5 * support)
    # A long session cut into records by the active timeout looks periodic but is one contact.
    score = score * np.clip(1 - 2 * (busy - 0.5), 0, 1)
    score = np.where(gcounts >= 3, score, 0.0)
    return PairScores(
        src=f.src[starts], dst=f.dst[starts], port=f.dport[starts], contacts=counts,
        first=first, last=last, period_s=period, ts_skew=ts_skew, ts_mad=ts_mad,
        rita_ts=rita_ts, lattice=lattice, size=np.where(sampled, np.nan, size), hist=hist,
        duration=duration, busy=busy, sampling=sampling, score=score)


def _segments_for(group: npt.NDArray[np.int64], n: int) -> tuple[npt.NDArray[np.int64],
                                                                  npt.NDArray[np.int64]]:
    """Segments of a sorted group array, with an entry (count 0) for every id below ``n``."""
    counts = np.bincount(group, minlength=n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return starts, counts


def _lattice(gp: npt.NDArray[np.int64], gv: F64, sorted_gaps: F64, starts: npt.NDArray[np.int64],
             counts: npt.NDArray[np.int64], has: npt.NDArray[np.bool_]) -> tuple[F64, F64]:
    """Best lattice fit R(P) and its period P per group (see the module docstring)."""
    n = len(starts)
    c = np.maximum(counts, 1)
    bases = [g.quantile(sorted_gaps, starts, counts, q) for q in (0.0, 0.1, 0.25)]
    cands = np.concatenate([b[:, None] / DIVISORS[None, :] for b in bases], axis=1)
    n_cand = cands.shape[1]
    best_r = np.full(n, -1.0)
    best_p = np.zeros(n)
    fits = np.zeros((n, n_cand))
    periods = np.zeros((n, n_cand))
    nz = counts > 0
    for j in range(n_cand):
        p = np.maximum(cands[:, j], MIN_PERIOD_S)
        for _ in range(2):  # refine: least-squares period for the multiples it implies
            per = p[gp]
            m = np.maximum(np.rint(gv / per), 1)
            num = g.sums(gv * m, starts, counts)
            den = g.sums(m * m, starts, counts)
            p = np.where(nz, num / np.maximum(den, 1e-9), p)
            p = np.maximum(p, MIN_PERIOD_S)
        r = g.sums(np.cos(2 * np.pi * gv / p[gp]), starts, counts) / c
        fits[:, j] = r
        periods[:, j] = p
    best_r = fits.max(axis=1)
    # The fundamental: the longest period fitting nearly as well as the best one.
    near = fits >= (best_r[:, None] - 0.05)
    best_p = np.where(near, periods, 0).max(axis=1)
    chance = np.sqrt(np.log(n_cand) / c)
    lattice = np.clip((best_r - chance) / (1 - chance), 0, 1)
    return np.where(has, lattice, 0.0), np.where(has, best_p, 0.0)


def _hourly(pair: npt.NDArray[np.int64], start: npt.NDArray[np.int64], n: int, lo: int,
            hi: int) -> tuple[F64, F64]:
    """RITA's histogram score and the longest run of consecutive active hours per pair."""
    hours = max(int((hi - lo + HOUR_US - 1) // HOUR_US), 1)
    h = np.clip((start - lo) // HOUR_US, 0, hours - 1)
    key = pair * hours + h
    uk, cnt = np.unique(key, return_counts=True)
    up = uk // hours
    uh = uk % hours
    active = np.bincount(up, minlength=n).astype(np.float64)
    total = np.bincount(up, weights=cnt, minlength=n)
    sq = np.bincount(up, weights=cnt.astype(np.float64) ** 2, minlength=n)
    mean = total / hours
    var = np.maximum(sq / hours - mean**2, 0)
    cv = np.sqrt(var) / np.maximum(mean, 1e-9)
    # Share of active hours whose bar height is one of the two most common heights.
    hk = up * (int(cnt.max()) + 1) + cnt
    hu, hc = np.unique(hk, return_counts=True)
    hp = hu // (int(cnt.max()) + 1)
    order = np.lexsort((-hc, hp))
    hp, hc = hp[order], hc[order]
    rank = np.arange(len(hp)) - np.searchsorted(hp, hp, side="left")
    top2 = np.bincount(hp[rank < 2], weights=hc[rank < 2], minlength=n)
    bimodal = top2 / np.maximum(active, 1)
    hist = np.maximum(np.clip(1 - cv, 0, 1), np.where(active >= 6, bimodal, 0))
    # Longest run of consecutive active hours.
    brk = np.concatenate([[True], (up[1:] != up[:-1]) | (uh[1:] != uh[:-1] + 1)])
    run_id = np.cumsum(brk) - 1
    run_len = np.bincount(run_id)
    run_pair = up[brk]
    longest = np.zeros(n)
    np.maximum.at(longest, run_pair, run_len.astype(np.float64))
    return hist, longest


def _empty() -> PairScores:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    return PairScores(np.zeros(0, ADDR), np.zeros(0, ADDR), np.zeros(0, np.int32), zi, zi, zi,
                      z, z, z, z, z, z, z, z, z, z, z)
