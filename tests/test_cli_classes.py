"""``flowatlas classes import``: the operator's prefix-class table from a CSV file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from flowatlas.addresses import pack
from flowatlas.analytics.frame import addr_keys
from flowatlas.governance.classes import PrefixClasses
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.store import FlowStore


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowatlas.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_import_sets_every_row_and_most_specific_wins(tmp_path: Path) -> None:
    FlowStore(tmp_path / "s")
    csv = tmp_path / "classes.csv"
    csv.write_text("prefix,class,asn\n10.0.0.0/8,residential,64500\n10.1.0.0/16,hosting,64501\n"
                   "# a comment\n2001:db8::/32,eyeball,64502\n")
    res = run("classes", "import", str(csv), "--store", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    assert "3 prefix classes set" in res.stdout
    table = PrefixClasses(ControlPlane.for_store(tmp_path / "s")).table()
    addrs = addr_keys(pa.array([pack(a) for a in ("10.2.3.4", "10.1.2.3", "2001:db8::1",
                                                  "192.0.2.1")], pa.binary(16)))
    assert table.lookup(addrs) == ["residential", "hosting", "eyeball", "unknown"]


def test_import_names_the_bad_row(tmp_path: Path) -> None:
    FlowStore(tmp_path / "s")
    csv = tmp_path / "classes.csv"
    csv.write_text("prefix,class\n10.0.0.0/8\n")
    res = run("classes", "import", str(csv), "--store", str(tmp_path / "s"))
    assert res.returncode == 2 and "row 1 needs prefix,class" in res.stderr
