"""IP lookups through the service (auth, quotas, pseudonyms, audit on) vs the library directly.

Builds a store of synthetic flows, starts ``flowatlas serve`` as a separate process on loopback,
and drives ``GET /v1/ip/{address}`` from a thread pool in this process; then runs the same
lookups through ``Atlas.profile`` in-process with the same concurrency. Prints requests/s and
p95 latency for both, their ratio, and the server's peak RSS (VmHWM) under the load.

    .venv/bin/python benchmarks/api_bench.py [--flows 1000000] [--requests 600] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from flowatlas.addresses import from_ipv4
from flowatlas.atlas import Atlas
from flowatlas.governance.classes import PrefixClasses
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.keys import KeyRing
from flowatlas.governance.tenants import TenantRegistry
from flowatlas.query.model import Selection
from flowatlas.query.window import Window
from flowatlas.schema import conform

HOSTS = 20_000  # 10.0.0.0/16-ish servers and 100.64.0.0/16 residential clients


def build_store(root: Path, n: int, now: datetime) -> list[str]:
    rng = np.random.default_rng(1)
    store = Atlas(root, create=True).store
    servers = (0x0A000000 + rng.integers(0, HOSTS, HOSTS // 2)).astype(np.uint32)
    clients = (0x64400000 + rng.integers(0, 65536, HOSTS)).astype(np.uint32)
    start = int((now - timedelta(days=2)).timestamp() * 1e6)
    chunk = 250_000
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        ts = start + np.sort(rng.integers(0, 2 * 86_400 * 10**6, m))
        out = rng.random(m) < 0.5
        s = servers[rng.integers(0, len(servers), m)]
        c = clients[rng.integers(0, len(clients), m)]
        store.append(
            conform(
                pa.table(
                    {
                        "time_start": pa.array(ts, pa.timestamp("us", tz="UTC")),
                        "time_end": pa.array(ts + 1_000_000, pa.timestamp("us", tz="UTC")),
                        "src_addr": from_ipv4(np.where(out, s, c)),
                        "dst_addr": from_ipv4(np.where(out, c, s)),
                        "src_port": pa.array(rng.integers(1024, 65535, m), pa.uint16()),
                        "dst_port": pa.array(rng.choice([22, 53, 80, 443], m), pa.uint16()),
                        "protocol": pa.array(np.full(m, 6), pa.uint8()),
                        "packets": pa.array(rng.integers(1, 100, m), pa.uint64()),
                        "bytes": pa.array(rng.integers(40, 100_000, m), pa.uint64()),
                        "source_id": pa.array(np.ones(m), pa.uint32()),
                    }
                )
            )
        )
    store.compact()
    picks = servers[rng.integers(0, len(servers), 400)]
    return [f"10.0.{(int(v) >> 8) & 255}.{int(v) & 255}" for v in picks]


def p95(values: list[float]) -> float:
    return float(np.percentile(np.asarray(values) * 1000, 95))


def run_pool(fn: object, items: list[str], threads: int) -> tuple[float, list[float]]:
    def timed(item: str) -> float:
        t = time.perf_counter()
        fn(item)  # type: ignore[operator]
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        lat = list(pool.map(timed, items))
    return len(items) / (time.perf_counter() - t0), lat


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        t = time.perf_counter()
        addrs = build_store(root, args.flows, now)
        print(f"store: {args.flows:,} flows built and compacted in {time.perf_counter() - t:.1f} s")
        control = ControlPlane.for_store(root)
        TenantRegistry(control).add(
            "bench",
            "analyst",
            quotas={
                "requests_per_second": 1e6,
                "burst": 1e6,
                "lookups_per_day": 1e9,
                "rows_per_day": 1e12,
            },
        )
        PrefixClasses(control).set("100.64.0.0/10", "residential")
        key = KeyRing(control).create("bench")[1]
        control.close()
        since = (now - timedelta(days=3)).isoformat()
        until = (now + timedelta(hours=1)).isoformat()
        items = [addrs[i % len(addrs)] for i in range(args.requests)]

        port = 18_000 + os.getpid() % 1000
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowatlas.cli",
                "serve",
                "--store",
                str(root),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(
                        "server did not start: " + server.stderr.read().decode()[-2000:]
                        if server.stderr
                        else ""
                    )
                time.sleep(0.2)
            headers = {"Authorization": f"Bearer {key}", "X-Purpose": "benchmark"}
            params = {"since": since, "until": until, "n": 10}
            with httpx.Client(
                base_url=url,
                headers=headers,
                timeout=60,
                limits=httpx.Limits(max_connections=args.threads),
            ) as client:

                def via_api(addr: str) -> None:
                    r = client.get(f"/v1/ip/{addr}", params=params)
                    if r.status_code != 200:
                        raise RuntimeError(r.text)

                run_pool(via_api, items[: args.threads * 4], args.threads)  # warm-up
                api_rps, api_lat = run_pool(via_api, items, args.threads)
            rss = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(20)

        atlas = Atlas(root)
        sel = Selection(window=Window(now - timedelta(days=3), now + timedelta(hours=1)))

        def via_lib(addr: str) -> None:
            atlas.profile(addr, sel, 10)

        run_pool(via_lib, items[: args.threads * 4], args.threads)
        lib_rps, lib_lat = run_pool(via_lib, items, args.threads)
        atlas.close()

    print(f"IP lookups ({args.requests} requests, {args.threads} concurrent, profile n=10):")
    print(
        f"  service (HTTP, auth, quotas, pseudonyms, audit): {api_rps:8.1f} req/s   "
        f"p95 {p95(api_lat):7.1f} ms"
    )
    print(
        f"  library (Atlas.profile in-process):              {lib_rps:8.1f} req/s   "
        f"p95 {p95(lib_lat):7.1f} ms"
    )
    print(
        f"  service / library throughput: {api_rps / lib_rps:.2f}x;  "
        f"p95 ratio {p95(api_lat) / p95(lib_lat):.2f}x"
    )
    print(f"  server peak RSS under load: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
