"""Shared pieces for the service tests: a small hand-built store and a real server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import uvicorn

from flowatlas.addresses import pack_many, parse_prefix
from flowatlas.api.app import create_app
from flowatlas.governance.classes import PrefixClasses
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.keys import KeyRing
from flowatlas.governance.pseudonym import CryptoPAn
from flowatlas.governance.tenants import TenantRegistry
from flowatlas.ranges import in_prefixes
from flowatlas.schema import conform
from flowatlas.service import Service as FlowService

NOW = datetime(2026, 1, 12, 12, 0, tzinfo=UTC)
ENTERPRISE_NET = "198.51.100.0/24"
RESIDENTIAL_NET = "100.64.0.0/16"

# Address pools: the enterprise's own hosts, residential clients, servers elsewhere.
ENTERPRISE_HOSTS = [f"198.51.100.{i}" for i in range(1, 21)]
RESIDENTIAL_HOSTS = [f"100.64.{i}.{j}" for i in range(3) for j in range(1, 30)]
OTHER_HOSTS = [f"203.0.113.{i}" for i in range(1, 40)] + [f"192.0.2.{i}" for i in range(1, 40)]


class FakeClock:
    """The server's clock: tests move it to reset daily quotas and refill token buckets."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start.timestamp()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def flow_table(n: int = 3000, seed: int = 7) -> pa.Table:
    """Flows over the two days before NOW; about a third touch the enterprise's prefix."""
    rng = np.random.default_rng(seed)
    pools = [ENTERPRISE_HOSTS, RESIDENTIAL_HOSTS, OTHER_HOSTS]
    kinds = rng.choice(3, size=(n, 2), p=[0.2, 0.4, 0.4])
    src = [pools[k][rng.integers(len(pools[k]))] for k in kinds[:, 0]]
    dst = [pools[k][rng.integers(len(pools[k]))] for k in kinds[:, 1]]
    start_us = int((NOW.timestamp() - 2 * 86_400) * 1e6)
    starts = start_us + np.sort(rng.integers(0, 2 * 86_400 * 10**6 - 10**6, n))
    return conform(
        pa.table(
            {
                "time_start": pa.array(starts, pa.timestamp("us", tz="UTC")),
                "time_end": pa.array(starts + 500_000, pa.timestamp("us", tz="UTC")),
                "src_addr": pack_many(src),
                "dst_addr": pack_many(dst),
                "src_port": pa.array(rng.integers(1024, 65535, n), pa.uint16()),
                "dst_port": pa.array(rng.choice([22, 53, 80, 443], n), pa.uint16()),
                "protocol": pa.array(np.full(n, 6), pa.uint8()),
                "packets": pa.array(rng.integers(1, 100, n), pa.uint64()),
                "bytes": pa.array(rng.integers(40, 100_000, n), pa.uint64()),
                "source_id": pa.array(rng.choice([1, 2], n), pa.uint32()),
                "src_as": pa.array(rng.choice([64500, 64501, 64502], n), pa.uint32()),
                "dst_as": pa.array(rng.choice([64500, 64501, 64502], n), pa.uint32()),
            }
        )
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    store: Path
    control: ControlPlane
    clock: FakeClock
    keys: dict[str, str]
    table: pa.Table


def start_server(app: object, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",  # type: ignore[arg-type]
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return server, thread


def build_service(
    root: Path, quotas: dict[str, dict[str, float]] | None = None, table: pa.Table | None = None
) -> Iterator[Service]:
    """A store, tenants of every role with keys, and a running server; stopped afterwards."""
    quotas = quotas or {}
    store_path = root / "store"
    clock = FakeClock()
    # Never started: the tests drive the clock, and maintenance on the real clock would expire
    # the fixture's days.
    service = FlowService(store_path, create=True, clock=clock)
    table = flow_table() if table is None else table
    service.atlas.store.append(table)
    control = service.control
    tenants = TenantRegistry(control)
    keys = KeyRing(control)
    PrefixClasses(control).set(RESIDENTIAL_NET, "residential")
    tenants.add("ops", "admin", quotas=quotas.get("ops"))
    tenants.add("soc", "analyst", can_reveal=True, quotas=quotas.get("soc"))
    tenants.add("acme", "enterprise", [ENTERPRISE_NET], quotas=quotas.get("acme"))
    tenants.add("watch", "auditor", quotas=quotas.get("watch"))
    tenants.add("other", "analyst", quotas=quotas.get("other"))
    key_of = {name: keys.create(name)[1] for name in ("ops", "soc", "acme", "watch", "other")}
    app = create_app(service)
    port = free_port()
    server, thread = start_server(app, port)
    try:
        yield Service(f"http://127.0.0.1:{port}", store_path, control, clock, key_of, table)
    finally:
        server.should_exit = True
        thread.join(10)
        service.stop()


def pseudonyms_stay_residential(svc: Service, tenant: str) -> bool:
    """Does this tenant's key map the residential /16 onto itself? Crypto-PAn is prefix-
    preserving, so the whole /16 goes one way, and about one key in 140 keeps it in place. Then
    every residential address the tenant names is one of its own pseudonyms, not a clear one."""
    pan = CryptoPAn(TenantRegistry(svc.control).get(tenant).pseudonym_key)
    pseudonym = pan.encrypt(RESIDENTIAL_HOSTS[0])
    return bool(in_prefixes(pack_many([pseudonym]), [parse_prefix(RESIDENTIAL_NET)])[0])
