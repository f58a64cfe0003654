"""Output: ``-o`` as nfdump means it, streaming bulk writers, and the rendering defects of
issue 19 (ports, protocols, quotas, times, never-seen addresses, graph CSV, pseudonym marks)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from flowfactory import random_flows

from flowatlas.addresses import pack_many, unpack
from flowatlas.store import FlowStore

# flowatlas.formats is imported inside the tests: run against an older tree, each regression
# test then fails on its own defect rather than the whole module on an import.

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def run(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flowatlas.cli", *args]
    if store is not None:
        cmd += ["--store", str(store)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def flows() -> pa.Table:
    return random_flows(4000, seed=21)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, flows: pa.Table) -> Path:
    path = tmp_path_factory.mktemp("out-store")
    s = FlowStore(path)
    s.append(flows)
    s.compact()
    return path


def _batches(table: pa.Table, rows: int) -> list[pa.RecordBatch]:
    return table.to_batches(max_chunksize=rows)


# -- bulk writers ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "parquet", "arrow"])
def test_bulk_writers_stream_batches_into_one_document(flows: pa.Table, fmt: str) -> None:
    from flowatlas.formats import readable
    from flowatlas.formats.bulk import write_bulk

    sink = io.BytesIO()
    rows = write_bulk(_batches(flows, 700), fmt, sink, schema=flows.schema)
    assert rows == flows.num_rows
    data = sink.getvalue()
    want = readable(flows)
    if fmt == "csv":
        assert data.count(b"time_start") == 1  # one header for all six batches
        got = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in want.column_names}))
        assert got.column("src_addr").to_pylist() == want.column("src_addr").to_pylist()
        assert got.column("time_end").to_pylist() == want.column("time_end").to_pylist()
    elif fmt in ("ndjson", "json"):
        records = (json.loads(data) if fmt == "json"
                   else [json.loads(line) for line in data.decode().splitlines()])
        assert records == want.to_pylist()
    else:
        got = (pq.read_table(io.BytesIO(data)) if fmt == "parquet"
               else pa.ipc.open_stream(data).read_all())
        assert got.column("dst_addr").to_pylist() == want.column("dst_addr").to_pylist()
        assert pa.types.is_timestamp(got.schema.field("time_start").type)
        assert got.column("bytes").to_pylist() == flows.column("bytes").to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "arrow"])
def test_empty_results_still_carry_their_columns(flows: pa.Table, fmt: str) -> None:
    from flowatlas.formats.bulk import write_bulk

    sink = io.BytesIO()
    assert write_bulk([], fmt, sink, schema=flows.schema) == 0
    data = sink.getvalue()
    if fmt == "csv":
        assert data.decode().strip() == ",".join(flows.column_names)
    elif fmt == "json":
        assert json.loads(data) == []
    elif fmt == "parquet":
        assert pq.read_table(io.BytesIO(data)).column_names == flows.column_names
    else:
        assert pa.ipc.open_stream(data).read_all().column_names == flows.column_names


def test_csv_quotes_only_where_a_value_needs_it() -> None:
    from flowatlas.formats.bulk import write_bulk

    plain = pa.table({"why": ["periodic"], "n": [1]})
    tricky = pa.table({"why": ['a, "b"\nc'], "n": [2]})
    sink = io.BytesIO()
    write_bulk([plain, tricky], "csv", sink)
    text = sink.getvalue().decode()
    assert text.startswith("why,n\nperiodic,1\n")  # nfdump-like: no quotes around plain text
    assert list(csv.reader(io.StringIO(text)))[1:] == [["periodic", "1"], ['a, "b"\nc', "2"]]


# -- -o: output formats as nfdump means them -------------------------------------------------


def test_o_selects_the_output_format_not_the_order(store: Path) -> None:
    res = run("top", "-s", "dst_port", "-o", "bytes", store=store)
    assert res.returncode == 2
    assert "unknown output format 'bytes'" in res.stderr and "--order" in res.stderr
    res = run("top", "-s", "dst_port", "--order", "bytes", "-o", "csv", "-n", "3", store=store)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 3 and int(rows[0]["bytes"]) >= int(rows[1]["bytes"])


def test_query_streams_every_format(store: Path, flows: pa.Table) -> None:
    from flowatlas.formats.nfdump import Layout

    res = run("query", "-n", "1000000", "-o", "ndjson", store=store)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == flows.num_rows
    out = subprocess.run([sys.executable, "-m", "flowatlas.cli", "query", "-n", "50", "-o",
                          "arrow", "--store", str(store)], capture_output=True, timeout=120)
    assert out.returncode == 0 and pa.ipc.open_stream(out.stdout).read_all().num_rows == 50
    res = run("query", "-n", "7", "-o", "line", store=store)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == Layout.parse("line").header and lines[-1].startswith("Summary: total flows: 7")
    assert len(lines) == 9
    res = run("query", "-n", "7", "-q", "-o", "fmt:%sa %da %byt", store=store)
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 7


def test_layout_errors_name_the_token() -> None:
    from flowatlas.formats import OutputFormatError, parse_format
    from flowatlas.formats.nfdump import FormatError, Layout

    with pytest.raises(FormatError, match="unknown format token '%xyz' at column 5"):
        Layout.parse("%ts %xyz")
    with pytest.raises(OutputFormatError, match="lays out flow records"):
        parse_format("line")  # a table (top, series) has no flow layout
    assert parse_format("fmt:%ts %sap", flows=True).template == "%ts %sap"
    # Longest token first: %sap is not %sa followed by "p", %sas not %sa + "s".
    assert [v for tok, v in Layout.parse("%sap%sas%sa").parts if tok] == ["sap", "sas", "sa"]


def test_nfdump_line_header_and_number_scaling() -> None:
    from flowatlas.formats.nfdump import Layout, scaled

    # nfdump 1.7's own header for -o line, as it prints it.
    assert Layout.parse("line").header == (
        "Date first seen             Duration     Proto      Src IP Addr:Port          "
        "Dst IP Addr:Port   Packets    Bytes Flows")
    assert scaled(np.array([999_999.0, 1e6, 1_234_567_890.0, 5e12])).to_pylist() == [
        "999999", "  1.0 M", "  1.2 G", "  5.0 T"]


# -- defects of issue 19 --------------------------------------------------------------------


def test_ports_print_plainly_and_protocols_by_name() -> None:
    from flowatlas.formats import display

    # 19.5: ports printed as 8,443 in tables; top -s proto printed 6/17.
    t = pa.table({"dst_port": pa.array([8443], pa.uint16()), "protocol": pa.array([6], pa.uint8()),
                  "src_as": pa.array([64500], pa.uint32()), "bytes": pa.array([12345], pa.uint64())})
    columns, rows, _ = display(t)
    assert dict(zip(columns, rows[0], strict=True)) == {
        "dst_port": "8443", "protocol": "TCP", "src_as": "64500", "bytes": "12,345"}


def test_top_by_proto_and_port_tables(store: Path) -> None:
    res = run("top", "-s", "proto", store=store)
    assert res.returncode == 0, res.stderr
    assert "TCP" in res.stdout and "UDP" in res.stdout and "│ 6 " not in res.stdout
    res = run("top", "-s", "dst_port", "-n", "100", store=store)
    assert res.returncode == 0, res.stderr
    ports = re.findall(r"^│\s*([\d,]+)\s*│", res.stdout, re.M)  # the first column
    assert "8080" in ports and not any("," in p for p in ports)


def test_quotas_print_as_typed(tmp_path: Path) -> None:
    # 19.5: `tenants list` printed {"max_hops": 5.0}.
    store = tmp_path / "s"
    FlowStore(store)
    res = run("tenants", "add", "t1", "--role", "analyst", "--quota", "max_hops=5",
              "--quota", "requests_per_second=2.5", store=store)
    assert res.returncode == 0, res.stderr
    res = run("tenants", "list", store=store)
    assert res.returncode == 0, res.stderr
    assert "max_hops=5" in res.stdout and "5.0" not in res.stdout
    assert "requests_per_second=2.5" in res.stdout


def test_ip_times_are_iso_and_unseen_addresses_say_so(store: Path, flows: pa.Table) -> None:
    # 19.6: the ip JSON printed 2026-11-18 15:08:44.212000+00:00; an unseen address printed
    # "first seen None" and five empty tables.
    addr = unpack(flows.column("src_addr")[0].as_py())
    res = run("ip", addr, "--format", "json", store=store)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert ISO_Z.match(doc["first_seen"]) and ISO_Z.match(doc["last_seen"])
    assert doc["seen"] is True
    assert all(ISO_Z.match(r["first"]) for r in doc["totals"])
    res = run("ip", "192.0.2.254", store=store)
    assert res.returncode == 0, res.stderr
    assert "not seen" in res.stdout and "None" not in res.stdout + res.stderr
    assert "┏" not in res.stdout  # no empty tables
    doc = json.loads(run("ip", "192.0.2.254", "--format", "json", store=store).stdout)
    assert doc["seen"] is False and doc["first_seen"] is None


def test_graph_csv_is_one_table_and_every_node_has_a_degree(store: Path, flows: pa.Table
                                                            ) -> None:
    # 19.9: nodes and edges were written into one CSV stream; hop-1 nodes had a blank degree.
    addr = unpack(flows.column("src_addr")[0].as_py())
    res = run("graph", addr, "--format", "csv", store=store)
    assert res.returncode == 2 and "add --nodes or --edges" in res.stderr
    res = run("graph", addr, "--format", "csv", "--nodes", store=store)
    assert res.returncode == 0, res.stderr
    nodes = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(nodes) > 1 and {"addr", "hop", "degree"} <= set(nodes[0])
    assert all(n["degree"] != "" for n in nodes)
    assert all(n["why_leaf"] for n in nodes if n["hop"] == "1")
    res = run("graph", addr, "--format", "csv", "--edges", store=store)
    edges = list(csv.DictReader(io.StringIO(res.stdout)))
    assert edges and {"a", "b"} <= set(edges[0]) and "hub" not in edges[0]
    leaf = next(n for n in nodes if n["hop"] == "1")
    assert int(leaf["degree"]) == len({e["a"] if e["b"] == leaf["addr"] else e["b"]
                                       for e in edges if leaf["addr"] in (e["a"], e["b"])})


def test_pseudonymised_cells_are_marked_in_every_format() -> None:
    # 19.10: a pseudonym looked like a real routable address.
    from flowatlas.analytics.netclass import NetClassTable
    from flowatlas.formats import display
    from flowatlas.formats.bulk import write_bulk
    from flowatlas.formats.nfdump import Layout
    from flowatlas.governance.pseudonym import CryptoPAn, pseudonymise_table

    classes = NetClassTable.from_rows([("100.64.0.0/10", "residential")])
    flows = random_flows(20, seed=3)
    src = ["100.64.1.1" if i % 2 else "198.51.100.1" for i in range(20)]
    flows = flows.set_column(flows.column_names.index("src_addr"), "src_addr", pack_many(src))
    out, n = pseudonymise_table(flows, CryptoPAn(bytes(range(32))), classes, ())
    assert n == 10
    assert out.column("src_addr_pseudonymised").to_pylist() == [bool(i % 2) for i in range(20)]
    sink = io.BytesIO()
    write_bulk([out], "csv", sink)
    rows = list(csv.DictReader(io.StringIO(sink.getvalue().decode())))
    assert [r["src_addr_pseudonymised"] for r in rows] == [
        "true" if i % 2 else "false" for i in range(20)]
    assert not any(r["src_addr"].startswith("~") for r in rows)  # CSV cells stay parseable
    columns, cells, _ = display(out)
    shown = [r[columns.index("src_addr")] for r in cells]
    assert [s.startswith("~") for s in shown] == [bool(i % 2) for i in range(20)]
    assert "src_addr_pseudonymised" not in columns
    lines = Layout.parse("%sa|%da").lines(out).to_pylist()
    assert [line.split("|")[0].strip().startswith("~") for line in lines] == [
        bool(i % 2) for i in range(20)]
