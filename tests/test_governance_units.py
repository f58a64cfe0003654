"""Governance pieces on their own: Crypto-PAn, opt-outs (ingest and purge), tenants, keys."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_fixtures import flow_table

from flowatlas.addresses import pack_many, to_matrix, unpack_many
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.governance.keys import ApiKeyError, KeyRing
from flowatlas.governance.optout import IngestFilter, OptOutError, OptOuts
from flowatlas.governance.pseudonym import CryptoPAn
from flowatlas.governance.tenants import TenantError, TenantRegistry
from flowatlas.store import FlowStore

# The reference key and pairs published with the original Crypto-PAn implementation.
REFERENCE_KEY = bytes(
    [
        21,
        34,
        23,
        141,
        51,
        164,
        207,
        128,
        19,
        10,
        91,
        22,
        73,
        144,
        125,
        16,
        216,
        152,
        143,
        131,
        121,
        121,
        101,
        39,
        98,
        87,
        76,
        45,
        42,
        132,
        34,
        2,
    ]
)
REFERENCE = {
    "128.11.68.132": "135.242.180.132",
    "129.118.74.4": "134.136.186.123",
    "130.132.252.244": "133.68.164.234",
    "141.223.7.43": "141.167.8.160",
    "141.233.145.108": "141.129.237.235",
    "152.163.225.39": "151.140.114.167",
}
PAN = CryptoPAn(REFERENCE_KEY)


def test_reference_vectors_batched_and_single() -> None:
    clear = list(REFERENCE)
    batched = unpack_many(
        pa.array(
            list(PAN.encrypt_matrix(to_matrix(pack_many(clear))).view("S16").reshape(-1)),
            pa.binary(16),
        )
    )
    assert batched == [REFERENCE[a] for a in clear]
    assert [CryptoPAn(REFERENCE_KEY).encrypt(a) for a in clear] == batched
    assert [PAN.decrypt(REFERENCE[a]) for a in clear] == clear


def _common_prefix(a: int, b: int, bits: int) -> int:
    x = a ^ b
    return bits - x.bit_length()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_prefix_preserving_ipv4(a: int, b: int) -> None:
    ea = int(ipaddress.IPv4Address(PAN.encrypt(str(ipaddress.IPv4Address(a)))))
    eb = int(ipaddress.IPv4Address(PAN.encrypt(str(ipaddress.IPv4Address(b)))))
    assert _common_prefix(ea, eb, 32) == _common_prefix(a, b, 32)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_prefix_preserving_and_reversible_ipv6(a: int, b: int) -> None:
    ta, tb = str(ipaddress.IPv6Address(a)), str(ipaddress.IPv6Address(b))
    ea, eb = PAN.encrypt(ta), PAN.encrypt(tb)
    common = _common_prefix(int(ipaddress.ip_address(ea)), int(ipaddress.ip_address(eb)), 128)
    # An IPv4-mapped input stays IPv4-mapped and is permuted in its 32 bits only.
    if (
        ipaddress.IPv6Address(a).ipv4_mapped is None
        and ipaddress.IPv6Address(b).ipv4_mapped is None
    ):
        assert common == _common_prefix(a, b, 128)
    assert PAN.decrypt(ea) == ipaddress.ip_address(ta).compressed


def test_keys_differ_per_tenant_and_cache_is_consistent() -> None:
    other = CryptoPAn(bytes(range(32)))
    addrs = [f"100.64.{i}.{j}" for i in range(4) for j in range(50)]
    m = to_matrix(pack_many(addrs))
    first = PAN.encrypt_matrix(m)
    assert (PAN.encrypt_matrix(m) == first).all()
    assert not (other.encrypt_matrix(m) == first).all(axis=1).any()
    assert len({r.tobytes() for r in first}) == len(addrs)  # a permutation: no collisions


def test_optout_purges_history_and_filters_ingest(tmp_path: Path) -> None:
    store = FlowStore(tmp_path / "s")
    table = flow_table(1500, seed=3)
    store.append(table)
    control = ControlPlane.for_store(store.root)
    audit = AuditLog(control, time.time)
    optouts = OptOuts(control, audit)
    host = pack_many(["198.51.100.7"])[0].as_py()
    involved = sum(
        1
        for a, b in zip(
            table.column("src_addr").to_pylist(), table.column("dst_addr").to_pylist(), strict=True
        )
        if host in (a, b)
    )
    assert involved > 0
    purged = optouts.add("198.51.100.7", "data subject request #12", store)
    assert purged == involved
    remaining = pa.concat_tables(pa.Table.from_batches([b]) for b in store.scan())
    assert remaining.num_rows == table.num_rows - involved
    assert "198.51.100.7" not in set(unpack_many(remaining.column("src_addr")))
    as_hit = (np.asarray(remaining.column("src_as")) == 64502) | (
        np.asarray(remaining.column("dst_as")) == 64502
    )
    assert optouts.add("AS64502", "network opted out", store) == int(as_hit.sum())
    after = pa.concat_tables(pa.Table.from_batches([b]) for b in store.scan())
    assert 64502 not in set(after.column("src_as").to_pylist()) | set(
        after.column("dst_as").to_pylist()
    )
    # Ingest: the collector's filter drops the same flows before they are stored.
    kept = IngestFilter(control)(table)
    assert kept.num_rows == after.num_rows
    routes = [e["route"] for e in audit.entries()]
    assert routes == ["optout.add", "optout.add"] and audit.verify().ok
    with pytest.raises(OptOutError):
        optouts.add("not-a-thing", "x", store)
    with pytest.raises(OptOutError):
        optouts.add("10.0.0.0/8", "  ", store)


def test_tenant_and_key_validation(tmp_path: Path) -> None:
    control = ControlPlane(tmp_path / "c.sqlite")
    reg = TenantRegistry(control)
    with pytest.raises(TenantError, match="prefix"):
        reg.add("e", "enterprise")
    with pytest.raises(TenantError, match="role"):
        reg.add("x", "root")
    with pytest.raises(TenantError, match="quota"):
        reg.add("x", "analyst", quotas={"bogus": 1})
    with pytest.raises(TenantError, match="only enterprise"):
        reg.add("x", "analyst", ["10.0.0.0/8"])
    reg.add("x", "analyst")
    with pytest.raises(TenantError, match="exists"):
        reg.add("x", "analyst")
    ring = KeyRing(control)
    key_id, key = ring.create("x")
    assert ring.authenticate(key)[1] == key_id
    for bad in ("", "fa_", "fa_nope_x", key + "x", key.replace("fa_", "fb_")):
        with pytest.raises(ApiKeyError):
            ring.authenticate(bad)
    ring.revoke(key_id)
    with pytest.raises(ApiKeyError, match="revoked"):
        ring.authenticate(key)
    # Migrations are idempotent: reopening keeps everything.
    again = ControlPlane(tmp_path / "c.sqlite")
    assert [t.name for t in TenantRegistry(again).list()] == ["x"]


def test_prefix_classes_use_the_analytics_lookup_most_specific_wins(tmp_path: Path) -> None:
    from flowatlas.governance.classes import PSEUDONYMISED, PrefixClasses
    from flowatlas.governance.pseudonym import pseudonymise_table
    from flowatlas.ranges import NetClassTable, in_classes, in_prefixes

    control = ControlPlane(tmp_path / "control.sqlite")
    classes = PrefixClasses(control)
    classes.set("100.64.0.0/10", "residential")
    classes.set("100.64.5.0/24", "hosting")  # carved out of the residential block
    classes.set("2001:db8:100::/40", "eyeball")
    table = classes.table()
    assert isinstance(table, NetClassTable)
    addrs = ["100.64.6.1", "100.64.5.1", "100.127.255.255", "198.51.100.1", "2001:db8:1ff::1"]
    assert table.lookup(np.ascontiguousarray(to_matrix(pack_many(addrs))).view("V16").ravel()) \
        == ["residential", "hosting", "residential", "unknown", "eyeball"]
    assert in_classes(pack_many(addrs), table, PSEUDONYMISED).tolist() == [
        True, False, True, False, True]
    flows = pa.table({"a": pack_many(addrs)})
    out, n = pseudonymise_table(flows, CryptoPAn(bytes(32)), table, ())
    assert n == 3
    changed = [x != y for x, y in zip(unpack_many(out.column("a")), addrs, strict=True)]
    assert changed == [True, False, True, False, True]
    # Plain prefix sets (scope, opt-outs) share the same sorted-range lookup; nulls are outside.
    col = pa.array([pack_many(["10.0.0.5"])[0].as_py(), None], pa.binary(16))
    from flowatlas.addresses import parse_prefix

    assert in_prefixes(col, [parse_prefix("10.0.0.0/8")]).tolist() == [True, False]
    control.close()


def test_a_key_that_keeps_pseudonymised_space_in_place_reads_terms_as_pseudonyms() -> None:
    # About one key in 140 maps a /16 onto itself (Crypto-PAn is prefix-preserving). Such a
    # tenant's names inside the /16 are its own pseudonyms: terms there are read as pseudonyms
    # (never refused as clear, never matching the clear address of the same text).
    from flowatlas.addresses import parse_prefix
    from flowatlas.governance.pseudospace import PseudonymSpace

    space16 = parse_prefix("100.64.0.0/16")
    rng = np.random.default_rng(3)
    pan = next(
        p for p in (CryptoPAn(rng.bytes(32)) for _ in range(20_000))
        if p.encrypt("100.64.0.1").startswith("100.64.")
    )
    hidden = [(int.from_bytes(space16.low, "big"), int.from_bytes(space16.high, "big"))]
    space = PseudonymSpace(hidden, pan)
    name = parse_prefix("100.64.1.5/32")
    (meant,) = space.term(name)
    assert meant.text == pan.decrypt("100.64.1.5") != "100.64.1.5"
    assert space.target(name).text == meant.text
