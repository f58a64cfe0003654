"""Test traffic and real exporters/collectors for the collector tests (not a test module)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt

_serial = itertools.count()

RECENT_T0 = float((int(time.time()) // 86_400 - 1) * 86_400 + 43_200)
"""Noon UTC yesterday: test traffic is dated inside the plausible window the ingest pipeline
keeps (flowatlas.ingest: the retention window behind, a day ahead of the clock)."""


FlowKey = tuple[str, str, int, int, int]


def write_pcap(path: Path, flows: int = 300, seed: int = 7,
               ipv6: bool = True, t0: float = RECENT_T0) -> dict[FlowKey, list[int]]:
    """A capture of ``flows`` short TCP/UDP conversations.

    Returns the ground truth: 5-tuple (text addresses) -> [packets, IP bytes].
    """
    import ipaddress
    import random

    rng = random.Random(seed)
    packets: list[tuple[float, bytes]] = []
    truth: dict[FlowKey, list[int]] = {}
    for i in range(flows):
        v6 = ipv6 and i % 5 == 4
        proto = 6 if i % 3 else 17
        sport, dport = rng.randrange(1024, 65535), rng.choice((53, 80, 443, 8080))
        if v6:
            src = bytes.fromhex("20010db8000000000000000000000001") [:-2] + i.to_bytes(2, "big")
            dst = bytes.fromhex("20010db8ffff00000000000000000002")
        else:
            src = bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])
            dst = bytes([192, 0, 2, 1 + i % 200])
        npk = 1 + rng.randrange(6)
        start = t0 + i * 0.01
        key = (str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sport, dport, proto)
        entry = truth.setdefault(key, [0, 0])
        for k in range(npk):
            payload = bytes(rng.randrange(0, 400))
            if proto == 6:
                l4: dpkt.Packet = dpkt.tcp.TCP(sport=sport, dport=dport, flags=0x18, data=payload)
            else:
                l4 = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
                l4.ulen = len(l4)
            if v6:
                ip: dpkt.Packet = dpkt.ip6.IP6(src=src, dst=dst, nxt=proto, hlim=64, data=l4)
                ip.plen = len(l4)
                etype = dpkt.ethernet.ETH_TYPE_IP6
            else:
                ip = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, data=l4)
                ip.len = len(ip)
                etype = dpkt.ethernet.ETH_TYPE_IP
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=etype, data=ip)
            packets.append((start + k * 0.001, bytes(eth)))
            entry[0] += 1
            entry[1] += len(bytes(ip))
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, frame in packets:
            w.writepkt(frame, ts=ts)
    return truth


def free_port(family: int = socket.AF_INET) -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def udp_sink(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((host, 0))
    s.settimeout(0.5)
    try:
        yield s
    finally:
        s.close()


def drain(sock: socket.socket, quiet: float = 0.5) -> list[tuple[bytes, str]]:
    """Everything that arrives until ``quiet`` seconds pass with nothing."""
    out = []
    sock.settimeout(quiet)
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            return out
        out.append((data, addr[0]))


def softflowd(pcap: Path, port: int, version: int, workdir: Path, host: str = "127.0.0.1") -> None:
    """Replay ``pcap`` through softflowd, exporting to ``host:port`` as NetFlow ``version``."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # softflowd 1.1.0 blocks in accept() on its control socket instead of reading the capture
    # when the socket path is longer than 12 characters (seen here, under strace), so the
    # socket gets a short unique name in /tmp.
    ctl = Path(f"/tmp/s{(os.getpid() * 10 + next(_serial)) % 100000:05d}")
    cmd = [shutil.which("softflowd") or "/usr/sbin/softflowd", "-d", "-r", str(pcap), "-n", target,
           "-v", str(version), "-T", "full", "-a", "-m", "256", "-t", "maxlife=30m",
           "-p", str(workdir / f"sfd{version}.pid"), "-c", str(ctl)]
    try:
        subprocess.run(cmd, check=True, timeout=30, capture_output=True, stdin=subprocess.DEVNULL)
    finally:
        ctl.unlink(missing_ok=True)


def _run_until(cmd: list[str], marker: bytes, timeout: float = 30.0) -> None:
    """Run an exporter until it reports the end of its capture, then stop it with SIGTERM.

    softflowd 1.1.0 does not exit by itself after the capture's end when not on a terminal;
    it flushes its flow table on SIGTERM.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        while marker not in seen and proc.poll() is None and time.monotonic() < deadline:
            chunk = proc.stdout.read()
            if chunk:
                seen += chunk
            else:
                time.sleep(0.02)
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def pmacctd(pcap: Path, port: int, plugin: str, workdir: Path, host: str = "127.0.0.1") -> None:
    """Replay ``pcap`` through pmacctd's nfprobe (IPFIX) or sfprobe (sFlow v5) plugin."""
    conf = workdir / f"pmacctd-{plugin}.conf"
    lines = [f"pcap_savefile: {pcap}", f"plugins: {plugin}", "pcap_savefile_wait: false",
             f"pidfile: {workdir}/pmacctd-{plugin}.pid", "daemonize: false"]
    if plugin == "nfprobe":
        lines += [f"nfprobe_receiver: {host}:{port}", "nfprobe_version: 10",
                  "nfprobe_timeouts: maxlife=1800", "nfprobe_maxflows: 256"]
    else:
        lines += [f"sfprobe_receiver: {host}:{port}", "sfprobe_agentip: 127.0.0.1",
                  "sampling_rate: 1"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([shutil.which("pmacctd") or "/usr/sbin/pmacctd", "-f", str(conf)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)


def has_tool(name: str) -> bool:
    return shutil.which(name) is not None or os.path.exists(f"/usr/sbin/{name}") or \
        os.path.exists(f"/usr/bin/{name}")


def nfcapd_collect(datagrams: list[bytes], workdir: Path,
                   senders: tuple[str, ...] = ("127.0.0.1",)) -> Path:
    """Send ``datagrams`` to a real nfcapd over loopback, once from each sender address (each
    one an exporter to nfcapd); returns the directory of its nfcapd files."""
    import signal

    out = workdir / f"nfcapd-{next(_serial)}"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.4)  # nfcapd binds after start-up; there is no readiness signal
        for sender in senders:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((sender, 0))
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", port))
                    time.sleep(0.0005)  # softflowd paces its export too; keep nfcapd's buffer safe
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def nfdump_csv(directory: Path, *args: str) -> list[list[str]]:
    """``nfdump -R directory -q -o csv ARGS`` as rows (times in UTC)."""
    import csv

    text = subprocess.run(["nfdump", "-R", str(directory), "-q", "-o", "csv", *args],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "TZ": "UTC"}).stdout
    # With no match nfdump prints "No matching flows": one field, not a record.
    return [row for row in csv.reader(text.splitlines()) if len(row) > 1]


def nfcapd_decode(datagrams: list[bytes], workdir: Path) -> list[dict[str, str]]:
    """Send ``datagrams`` to a real nfcapd over loopback and read its flows back with nfdump."""
    out = nfcapd_collect(datagrams, workdir)
    cols = ["ts", "te", "td", "sa", "da", "sp", "dp", "pr", "flg", "fwd", "stos", "ipkt", "ibyt"]
    return [dict(zip(cols, row, strict=False)) for row in nfdump_csv(out)]


__all__ = [
    "RECENT_T0",
    "drain",
    "free_port",
    "has_tool",
    "nfcapd_collect",
    "nfcapd_decode",
    "nfdump_csv",
    "pmacctd",
    "softflowd",
    "time",
    "udp_sink",
    "write_pcap",
]


# -- hand-built IPFIX / v9 messages for edge cases ------------------------------------------------

import struct  # noqa: E402


def ipfix_message(sets: list[bytes], seq: int = 0, domain: int = 1,
                  export_time: int = 1_700_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def ipfix_set(set_id: int, payload: bytes) -> bytes:
    return struct.pack("!HH", set_id, 4 + len(payload)) + payload


def ipfix_template(tid: int, fields: list[tuple[int, int] | tuple[int, int, int]],
                   scope: int = 0) -> bytes:
    """Template record; a field (id, length, pen) is enterprise-specific."""
    out = struct.pack("!HH", tid, len(fields)) + (struct.pack("!H", scope) if scope else b"")
    for f in fields:
        if len(f) == 3:
            out += struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack("!HH", f[0], f[1])
    return out


def v9_message(flowsets: list[bytes], seq: int = 0, source_id: int = 1,
               uptime_ms: int = 100_000, unix_secs: int = 1_700_000_000) -> bytes:
    return struct.pack("!HHIIII", 9, len(flowsets), uptime_ms, unix_secs, seq, source_id) + \
        b"".join(flowsets)


def varlen(value: bytes) -> bytes:
    if len(value) < 255:
        return bytes([len(value)]) + value
    return b"\xff" + struct.pack("!H", len(value)) + value
