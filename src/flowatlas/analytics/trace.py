"""Relay tracing: from a session arriving at a target, walk back hop by hop to its origin.

A *session* is the records of one connection, keyed by (src, dst, src port, dst port, protocol);
exporters cut long connections into records (active timeout), which gives each session a volume
series over time. At relay R, carrying session S = R→X, every session into R that overlaps S in
time is a candidate for the leg that carried it. Each candidate is scored on:

* timing: it must start no later than S (plus a tolerance) and no earlier than a latency bound
  before it, and the share of the two spans that overlap;
* volume: the sampling-scaled byte ratio must lie within [1/k, k] (relays add overhead);
  the bound widens with sampling, whose estimates are noisy when few packets were kept;
* correlation: Spearman's rank correlation of per-slice bytes, forward and reverse
  (Chakravarty et al.), and a counting bound: the largest gap between the two normalised
  cumulative byte curves (Blum et al. bound the packet-count difference of a true pair).

A candidate is accepted only if its correlation beats what the best of n unrelated candidates
would reach by chance over m slices (about sqrt(2·ln n / (m-1))), so thresholds grow with the
number of candidates. Each hop's confidence is a softmax over the candidates plus a "no
candidate" option; a chain's confidence is the product. A beam keeps the k best partial chains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from flowatlas.analytics import groups as g
from flowatlas.analytics.frame import (
    AnalyticsError,
    FlowFrame,
    addr_key,
    addr_text,
    fetch,
    key_prefix,
)
from flowatlas.atlas import Atlas
from flowatlas.query.expr import AddrMatch, Direction, Expr, conjoin
from flowatlas.query.model import Selection
from flowatlas.query.window import Window

US = 1_000_000
F64 = npt.NDArray[np.float64]


@dataclass
class Session:
    src: np.void
    dst: np.void
    sport: int
    dport: int
    proto: int
    start: int
    end: int
    bytes: float
    packets: float
    rate: float
    records: FlowFrame


@dataclass
class Candidate:
    session: Session
    score: float
    rho: float
    rho_reverse: float
    counting: float
    ratio: float
    overlap: float
    start_offset_s: float
    accepted: bool = False
    confidence: float = 0.0


@dataclass
class Hop:
    relay: bytes  # 16-byte address of the relay this hop walked back from
    carried: Session
    candidates: list[Candidate]
    threshold: float
    chosen: Candidate | None
    confidence: float
    note: str


@dataclass
class Chain:
    nodes: list[bytes]
    session: Session
    hops: list[Hop] = field(default_factory=list)
    log_conf: float = 0.0
    stopped: str = ""


@dataclass
class TraceReport:
    """The best path (origin first, 16-byte addresses), its hops' evidence, and alternatives.

    :func:`flowatlas.formats.reports.trace_tables` renders it, once, for the CLI and the API.
    """

    target: str
    at: datetime
    nodes: list[bytes]
    confidence: float
    stopped: str
    hops: list[Hop]
    alternatives: list[tuple[list[bytes], float, str]]

    @property
    def path(self) -> list[str]:
        """The best path as text, origin first."""
        return addr_text(np.array([np.void(n) for n in self.nodes], dtype="V16"))

    def to_tables(self) -> dict[str, pa.Table]:
        from flowatlas.formats.reports import trace_tables

        return trace_tables(self)

    def to_table(self) -> pa.Table:
        """Each hop's best candidate sessions (16-byte addresses)."""
        return self.to_tables()["candidates"]

    def to_dict(self) -> dict[str, Any]:
        from flowatlas.formats.reports import trace_document

        return trace_document(self, self.to_tables())


@dataclass(frozen=True)
class TraceParams:
    max_hops: int = 16
    beam: int = 3
    latency_s: float = 5.0
    slice_s: float = 60.0
    ratio: float = 2.0
    search_s: float = 600.0
    max_session_s: float = 12 * 3600.0
    temperature: float = 12.0


def trace(atlas: Atlas, target: str, at: datetime, *, from_relay: str | None = None,
          params: TraceParams | None = None, scope: Selection | None = None) -> TraceReport:
    """Walk back from the session reaching ``target`` around ``at`` (see the module docstring)."""
    p = params or TraceParams()
    if not 1 <= p.max_hops <= 64:
        raise AnalyticsError(f"max_hops={p.max_hops}: must be 1..64")
    if p.beam < 1:
        raise AnalyticsError(f"beam={p.beam}: must be >= 1")
    tkey = addr_key(target)
    base = scope or Selection()
    win = Window(at - timedelta(seconds=p.search_s), at + timedelta(seconds=p.search_s))
    match: Expr = AddrMatch(Direction.DST, (key_prefix(tkey),))
    if from_relay:
        match = conjoin(match, AddrMatch(Direction.SRC, (key_prefix(addr_key(from_relay)),)))
    arriving = fetch(atlas, Selection(conjoin(match, base.filter), win, base.scope))
    sessions = _sessions(arriving)
    if not sessions:
        who = f" from {from_relay}" if from_relay else ""
        raise AnalyticsError(f"no flows reach {target}{who} within {p.search_s:.0f} s of "
                             f"{at.isoformat()}")
    at_us = int(at.timestamp() * US)
    # The session in progress at the given time (else the nearest), the biggest if several.
    sessions.sort(key=lambda s: (max(s.start - at_us, at_us - s.end, 0), -s.bytes))
    first = _whole(atlas, base, sessions[0], p)
    beam = [Chain([tkey.tobytes(), first.src.tobytes()], first)]
    finals: list[Chain] = []
    cache: dict[tuple[bytes, int, int], tuple[FlowFrame, FlowFrame]] = {}
    for _ in range(p.max_hops):
        grown: list[Chain] = []
        for chain in beam:
            hop, children = _step(atlas, base, chain, p, cache)
            chain.hops.append(hop)
            if not children:
                # Stopping is itself a choice: as sure as "no candidate" won the softmax.
                chain.log_conf += math.log(max(hop.confidence, 1e-9))
                chain.stopped = hop.note
                finals.append(chain)
                continue
            for cand in children:
                grown.append(Chain([*chain.nodes, cand.session.src.tobytes()], cand.session,
                                   [*chain.hops[:-1], _with_choice(hop, cand)],
                                   chain.log_conf + math.log(max(cand.confidence, 1e-9))))
        if not grown:
            beam = []
            break
        grown.sort(key=lambda c: -c.log_conf)
        beam = grown[: p.beam]
    for chain in beam:
        chain.stopped = f"reached the hop limit ({p.max_hops})"
        finals.append(chain)
    finals.sort(key=lambda c: -c.log_conf)
    best = finals[0]
    alts = [(list(reversed(c.nodes)), math.exp(c.log_conf), c.stopped) for c in finals[1:5]]
    return TraceReport(target, at, list(reversed(best.nodes)), math.exp(best.log_conf),
                       best.stopped, best.hops, alts)


def _with_choice(hop: Hop, cand: Candidate) -> Hop:
    return Hop(hop.relay, hop.carried, hop.candidates, hop.threshold, cand, cand.confidence,
               hop.note)


def _step(atlas: Atlas, base: Selection, chain: Chain, p: TraceParams,
          cache: dict[tuple[bytes, int, int], tuple[FlowFrame, FlowFrame]]
          ) -> tuple[Hop, list[Candidate]]:
    s = chain.session
    relay = s.src
    pad = int((p.latency_s + 2 * p.slice_s) * US)
    ck = (relay.tobytes(), s.start, s.end)
    if ck not in cache:
        w = Window(_dt(s.start - pad), _dt(s.end + pad))
        into = fetch(atlas, Selection(conjoin(AddrMatch(Direction.DST, (key_prefix(relay),)),
                                              base.filter), w, base.scope))
        out = fetch(atlas, Selection(conjoin(AddrMatch(Direction.SRC, (key_prefix(relay),)),
                                             base.filter), w, base.scope))
        cache[ck] = (into, out)
    into, out = cache[ck]
    visited = set(chain.nodes)
    cands = [c for c in _sessions(into) if c.src.tobytes() not in visited]
    # The reverse of the carried session (X -> R) shows how R's reply traffic looked.
    s_rev = _reverse(into, s)
    maybe = [_score(s, s_rev, c, _reverse(out, c), p) for c in cands]
    scored = [c for c in maybe if c is not None]
    scored.sort(key=lambda c: -c.score)
    n = max(len(scored), 1)
    m = max(_slices(s, p), 2)
    # What the best of n unrelated candidates reaches by chance over m slices.
    threshold = min(0.95, max(0.3, math.sqrt(2 * math.log(n + 1) / max(m - 1, 1))))
    weights: F64 = np.array([c.score for c in scored] + [threshold])
    prob = np.exp(p.temperature * (weights - weights.max()))
    prob /= prob.sum()
    # Sampled, a session's series has holes: evidence (and so confidence, whether to go on or to
    # stop) is capped by the share of its slices that any record reached.
    m_s = max(_slices(s, p), 1)
    coverage = 1.0 if s.rate <= 1 else min(1.0, float(np.count_nonzero(
        _series(s.records, s.start, m_s, p))) / m_s)
    prob[:-1] *= coverage
    for c, pr in zip(scored, prob[:-1], strict=False):
        c.confidence = float(pr)
        c.accepted = c.rho >= threshold and c.score >= threshold
    accepted = [c for c in scored if c.accepted][: p.beam]
    if not scored:
        # Notes name no address (the hop's relay column does): a pseudonymised relay must not
        # come back in clear inside a sentence.
        note = "no session reached the relay around the carried session: origin or unseen hop"
    elif not accepted:
        note = (f"no candidate into the relay beat the threshold {threshold:.2f} "
                f"(best {scored[0].score:.2f} of {len(scored)})")
    else:
        note = f"{len(accepted)} of {len(scored)} candidates above {threshold:.2f}"
    # With nothing to choose from, stopping is certain as far as the flows show.
    stop = (float(prob[-1]) if scored else 1.0) * coverage
    hop = Hop(relay.tobytes(), s, scored, threshold, accepted[0] if accepted else None,
              accepted[0].confidence if accepted else stop, note)
    return hop, accepted


def _whole(atlas: Atlas, base: Selection, s: Session, p: TraceParams) -> Session:
    """The whole session, not just the part inside the search window around ``at``."""
    span = int(p.max_session_s * US)
    w = Window(_dt(s.start - span), _dt(s.end + span))
    match = conjoin(AddrMatch(Direction.DST, (key_prefix(s.dst),)),
                    AddrMatch(Direction.SRC, (key_prefix(s.src),)), base.filter)
    f = fetch(atlas, Selection(match, w, base.scope))
    same = [x for x in _sessions(f) if (x.sport, x.dport, x.proto) == (s.sport, s.dport, s.proto)]
    return same[0] if same else s


def _dt(us: int) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(us / US, UTC)


def _slices(s: Session, p: TraceParams) -> int:
    return math.ceil((s.end - s.start) / US / p.slice_s) + 1


def _series(f: FlowFrame | None, t0: int, m: int, p: TraceParams) -> F64:
    out = np.zeros(m)
    if f is None or len(f) == 0:
        return out
    # A record's bytes go to the slice holding its midpoint.
    mid = (f.start + f.end) // 2
    idx = ((mid - t0) / US // p.slice_s).astype(np.int64)
    ok = (idx >= 0) & (idx < m)
    np.add.at(out, idx[ok], f.est_bytes[ok])
    return out


def _score(s: Session, s_rev: FlowFrame | None, c: Session, c_rev: FlowFrame | None,
           p: TraceParams) -> Candidate | None:
    offset = (s.start - c.start) / US
    # Unsampled, the upstream leg starts just before the carried one. Sampled, a session's
    # first record is whichever was sampled first, so only the overlap below is required.
    if max(s.rate, c.rate) <= 1 and not -p.latency_s <= offset <= p.latency_s + p.slice_s:
        return None
    lo, hi = min(s.start, c.start), max(s.end, c.end)
    inter = max(0, min(s.end, c.end) - max(s.start, c.start))
    overlap = inter / max(hi - lo, 1)
    if overlap <= 0:
        return None
    t0 = lo - int(p.latency_s * US)
    m = math.ceil((hi - t0) / US / p.slice_s) + 1
    a, b = _series(s.records, t0, m, p), _series(c.records, t0, m, p)
    rho = g.spearman(a, b)
    ar, br = _series(s_rev, t0, m, p), _series(c_rev, t0, m, p)
    rho_r = g.spearman(ar, br) if ar.any() and br.any() else rho
    ca, cb = np.cumsum(a) / max(a.sum(), 1), np.cumsum(b) / max(b.sum(), 1)
    counting = 1 - float(np.abs(ca - cb).max())
    ratio = s.bytes * s.rate / max(c.bytes * c.rate, 1.0)
    # Sampled byte estimates from few packets are noisy: widen the bound accordingly.
    kept = min(s.packets, c.packets)
    k = p.ratio * math.exp(3 / math.sqrt(max(kept, 1))) if max(s.rate, c.rate) > 1 else p.ratio
    vol = max(0.0, 1 - abs(math.log(max(ratio, 1e-9))) / math.log(k))
    corr = (max(rho, 0) + max(rho_r, 0)) / 2
    score = overlap ** 0.5 * (0.6 * corr + 0.25 * counting + 0.15 * vol)
    return Candidate(c, score, rho, rho_r, counting, ratio, overlap, offset)


def _reverse(frame: FlowFrame, s: Session) -> FlowFrame | None:
    """Records of the reply direction of session ``s`` within ``frame``."""
    if len(frame) == 0:
        return None
    sel = np.flatnonzero((frame.src == s.dst) & (frame.dst == s.src) & (frame.sport == s.dport)
                         & (frame.dport == s.sport))
    return frame.take(sel) if len(sel) else None


def _sessions(f: FlowFrame) -> list[Session]:
    if len(f) == 0:
        return []
    key = g.dense_ids(f.src, f.dst, f.sport.astype(np.int64), f.dport.astype(np.int64),
                      f.proto.astype(np.int64))
    order = np.lexsort((f.start, key))
    starts, counts = g.segments(key[order])
    out = []
    for st, cnt in zip(starts.tolist(), counts.tolist(), strict=True):  # one per session
        idx = order[st:st + cnt]
        r = f.take(idx)
        out.append(Session(r.src[0], r.dst[0], int(r.sport[0]), int(r.dport[0]),
                           int(r.proto[0]), int(r.start.min()), int(r.end.max()),
                           float(r.bytes.sum()), float(r.packets.sum()), float(r.rate.max()), r))
    return out
