"""Accuracy of the investigations on the simulator's ground truth, by sampling rate.

For each sampling rate (1:1, 1:100, 1:1000) and seed it simulates a world, runs victims (on every
C2), beacons (whole store), and a trace from every planted chain's target, then prints:
victims/operators precision, recall and PR-AUC; beacons PR-AUC; tracing per-hop and whole-chain
top-1 accuracy by chain length, plus the mean confidence of right and wrong answers. Timings and
peak RSS are printed next to a full-scan ``top`` query over the same store, as the peer figure.

    .venv/bin/python benchmarks/accuracy_bench.py [--seeds 3] [--flows 150000] [--rates 1,100,1000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from flowatlas.addresses import parse_prefix
from flowatlas.analytics import NetClassTable, classify_peers, find_beacons, trace
from flowatlas.analytics.frame import AnalyticsError
from flowatlas.atlas import Atlas
from flowatlas.formats import readable, to_records
from flowatlas.query.model import AggregateQuery
from flowatlas.simulate import ScenarioConfig, SimConfig, simulate

END = datetime(2026, 5, 1, tzinfo=UTC)


def average_precision(scores: list[float], labels: list[bool]) -> float:
    """Area under the precision-recall curve (step-wise, as average precision)."""
    if not any(labels):
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    y = np.asarray(labels)[order]
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / y.sum())


def ap_of(pairs: list[tuple[float, bool]]) -> float:
    return average_precision([p[0] for p in pairs], [p[1] for p in pairs])


def days_seen(atlas: Atlas, c2s: list[str]) -> dict[tuple[str, str], int]:
    """Distinct UTC days on which the store holds records between each peer and each C2."""
    out: dict[tuple[str, str], int] = {}
    for c2 in c2s:
        prefix = parse_prefix(c2)
        t = atlas.aggregate(AggregateQuery(Atlas.select(f"ip {c2}"), keys=("peer",),
                                           bin_seconds=86_400, limit=None, anchor=(prefix,)))
        for rec in to_records(t.select(["peer"])):
            key = (str(rec["peer"]), c2)
            out[key] = out.get(key, 0) + 1
    return out


def pr(pred: set[str], truth: set[str]) -> tuple[float, float]:
    tp = len(pred & truth)
    return (tp / len(pred) if pred else float("nan"), tp / len(truth) if truth else float("nan"))


def run_world(seed: int, rate: int, flows: int, days: float, out: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = SimConfig(seed=seed, flows=flows, days=days, end=END, sampling=(rate,),
                        observe_share=1.0,
                        scenarios=ScenarioConfig(c2=3, victims=12, relays=12, max_hops=16))
        t0 = time.perf_counter()
        truth = simulate(d / "store", cfg, truth_path=d / "truth.json")
        out["sim_s"].append(time.perf_counter() - t0)
        atlas = Atlas(d / "store")
        nc = NetClassTable.load(d / "truth.prefixes.csv")
        t0 = time.perf_counter()
        atlas.top(Atlas.select(), by="dst_port", n=10)
        out["scan_s"].append(time.perf_counter() - t0)

        c2s = truth.c2
        t0 = time.perf_counter()
        report = classify_peers(atlas, [c["address"] for c in c2s], netclass=nc)
        out["victims_s"].append(time.perf_counter() - t0)
        peers = to_records(report.peers)
        # Truth: every planted victim/operator whose path an exporter observes, whether or not
        # sampling kept any of its records. Findable: what the store shows, counted here from
        # the store itself (not from the classifier): victims with records on >= 2 distinct
        # days (one day cannot tell an infection from a visit), operators with any record.
        seen_days = days_seen(atlas, [c["address"] for c in c2s])
        victims = {v["address"] for c in c2s for v in c["victims"] if v["path_observed"]}
        operators = {o["address"] for c in c2s for o in c["operators"] if o["path_observed"]}
        v_findable = {v["address"] for c in c2s for v in c["victims"] if v["path_observed"]
                      and seen_days.get((v["address"], c["address"]), 0) >= 2}
        o_findable = {o["address"] for c in c2s for o in c["operators"] if o["path_observed"]
                      and seen_days.get((o["address"], c["address"]), 0) >= 1}
        out["victims_truth"] |= {f"{seed}/{v}" for v in victims}
        out["victims_findable"] |= {f"{seed}/{v}" for v in v_findable}
        out["operators_truth"] |= {f"{seed}/{o}" for o in operators}
        out["operators_findable"] |= {f"{seed}/{o}" for o in o_findable}
        listed = {p["peer"] for p in peers}
        # Planted peers the report does not list at all are misses at score 0.
        out["victim_scores"] += [(0.0, True) for v in victims - listed]
        out["operator_scores"] += [(0.0, True) for o in operators - listed]
        for p in peers:
            key = f"{seed}/{p['peer']}"
            if p["label"] == "victim":
                out["victim_pred"].add(key)
            if p["label"] == "operator":
                out["operator_pred"].add(key)
            out["victim_scores"].append((p["confidence"] if p["label"] in ("victim", "unknown")
                                         else 0.0, p["peer"] in victims))
            out["operator_scores"].append((p["confidence"] if p["label"] == "operator" else 0.0,
                                           p["peer"] in operators))

        t0 = time.perf_counter()
        beacons = find_beacons(atlas, Atlas.select(), top=None)
        out["beacons_s"].append(time.perf_counter() - t0)
        periodic = {(v["address"], c["address"]) for c in c2s for v in c["victims"]}
        periodic |= {(x["address"], c["address"]) for c in c2s for x in c["decoys"]
                     if x["kind"] == "cdn_healthcheck"}
        bt = readable(beacons.to_table())
        for s, dd, sc in zip(bt.column("src_addr").to_pylist(), bt.column("dst_addr").to_pylist(),
                             bt.column("score").to_pylist(), strict=True):
            out["beacon_scores"].append((sc, (s, dd) in periodic))
        found = {(s, dd) for s, dd in zip(bt.column("src_addr").to_pylist(),
                                         bt.column("dst_addr").to_pylist(), strict=True)}
        # Planted beacons never scored (too few contacts seen) count as misses at score 0.
        out["beacon_scores"] += [(0.0, True) for k in periodic if k not in found and any(
            v["observed_records"] for c in c2s for v in [*c["victims"], *c["decoys"]]
            if v["address"] == k[0])]

        for chain in truth.relays:
            at = datetime.fromisoformat(chain["session_start"].replace("Z", "+00:00"))
            findable = all(leg["observed_records"] > 0 for leg in chain["legs"])
            t0 = time.perf_counter()
            try:
                rep = trace(atlas, chain["path"][-1], at + timedelta(seconds=90))
                path, conf = rep.path, rep.confidence
            except AnalyticsError:
                path, conf = [], 0.0
            out["trace_s"].append(time.perf_counter() - t0)
            truth_path = chain["path"]
            # Hops right: how far back from the target the answer agrees with the truth.
            right = 0
            for a, b in zip(reversed(path), reversed(truth_path), strict=False):
                if a != b:
                    break
                right += 1
            hops = chain["hops"]
            ok = path == truth_path
            out["trace"].append((hops, findable, ok, max(right - 1, 0) / (hops + 1), conf))
        atlas.close()
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt(x: float) -> str:
    return "  n/a" if x != x else f"{x:5.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--flows", type=int, default=150_000)
    ap.add_argument("--days", type=float, default=14)
    ap.add_argument("--rates", default="1,100,1000")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    print(f"accuracy over {args.seeds} seeds, {args.flows:,} background flows, {args.days} days, "
          "observe_share=1.0, c2=3 x 12 victims, 12 relay chains of 1-16 hops per world\n")
    trace_rows: dict[int, list[Any]] = {}
    for rate in rates:
        out: dict[str, Any] = defaultdict(list)
        for k in ("victims_truth", "victims_findable", "operators_truth", "operators_findable",
                  "victim_pred", "operator_pred"):
            out[k] = set()
        for seed in range(1, args.seeds + 1):
            run_world(seed, rate, args.flows, args.days, out)
        vp, vr = pr(out["victim_pred"], out["victims_truth"])
        _, vr_f = pr(out["victim_pred"], out["victims_findable"])
        op, orr = pr(out["operator_pred"], out["operators_truth"])
        _, or_f = pr(out["operator_pred"], out["operators_findable"])
        v_ap = ap_of(out["victim_scores"])
        o_ap = ap_of(out["operator_scores"])
        b_ap = ap_of(out["beacon_scores"])
        print(f"== sampling 1:{rate} ==")
        print(f"victims   precision {fmt(vp)} recall {fmt(vr)} of {len(out['victims_truth'])} "
              f"planted (path observed), {fmt(vr_f)} of {len(out['victims_findable'])} findable "
              f"(records on >=2 days) PR-AUC {fmt(v_ap)} (labelled {len(out['victim_pred'])})")
        print(f"operators precision {fmt(op)} recall {fmt(orr)} of "
              f"{len(out['operators_truth'])} planted, {fmt(or_f)} of "
              f"{len(out['operators_findable'])} with records PR-AUC {fmt(o_ap)}")
        print(f"beacons   PR-AUC {fmt(b_ap)} over {len(out['beacon_scores'])} scored pairs")
        trace_rows[rate] = out["trace"]
        print(f"times: victims {np.mean(out['victims_s']):.2f}s  beacons "
              f"{np.mean(out['beacons_s']):.2f}s  trace {np.mean(out['trace_s']):.3f}s/chain  "
              f"peer: full-scan top {np.mean(out['scan_s']):.2f}s  peak RSS {out['rss_mib']:.0f} MiB")
        print()
    print("tracing: whole-chain top-1 accuracy (chains fully recorded) | per-hop | "
          "mean confidence right/wrong")
    bins = [(1, 4), (5, 8), (9, 12), (13, 16)]
    header = "hops   " + "".join(f"| 1:{r:<6} chain  hop   conf+ conf-  n " for r in rates)
    print(header)
    for lo, hi in bins:
        line = f"{lo:>2}-{hi:<3} "
        for r in rates:
            rows = [x for x in trace_rows[r] if lo <= x[0] <= hi and x[1]]
            if not rows:
                line += "|            n/a                   "
                continue
            acc = np.mean([x[2] for x in rows])
            hop = np.mean([x[3] for x in rows])
            cr = [x[4] for x in rows if x[2]]
            cw = [x[4] for x in rows if not x[2]]
            line += (f"| {'':7}{acc:5.2f} {hop:5.2f} {fmt(float(np.mean(cr)) if cr else float('nan'))}"
                     f" {fmt(float(np.mean(cw)) if cw else float('nan'))} {len(rows):2d} ")
        print(line)
    for r in rates:
        all_rows = trace_rows[r]
        unf = [x for x in all_rows if not x[1]]
        print(f"1:{r}: {len(all_rows)} chains, {len(unf)} with a leg left unrecorded by sampling "
              f"(excluded above); confident (>0.9) wrong answers: "
              f"{sum(1 for x in all_rows if not x[2] and x[4] > 0.9 and x[1])}")


if __name__ == "__main__":
    main()
