"""Enrichment: the real dataset set-up installs, the range table's edges, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from flowatlas.addresses import pack, pack_many
from flowatlas.cli.main import cli
from flowatlas.enrich import (
    Dataset,
    DatasetInfo,
    Enricher,
    RangeTable,
    build_ip_location_db,
    default_dir,
    enricher,
)
from flowatlas.enrich.dataset import is_current, version_date, write_dataset
from flowatlas.ranges import addr_keys


@pytest.fixture(scope="module")
def real() -> Enricher:
    found = enricher()
    assert found.datasets, f"no enrichment dataset in {default_dir()}: run scripts/env.sh"
    return found


def identities(enrich: Enricher, addresses: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = enrich.column(pack_many(addresses)).table().to_pylist()
    return rows


# -- the installed dataset ----------------------------------------------------------------------

def test_installed_dataset_is_the_pinned_ip_location_db() -> None:
    info = Dataset.load(default_dir()).info
    lock = json.loads((Path(__file__).parents[1] / "datasets" / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@ip-location-db/asn"]["version"]
    assert info.source == "ip-location-db"
    assert info.version == pinned
    assert info.date == version_date(pinned)
    assert info.ranges["asn.arrow"] > 400_000 and info.ranges["country.arrow"] > 100_000


def test_public_resolvers_map_to_their_operators(real: Enricher) -> None:
    got = identities(real, ["8.8.8.8", "2001:4860:4860::8888", "1.1.1.1", "9.9.9.9"])
    assert [(r["asn"], r["as_name"]) for r in got] == [
        (15169, "Google LLC"), (15169, "Google LLC"), (13335, "Cloudflare, Inc."),
        (19281, "Quad9")]
    # Countries of anycast addresses differ between datasets; each is a two-letter code here.
    assert all(isinstance(r["country"], str) and len(str(r["country"])) == 2 for r in got)


def test_private_and_special_addresses_are_unknown(real: Enricher) -> None:
    got = identities(real, ["10.1.2.3", "192.168.0.1", "127.0.0.1", "::1", "fe80::1", "0.0.0.0"])
    assert got == [{"asn": None, "as_name": None, "country": None}] * 6


def test_mixed_families_keep_row_order(real: Enricher) -> None:
    addresses = ["9.9.9.9", "2001:4860:4860::8888", "10.0.0.1", "1.1.1.1", "::1", "8.8.8.8"] * 3
    got = [r["asn"] for r in identities(real, addresses)]
    assert got == [19281, 15169, None, 13335, None, 15169] * 3


# -- range tables: boundaries, IPv6, unknowns, overlaps, layers -----------------------------------

def table(rows: list[tuple[str, str, int, str | None, str | None]],
          provides: tuple[str, ...] = ("asn", "as_name", "country")) -> RangeTable:
    return RangeTable.from_arrow(pa.table({
        "low": pa.array([pack(r[0]) for r in rows], pa.binary(16)),
        "high": pa.array([pack(r[1]) for r in rows], pa.binary(16)),
        "asn": pa.array([r[2] for r in rows], pa.uint32()),
        "as_name": pa.array([r[3] for r in rows], pa.string()).dictionary_encode(),
        "country": pa.array([r[4] for r in rows], pa.string()).dictionary_encode(),
    }), provides)


def of(tables: list[RangeTable]) -> Enricher:
    info = DatasetInfo("test", "1", "2026-01-01")
    return Enricher([Dataset(Path("."), info, tables)])


SMALL = table([
    ("203.0.113.0", "203.0.113.127", 64500, "Low half", "DE"),
    ("203.0.113.128", "203.0.113.255", 64501, "High half", "FR"),
    ("2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff", 64502, "Six", "NL"),
    ("2001:db8:1::", "2001:db8:1::", 64503, "One", None),
    ("0.0.0.0", "0.0.0.0", 64504, "Zero", "ZZ"),
    ("255.255.255.255", "255.255.255.255", 64505, "Top", "TT"),
])


@pytest.mark.parametrize(("address", "asn"), [
    ("203.0.112.255", None), ("203.0.113.0", 64500), ("203.0.113.127", 64500),
    ("203.0.113.128", 64501), ("203.0.113.255", 64501), ("203.0.114.0", None),
    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None), ("2001:db8::", 64502),
    ("2001:db8:0:ffff:ffff:ffff:ffff:ffff", 64502), ("2001:db8:0:1::1", 64502),
    ("2001:db8:1::", 64503), ("2001:db8:1::1", None), ("0.0.0.0", 64504),
    ("255.255.255.255", 64505), ("::", None), ("::ffff:0:0", 64504),
])
def test_range_boundaries_are_inclusive(address: str, asn: int | None) -> None:
    assert identities(of([SMALL]), [address])[0]["asn"] == asn


def test_ipv6_ranges_and_unknown_fields() -> None:
    got = identities(of([SMALL]), ["2001:db8:1::", "2001:db8::5"])
    assert got == [{"asn": 64503, "as_name": "One", "country": None},
                   {"asn": 64502, "as_name": "Six", "country": "NL"}]


def test_overlapping_ranges_are_clipped_at_the_later_start() -> None:
    # As in ip-location-db 2.3.2026061719: AS749 214.95.0.0-215.0.255.255, AS721 from 215.0.0.0.
    t = table([("10.0.0.0", "10.0.0.200", 1, "wide", None),
               ("10.0.0.100", "10.0.1.0", 2, "later", None)])
    got = [r["asn"] for r in identities(of([t]), ["10.0.0.99", "10.0.0.100", "10.0.0.200",
                                                  "10.0.1.0", "10.0.1.1"])]
    assert got == [1, 2, 2, 2, None]


def test_a_range_spanning_ipv4_space_is_found_from_both_sides() -> None:
    t = table([("::fffe:0:0", "::ffff:10.0.0.0", 7, "span", None)])
    got = [r["asn"] for r in identities(of([t]), ["9.255.255.255", "10.0.0.0", "10.0.0.1",
                                                  "::fffe:1:2"])]
    assert got == [7, 7, None, 7]


def test_first_layer_that_knows_a_field_answers() -> None:
    asn_only = table([("198.51.100.0", "198.51.100.255", 64510, "Mine", None)], ("asn", "as_name"))
    countries = table([("198.51.0.0", "198.51.255.255", 0, None, "SE"),
                       ("192.0.2.0", "192.0.2.255", 0, None, "NO")], ("country",))
    fallback = table([("192.0.2.0", "192.0.2.255", 64511, "Other", "FI")])
    got = identities(of([asn_only, countries, fallback]), ["198.51.100.1", "192.0.2.1",
                                                           "198.51.1.1"])
    assert got == [{"asn": 64510, "as_name": "Mine", "country": "SE"},
                   {"asn": 64511, "as_name": "Other", "country": "NO"},
                   {"asn": None, "as_name": None, "country": "SE"}]


def test_lookup_of_many_rows_matches_one_by_one(real: Enricher) -> None:
    rng = np.random.default_rng(7)
    v4 = rng.integers(0, 2**32, 3000, dtype=np.uint64)
    addresses = [f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}" for a in v4.tolist()]
    addresses += [f"2a0{i % 10}:{i:x}::1" for i in range(500)]
    addresses = addresses + addresses[:1000]  # repeats take the distinct-address path
    many = identities(real, addresses)
    one = [identities(real, [a])[0] for a in addresses[::37]]
    assert many[::37] == one
    assert sum(r["asn"] is not None for r in many) > 1000  # most of the space is routed


def test_saved_table_loads_the_same(tmp_path: Path) -> None:
    SMALL.save(tmp_path / "t.arrow")
    loaded = RangeTable.load(tmp_path / "t.arrow")
    keys = addr_keys(pack_many(["203.0.113.5", "2001:db8::1", "1.2.3.4"]))
    assert loaded.index(keys).tolist() == SMALL.index(keys).tolist()
    assert loaded.provides == SMALL.provides


# -- building from the npm packages' layout -------------------------------------------------------

def fake_packages(root: Path, version: str = "2.3.2026010203") -> Path:
    base = root / "@ip-location-db"
    for pkg, files in {
        "asn": {"asn-ipv4-num.csv": '3221225984,3221226239,64496,"Example, Inc."\n',
                "asn-ipv6.csv": "2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,64497,Six\n"},
        "asn-country": {"asn-country-ipv4-num.csv": "3221225472,3221229567,DK\n",
                        "asn-country-ipv6.csv": "2001:db8::,2001:db8::ffff,IS\n"},
    }.items():
        (base / pkg).mkdir(parents=True)
        (base / pkg / "package.json").write_text(json.dumps({"version": version}))
        for name, text in files.items():
            (base / pkg / name).write_text(text)
    return base


def test_build_converts_the_packages_and_records_version_and_date(tmp_path: Path) -> None:
    source = fake_packages(tmp_path)
    info = build_ip_location_db(source, tmp_path / "out")
    assert (info.version, info.date) == ("2.3.2026010203", "2026-01-02")
    assert is_current(source, tmp_path / "out")
    enrich = Enricher([Dataset.load(tmp_path / "out")])
    assert identities(enrich, ["192.0.2.1", "192.0.3.1", "2001:db8::1", "2001:db8::1:0"]) == [
        {"asn": 64496, "as_name": "Example, Inc.", "country": "DK"},
        {"asn": None, "as_name": None, "country": "DK"},
        {"asn": 64497, "as_name": "Six", "country": "IS"},
        {"asn": 64497, "as_name": "Six", "country": None}]
    (source / "asn" / "package.json").write_text(json.dumps({"version": "2.3.2026020304"}))
    assert not is_current(source, tmp_path / "out")


def test_build_names_a_bad_row(tmp_path: Path) -> None:
    source = fake_packages(tmp_path)
    (source / "asn" / "asn-ipv6.csv").write_text("2001:db8::,2001:db8::1,1,a\nnot-an-address,x,2,b\n")
    result = CliRunner().invoke(cli, ["enrich", "build", str(source), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "asn-ipv6.csv" in result.output and "row 2" in result.output
    assert not (tmp_path / "o").exists()


def test_a_dataset_is_replaced_whole(tmp_path: Path) -> None:
    info = write_dataset(tmp_path / "d", DatasetInfo("a", "1", "2026-01-01"), {"t.arrow": SMALL})
    assert info.ranges == {"t.arrow": len(SMALL)}
    write_dataset(tmp_path / "d", DatasetInfo("b", "2", "2026-02-01"), {"u.arrow": SMALL})
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["dataset.json", "u.arrow"]
    assert Dataset.load(tmp_path / "d").info.source == "b"


# -- the command line --------------------------------------------------------------------------

def test_cli_prints_identities_and_the_source() -> None:
    result = CliRunner().invoke(cli, ["enrich", "8.8.8.8", "2001:4860:4860::8888", "10.0.0.1"])
    assert result.exit_code == 0, result.output
    assert "Google LLC" in result.output and "15169" in result.output
    info = enricher().datasets[0].info
    assert f"enrichment: {info.source} {info.date}" in result.output
    csv = CliRunner().invoke(cli, ["enrich", "9.9.9.9", "-o", "csv"])
    assert csv.output.splitlines()[0] == "address,asn,as_name,country"
    assert csv.output.splitlines()[1].startswith("9.9.9.9,19281,Quad9,")


def test_cli_bad_address_is_one_line() -> None:
    result = CliRunner().invoke(cli, ["enrich", "8.8.8.8", "nope"])
    assert result.exit_code == 2
    assert "not an IP address: 'nope'" in result.output


def test_cli_info_names_the_dataset() -> None:
    result = CliRunner().invoke(cli, ["enrich", "info", "-o", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["source"] == "ip-location-db" and rows[0]["licence"].startswith("CC BY 4.0")


# -- the ingest pipeline ------------------------------------------------------------------------

def test_ingest_fills_as_numbers_the_exporter_left_at_zero(tmp_path: Path) -> None:
    import time

    from flowatlas.ingest import pipeline_for
    from flowatlas.schema import FLOW_SCHEMA
    from flowatlas.store import FlowStore

    store = FlowStore(tmp_path / "s", create=True)
    now_us = int(time.time() * 1e6)
    src = ["8.8.8.8", "9.9.9.9", "10.0.0.1", "2001:4860:4860::8888"]
    dst = ["10.0.0.2", "1.1.1.1", "192.168.1.1", "2001:db8::1"]
    flows = pa.table({
        "time_start": pa.array([now_us] * 4, pa.int64()).cast(FLOW_SCHEMA.field("time_start").type),
        "src_addr": pack_many(src), "dst_addr": pack_many(dst),
        "bytes": pa.array([1] * 4, pa.uint64()),
        # The exporter said AS64512 for 9.9.9.9's flow: kept as exported.
        "src_as": pa.array([0, 64512, 0, 0], pa.uint32()),
        "dst_as": pa.array([0, 0, 0, 0], pa.uint32()),
    })
    pipeline = pipeline_for(store)
    assert [s.name for s in pipeline.stages][-1] == "enrichment"
    assert pipeline.append(store, flows) == 4
    stored = pa.concat_tables(pa.Table.from_batches([b]) for b in store.scan())
    by_src = dict(zip(stored.column("src_addr").to_pylist(),
                      zip(stored.column("src_as").to_pylist(), stored.column("dst_as").to_pylist(),
                          strict=True), strict=True))
    assert [by_src[pack(a)] for a in src] == [(15169, 0), (64512, 13335), (0, 0), (15169, 0)]
    assert pipeline.drops.normalised == {"src_as_enriched": 2, "dst_as_enriched": 1}
    assert pipeline_for(store, enrich=False).stages[-1].name == "sampling"


# -- every answer carries the identity of its addresses -------------------------------------------

@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import time

    from flowatlas.schema import FLOW_SCHEMA
    from flowatlas.store import FlowStore

    root = tmp_path_factory.mktemp("enrich-store") / "s"
    store = FlowStore(root, create=True)
    now_us = int((time.time() - 3600) * 1e6)
    src = ["10.0.0.5", "10.0.0.5", "10.0.0.5", "2001:db8::7"]
    dst = ["8.8.8.8", "1.1.1.1", "8.8.8.8", "2001:4860:4860::8888"]
    store.append(pa.table({
        "time_start": pa.array([now_us + i for i in range(4)], pa.int64()).cast(
            FLOW_SCHEMA.field("time_start").type),
        "src_addr": pack_many(src), "dst_addr": pack_many(dst),
        "dst_port": pa.array([53, 443, 53, 53], pa.uint16()),
        "protocol": pa.array([17, 6, 17, 17], pa.uint8()),
        "bytes": pa.array([100, 200, 300, 500], pa.uint64()),
    }))
    return root


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_query_rows_carry_both_endpoints_identity(small_store: Path) -> None:
    rows = cli_json("query", "--store", str(small_store), "--since", "1d", "-o", "json",
                    "--oldest-first")
    assert isinstance(rows, list)
    assert [(r["dst_addr"], r["dst_asn"], r["dst_as_name"]) for r in rows] == [
        ("8.8.8.8", 15169, "Google LLC"), ("1.1.1.1", 13335, "Cloudflare, Inc."),
        ("8.8.8.8", 15169, "Google LLC"), ("2001:4860:4860::8888", 15169, "Google LLC")]
    assert {(r["src_asn"], r["src_country"]) for r in rows} == {(None, None)}
    table = CliRunner().invoke(cli, ["query", "--store", str(small_store), "--since", "1d"])
    assert "dst_asn" in table.output and "15169" in table.output
    assert table.output.rstrip().splitlines()[-1] == enricher().footer()


def test_top_and_profile_carry_identity(small_store: Path) -> None:
    top = cli_json("top", "-s", "dstip/bytes", "--store", str(small_store), "--since", "1d",
                   "-o", "json")
    assert isinstance(top, list)
    assert [(r["dst_addr"], r["dst_asn"], r["dst_country"] is not None) for r in top] == [
        ("2001:4860:4860::8888", 15169, True), ("8.8.8.8", 15169, True),
        ("1.1.1.1", 13335, True)]
    prof = cli_json("ip", "8.8.8.8", "--store", str(small_store), "--since", "1d", "-o", "json")
    assert isinstance(prof, dict)
    assert prof["identity"]["asn"] == 15169 and prof["identity"]["as_name"] == "Google LLC"
    info = enricher().datasets[0].info
    assert prof["enrichment"] == {"source": info.source, "version": info.version,
                                  "date": info.date}
    assert [(p["peer"], p["peer_asn"]) for p in prof["peers"]] == [("10.0.0.5", None)]
    text = CliRunner().invoke(cli, ["ip", "8.8.8.8", "--store", str(small_store), "--since", "1d"])
    assert text.output.startswith("8.8.8.8 (AS15169, Google LLC, US): first seen")
    assert text.output.count("enrichment: ") == 1  # one footer under several tables


def test_an_exported_csv_imports_again(small_store: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["query", "--store", str(small_store), "--since", "1d",
                                   "-o", "csv"])
    assert out.exit_code == 0 and "dst_as_name" in out.output.splitlines()[0]
    (tmp_path / "x.csv").write_text(out.output)
    again = CliRunner().invoke(cli, ["import", "--create", str(tmp_path / "x.csv"),
                                     "--store", str(tmp_path / "t")])
    assert again.exit_code == 0, again.output
    assert "imported 4 flows" in again.output


# -- a user's MaxMind-format database -------------------------------------------------------------

def write_mmdb(path: Path) -> Path:
    """A small real .mmdb (MaxMind DB format 2.0) in GeoLite2-ASN/City layout, written by the
    mmdb-writer package and read back by maxminddb."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, database_type="Test-GeoLite2-ASN", ipv4_compatible=True,
                        description={"en": "flowatlas test database"})
    writer.insert_network(IPSet(["8.8.8.0/24"]), {
        "autonomous_system_number": 64600, "autonomous_system_organization": "Override Net"})
    writer.insert_network(IPSet(["10.20.0.0/16"]), {
        "autonomous_system_number": 64601, "autonomous_system_organization": "Inside",
        "country": {"iso_code": "se", "names": {"en": "Sweden"}}})
    writer.insert_network(IPSet(["2001:db8:aa::/48"]), {"asn": "AS64602", "as_name": "IPinfo style",
                                                       "country": "NO"})
    writer.to_db_file(str(path))
    return path


def test_enrich_load_puts_a_users_mmdb_over_the_default(small_store: Path, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "s"
    shutil.copytree(small_store, store)
    mmdb = write_mmdb(tmp_path / "test.mmdb")
    result = CliRunner().invoke(cli, ["enrich", "load", str(mmdb), "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "as 'test-geolite2-asn': 3 networks (asn, as_name, country)" in result.output
    got = cli_json("enrich", "8.8.8.8", "10.20.1.1", "2001:db8:aa::1", "1.1.1.1",
                   "--store", str(store), "-o", "json")
    assert got == [
        # The file's AS wins; it has no country for 8.8.8.0/24, so the default's shows through.
        {"address": "8.8.8.8", "asn": 64600, "as_name": "Override Net",
         "country": identities(enricher(), ["8.8.8.8"])[0]["country"]},
        {"address": "10.20.1.1", "asn": 64601, "as_name": "Inside", "country": "SE"},
        {"address": "2001:db8:aa::1", "asn": 64602, "as_name": "IPinfo style", "country": "NO"},
        {"address": "1.1.1.1", "asn": 13335, "as_name": "Cloudflare, Inc.",
         "country": identities(enricher(), ["1.1.1.1"])[0]["country"]},
    ]
    # Answers over the store use it too; the footer names both datasets.
    rows = cli_json("query", "--store", str(store), "--since", "1d", "-o", "json")
    assert isinstance(rows, list)
    assert {r["dst_asn"] for r in rows if r["dst_addr"] == "8.8.8.8"} == {64600}
    assert {r["src_asn"] for r in rows} == {None}  # 10.0.0.5 is outside the file's 10.20/16
    info = cli_json("enrich", "info", "--store", str(store), "-o", "json")
    assert isinstance(info, list)
    assert [d["source"] for d in info] == ["Test-GeoLite2-ASN", "ip-location-db"]
    removed = CliRunner().invoke(cli, ["enrich", "unload", "test-geolite2-asn", "--store", str(store)])
    assert removed.exit_code == 0, removed.output
    assert cli_json("enrich", "8.8.8.8", "--store", str(store), "-o", "json")[0]["asn"] == 15169  # type: ignore[index]


def test_enrich_load_errors_are_one_line(tmp_path: Path) -> None:
    from flowatlas.store import FlowStore

    FlowStore(tmp_path / "s", create=True)
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    result = CliRunner().invoke(cli, ["enrich", "load", str(junk), "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "not a MaxMind DB file" in result.output
    assert not (tmp_path / "s" / "enrichment").exists() or \
        not any((tmp_path / "s" / "enrichment").iterdir())
    nowhere = CliRunner().invoke(cli, ["enrich", "load", str(write_mmdb(tmp_path / "t.mmdb")),
                                       "--store", str(tmp_path / "missing")])
    assert nowhere.exit_code == 2 and "no flowatlas store" in nowhere.output
    assert not (tmp_path / "missing").exists()
    gone = CliRunner().invoke(cli, ["enrich", "unload", "nope", "--store", str(tmp_path / "s")])
    assert gone.exit_code == 2 and "no dataset 'nope'" in gone.output


def test_a_hidden_cell_leaves_no_name_behind_in_csv() -> None:
    # Regression: the identity of a pseudonymised cell was nulled over the looked-up name, whose
    # bytes stayed under the null; Arrow's CSV writer (unquoted style) refused "Cloudflare, Inc."
    # and the API's CSV export of such flows ended in an error line.
    from flowatlas.formats.bulk import iter_bulk
    from flowatlas.formats.identity import with_identity

    t = pa.table({"src_addr": pack_many(["1.1.1.1", "9.9.9.9"]),
                  "src_addr_pseudonymised": [True, False]})
    out = with_identity(t, enricher())
    assert out.column("src_as_name").to_pylist() == [None, "Quad9"]
    text = b"".join(iter_bulk([out], "csv")).decode()
    assert "Cloudflare" not in text and text.splitlines()[1].startswith("1.1.1.1,,,,")
