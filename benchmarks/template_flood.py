"""The red-team template flood (issue 18.3), scaled: RSS of a real ``flowatlas collect``.

One hostile exporter sends IPFIX template sets of ``--fields`` fields under distinct template
ids and observation domains; then a second exporter sends one ordinary template and data. The
collector's resident set (VmRSS, VmHWM from /proc) is printed before, after the flood and after
the second exporter, with whether the second exporter's records were decoded (its template
stored despite the flood) and what the collector's status says about templates.

    .venv/bin/python benchmarks/template_flood.py --templates 6150 --fields 500
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def wait_for(store: Path, done: Callable[[dict[str, Any]], bool],
             timeout: float = 180.0, fail: bool = True) -> dict[str, Any]:
    """The collector's published status once ``done`` holds (it is rewritten every 5 s)."""
    path = store / "collector-status.json"
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            status = {}
        if status and done(status):
            return status
        time.sleep(0.5)
    if not fail:
        return status
    raise SystemExit(f"collector did not get there in {timeout:.0f} s; last status {status}")


def template_message(domain: int, tid: int, fields: int, seq: int) -> bytes:
    # Distinct non-enterprise element ids (1..fields), 4 bytes each.
    body = struct.pack("!HH", tid, fields) + b"".join(
        struct.pack("!HH", 1 + (i % 400) + (i // 400) * 1000, 4) for i in range(fields))
    sets = struct.pack("!HH", 2, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(sets), int(time.time()), seq, domain) + sets


def normal_messages(seq: int) -> list[bytes]:
    # Template 300: src addr (8), dst addr (12), packets (2), bytes (1), flowStartSeconds (150).
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (150, 4)]
    body = struct.pack("!HH", 300, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    tset = struct.pack("!HH", 2, 4 + len(body)) + body
    now = int(time.time())
    rec = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!III", 3, 180, now)
    dset = struct.pack("!HH", 300, 4 + 10 * len(rec)) + rec * 10
    head = struct.pack("!HHIII", 10, 16 + len(tset) + len(dset), now, seq, 7)
    return [head + tset + dset]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", type=int, default=6150)
    ap.add_argument("--fields", type=int, default=500)
    ap.add_argument("--port", type=int, default=29055)
    ap.add_argument("--rate", type=float, default=400.0,
                    help="template messages per second (the kernel drops what the collector cannot take)")
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp(prefix="flood-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowatlas.cli", "collect", "--store", str(store), "--listen",
         f"127.0.0.1:{args.port}", "--accept-unregistered", "--quiet", "--batch-seconds",
         "0.2"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        proc.stderr.readline()  # "listening on ..."
        time.sleep(0.5)
        base = rss(proc.pid)
        hostile = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hostile.bind(("127.0.0.2", 0))
        started = time.perf_counter()
        for i in range(args.templates):
            domain, tid = divmod(i, 65535 - 256)
            hostile.sendto(template_message(domain, 256 + tid, args.fields, 0),
                           ("127.0.0.1", args.port))
            ahead = i / args.rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        sent_s = time.perf_counter() - started
        time.sleep(6.0)  # two status rewrites
        wait_for(store, lambda st: st["exporters"].get("127.0.0.2", {}).get("packets", 0)
                 >= args.templates, timeout=20.0, fail=False)
        flooded = rss(proc.pid)
        normal = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        normal.bind(("127.0.0.3", 0))
        for msg in normal_messages(0):
            normal.sendto(msg, ("127.0.0.1", args.port))
        status = wait_for(store, lambda st: "127.0.0.3" in st["exporters"])
        after = rss(proc.pid)
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        stop_s = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    exps = status["exporters"]
    h, n = exps.get("127.0.0.2", {}), exps.get("127.0.0.3", {})
    print(f"templates sent {args.templates} x {args.fields} fields in {sent_s:.1f} s")
    print(f"RSS KiB: idle {base[0]:,}  after flood {flooded[0]:,}  after 2nd exporter "
          f"{after[0]:,}  peak {after[1]:,}")
    print(f"hostile exporter: packets received {h.get('packets')} templates {h.get('templates')} "
          f"reasons {h.get('reasons')}")
    print(f"second exporter: records {n.get('records')} templates {n.get('templates')} "
          f"unknown_template {n.get('unknown_template')} pending {n.get('pending')}")
    print(f"held: {status.get('held')}")
    print(f"status file: {(store / 'collector-status.json').stat().st_size:,} bytes, state "
          f"file: {(store / 'collector-state.json').stat().st_size:,} bytes")
    print(f"SIGTERM to exit: {stop_s:.1f} s")


if __name__ == "__main__":
    main()
