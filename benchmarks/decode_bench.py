"""Decode rate of flowatlas's collector against named peers, measured in one run.

Prepared captures: one synthetic 12k-flow pcap (tests/collect_support.write_pcap) exported for
real by softflowd (NetFlow v5, v9, IPFIX) and pmacctd sfprobe (sFlow v5); the datagrams are
caught once and then decoded from memory by

* flowatlas ``Decoder`` (numpy, one core),
* ``netflume`` and ``netflow`` (pure-Python decoders from PyPI; neither decodes sFlow),

and sent over loopback to ``nfcapd`` (C; plain, and with ``-y`` LZ4) and to ``flowatlas collect``
(whole collectors: receive, decode, write), whose CPU seconds are read from /proc. flowatlas runs
twice, writing uncompressed ingest files (compared with plain nfcapd) and LZ4 ones, the default
(compared with ``nfcapd -y``). Each capture is sent ``--warmup`` times before the CPU count starts,
so that both collectors are measured in their steady state, as a long-running daemon spends its
life (a fresh Python process pays one-off costs on its first batches), then ``--rounds`` times,
sequence numbers running on throughout as from one long-lived exporter. CPU is read after
flowatlas's age-based flush, so its Parquet write is counted. Prints records/s, records per
CPU-second (all threads, from /proc/PID/task/*/schedstat: nanoseconds, not 10 ms ticks), the
ratio to nfcapd, peak RSS, the receive buffer each got (both ask for 32 MiB) and any datagram the
kernel dropped (Udp RcvbufErrors and InErrors deltas, plus what each collector says it stored).

Run: .venv/bin/python benchmarks/decode_bench.py [--flows 12000] [--warmup 10] [--rounds 150]
     (pip install -e .[bench])
"""

from __future__ import annotations

import argparse
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from collect_support import drain, free_port, pmacctd, softflowd, udp_sink, write_pcap  # noqa: E402

from flowatlas.collect import Decoder  # noqa: E402
from flowatlas.store import FlowStore  # noqa: E402


def exports(pcap: Path, work: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for name, run in (("v5", lambda p: softflowd(pcap, p, 5, work)),
                      ("v9", lambda p: softflowd(pcap, p, 9, work)),
                      ("ipfix", lambda p: softflowd(pcap, p, 10, work)),
                      ("sflow", lambda p: pmacctd(pcap, p, "sfprobe", work))):
        with udp_sink() as sink:
            run(sink.getsockname()[1])
            out[name] = [d for d, _ in drain(sink)]
    return out


def rate(decode: Callable[[list[bytes]], int], datagrams: list[bytes],
         min_seconds: float = 1.0) -> tuple[float, int]:
    """Records per CPU-second over enough rounds to take ``min_seconds``; and records/round."""
    per_round = decode(datagrams)  # warm-up, also learns templates
    rounds, t0 = 0, time.process_time()
    while True:
        decode(datagrams)
        rounds += 1
        spent = time.process_time() - t0
        if spent >= min_seconds:
            return per_round * rounds / spent, per_round


BATCH = 512
"""Datagrams per decode call, as the server drains its sockets."""


def flowatlas_decode(datagrams: list[bytes]) -> int:
    d = Decoder()
    n = 0
    for i in range(0, len(datagrams), BATCH):
        t = d.decode_many([(data, "127.0.0.1") for data in datagrams[i:i + BATCH]],
                          1_700_000_100.0)
        if t is not None:
            n += t.num_rows
    return n


def netflume_decode(datagrams: list[bytes]) -> int:
    import netflume

    d = netflume.Decoder()
    n = 0
    for data in datagrams:
        m = d.decode(data, "127.0.0.1")
        if m is not None:
            n += len(m.flows)
    return n


def netflow_decode(datagrams: list[bytes]) -> int:
    import netflow

    templates: dict[str, dict[int, object]] = {"netflow": {}, "ipfix": {}}
    n = 0
    for data in datagrams:
        try:
            p = netflow.parse_packet(data, templates)
        except Exception:  # the peer raises on what it cannot parse
            continue
        n += len(p.flows)
    return n


def udp_errors() -> tuple[int, int]:
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
             if ln.startswith("Udp:")]
    table = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return table["RcvbufErrors"], table["InErrors"]


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` in ns resolution (schedstat), not 10 ms ticks."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that just ended
    return total / 1e9


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


SEQUENCE_AT = {"v5": 16, "v9": 12, "ipfix": 8}


def renumber(proto: str, datagrams: list[bytes], rounds: int) -> list[bytes]:
    """The capture ``rounds`` times over, sequence numbers running on as from one long-lived
    exporter: resending the same numbers would look like reordering to any collector."""
    at = SEQUENCE_AT[proto]
    seqs = [struct.unpack_from("!I", d, at)[0] for d in datagrams]
    if proto == "v5":  # flows sent before this datagram
        span = seqs[-1] + struct.unpack_from("!H", datagrams[-1], 2)[0] - seqs[0]
    elif proto == "v9":  # softflowd counts datagrams
        span = seqs[-1] + 1 - seqs[0]
    else:  # softflowd's IPFIX counts data records up to and including this message
        first = Decoder().decode(datagrams[0], "127.0.0.1")
        span = seqs[-1] + (first.num_rows if first is not None else 0) - seqs[0]
    out = []
    for r in range(rounds):
        for d, seq in zip(datagrams, seqs, strict=True):
            b = bytearray(d)
            struct.pack_into("!I", b, at, (seq + r * span) % (1 << 32))
            out.append(bytes(b))
    return out


def send(datagrams: list[bytes], port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i, d in enumerate(datagrams):
            s.sendto(d, ("127.0.0.1", port))
            if i % 16 == 15:
                time.sleep(0.0002)  # pace so the receivers, not the sender, set the rate


FLUSH_WAIT = 3.0
"""Seconds after the last send before CPU is read: longer than flowatlas's --batch-seconds (2),
so the Parquet write of what was received is counted too, not left to the exit."""


def over_loopback(cmd: Callable[[int, Path], list[str]], proto: str, datagrams: list[bytes],
                  warmup: int, rounds: int, flows: int, work: Path
                  ) -> tuple[float, float, int, int, str]:
    """(records per CPU-second over ``rounds``, peak RSS MiB, kernel drops, records it reported
    over all rounds, receive buffer it was granted) for a collector."""
    port = free_port()
    out = work / f"out-{port}"
    out.mkdir()
    proc = subprocess.Popen(cmd(port, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(1.5)
    stream = renumber(proto, datagrams, warmup + rounds)
    before = udp_errors()
    if warmup:
        send(stream[:warmup * len(datagrams)], port)
        time.sleep(FLUSH_WAIT)
    base = cpu_seconds(proc.pid)
    send(stream[warmup * len(datagrams):], port)
    time.sleep(FLUSH_WAIT)
    spent = cpu_seconds(proc.pid) - base
    rss = peak_rss_mib(proc.pid)
    after = udp_errors()
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=60)
    drops = (after[0] - before[0]) + (after[1] - before[1])
    # nfcapd prints "Flows: N" for each file it closes (one per 5-minute cycle and at exit),
    # flowatlas "N flows stored" once at exit.
    reported = sum(int(part.split(",")[0]) for part in text.split("Flows: ")[1:])
    if " flows stored" in text:
        reported = int(text.split(" flows stored")[0].split()[-1])
    rcvbuf = "-"
    if "kernel receive buffer " in text:
        rcvbuf = text.split("kernel receive buffer ")[1].split(" per")[0]
    return flows * rounds / max(spent, 1e-9), rss, drops, reported, rcvbuf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=12_000)
    ap.add_argument("--warmup", type=int, default=10,
                    help="times each capture is sent before CPU is counted")
    ap.add_argument("--rounds", type=int, default=150,
                    help="times each capture is sent while CPU is counted")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pcap(work / "bench.pcap", flows=args.flows, seed=11)
        data = exports(work / "bench.pcap", work)
        print(f"capture: {args.flows} flows; datagrams: "
              + ", ".join(f"{k} {len(v)}" for k, v in data.items()))
        print(f"\n{'protocol':8} {'flowatlas rec/s':>16} {'netflume':>12} {'netflow':>12}"
              f" {'vs fastest':>10}")
        ours_rates: dict[str, tuple[float, int]] = {}
        for proto, dgrams in data.items():
            ours, n = rate(flowatlas_decode, dgrams)
            ours_rates[proto] = (ours, n)
            peers: list[float] = []
            cells = []
            for fn in (netflume_decode, netflow_decode):
                if proto == "sflow":
                    cells.append("n/a")
                    continue
                r, _ = rate(fn, dgrams, min_seconds=0.5)
                peers.append(r)
                cells.append(f"{r / 1e3:,.0f}k")
            ratio = f"{ours / max(peers):.1f}x" if peers else "-"
            print(f"{proto:8} {ours / 1e6:>14.2f}M {cells[0]:>12} {cells[1]:>12} {ratio:>10}"
                  f"   ({n} records per pass)")
        print(f"flowatlas decoder peak RSS: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

        print(f"\nwhole collectors over loopback ({args.warmup} sends of each capture to warm "
              f"up, then {args.rounds} counted):")
        print(f"{'protocol':8} {'collector':22} {'rec/CPU-s':>12} {'vs peer':>22} "
              f"{'peak RSS':>10} {'kernel drops':>13} {'sent':>9} {'reported':>9} "
              f"{'SO_RCVBUF':>10}")
        sends = args.warmup + args.rounds
        for proto in ("v5", "v9", "ipfix"):
            flows = ours_rates[proto][1]
            measured: dict[str, float] = {}
            for name, peer, cmd in (
                ("nfcapd 1.7.1", None, lambda p, o: nfcapd_cmd(p, o, [])),
                ("nfcapd -y (LZ4)", None, lambda p, o: nfcapd_cmd(p, o, ["-y"])),
                ("flowatlas, none", "nfcapd 1.7.1", lambda p, o: flowatlas_cmd(p, o, "none")),
                ("flowatlas, lz4", "nfcapd -y (LZ4)", lambda p, o: flowatlas_cmd(p, o, "lz4")),
            ):
                r, rss, drops, reported, rcvbuf = over_loopback(
                    cmd, proto, data[proto], args.warmup, args.rounds, flows, work)
                measured[name] = r
                if peer is None:
                    ratio, rcvbuf = "-", "32 MiB -B"
                else:
                    ratio = f"{r / max(measured[peer], 1e-9):.2f}x {peer.split(' (')[0]}"
                print(f"{proto:8} {name:22} {r / 1e6:>10.2f}M {ratio:>22} {rss:>8.0f}Mi "
                      f"{drops:>13} {flows * sends:>9} {reported:>9} {rcvbuf:>10}")


def nfcapd_cmd(port: int, out: Path, extra: list[str]) -> list[str]:
    return ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-B", str(32 << 20), *extra,
            "-w", str(out)]


def flowatlas_cmd(port: int, out: Path, compression: str) -> list[str]:
    FlowStore(out, ingest_compression=compression)  # the store setting the collector writes by
    return [sys.executable, "-c", "from flowatlas.cli.main import main; main()", "collect",
            "--store", str(out), "--listen", f"127.0.0.1:{port}", "--accept-unregistered"]


if __name__ == "__main__":
    main()
