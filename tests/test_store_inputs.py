"""Damaged or missing store and control-plane files, through the CLI (issue 18.5): one line
naming the file and exit code 2, never a traceback; and a mistyped --store never becomes a new
empty store, except for the commands that create one."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowfactory import random_flows

from flowatlas.store import FlowStore


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowatlas.cli", *args], capture_output=True,
                          text=True, timeout=120)


def one_line_error(res: subprocess.CompletedProcess[str], *names: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    for name in names:
        assert name in res.stderr, res.stderr


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    s = FlowStore(path)
    s.append(random_flows(500, seed=5, days=1))
    return path


@pytest.mark.parametrize("junk", [
    b"\x00\xffnot json",
    pytest.param(b"[1, 2]", marks=pytest.mark.slow),
    pytest.param(b'{"retention_days": "x"}', marks=pytest.mark.slow),
    pytest.param(b'{"retention_days": 30, "ingest_compression": "brotli"}',
                 marks=pytest.mark.slow),
])
def test_a_junk_store_json_is_one_line(store: Path, junk: bytes) -> None:
    (store / "store.json").write_bytes(junk)
    for args in (["store", "stats"], ["query", "any"], ["store", "compact"]):
        one_line_error(run(*args, "--store", str(store)), "store.json")


@pytest.mark.parametrize("junk", [
    b"{",
    pytest.param(b"[]", marks=pytest.mark.slow),
    pytest.param(b'{"day": "x", "ingest": [{"file": 1}]}', marks=pytest.mark.slow),
    pytest.param(b'{"day": "x", "ingest": [{"file": "a", "rows": "many", "size": 1}]}',
                 marks=pytest.mark.slow),
])
def test_a_junk_manifest_is_one_line(store: Path, junk: bytes) -> None:
    manifest = next(store.glob("day=*/manifest.json"))
    manifest.write_bytes(junk)
    for args in (["store", "stats"], ["query", "any"], ["store", "compact"]):
        one_line_error(run(*args, "--store", str(store)), str(manifest))


def test_a_junk_control_database_is_one_line(store: Path) -> None:
    (store / "control.sqlite").write_bytes(b"this is not a database" * 100)
    for args in (["tenants", "list"], ["audit", "verify"], ["optout", "list"]):
        one_line_error(run(*args, "--store", str(store)), "control.sqlite")


def test_a_junk_source_registry_is_one_line(store: Path) -> None:
    (store / "sources.sqlite").write_bytes(b"junk" * 1000)
    one_line_error(run("sources", "list", "--store", str(store)), "sources.sqlite")


def test_a_dropped_control_table_is_one_line(store: Path) -> None:
    assert run("tenants", "list", "--store", str(store)).returncode == 0
    with contextlib.closing(sqlite3.connect(store / "control.sqlite")) as db:
        db.execute("DROP TABLE tenants")
        db.commit()
    one_line_error(run("tenants", "list", "--store", str(store)), "control.sqlite", "tenants")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` read-only: by permissions, or as root (who ignores them) by a read-only bind
    mount; skips when neither is possible."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) to make a read-only store as root")
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot bind-mount: {ok.stderr.decode().strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.decode().strip()}")
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(store: Path, tmp_path: Path) -> None:
    csv = tmp_path / "flows.csv"
    csv.write_text("time_start,src_addr,dst_addr,bytes\n"
                   f"{random_flows(1, seed=1, days=1).column('time_start')[0].as_py().isoformat()}"
                   ",10.0.0.1,10.0.0.2,100\n")
    before = run("query", "any", "--format", "csv", "--store", str(store))
    assert before.returncode == 0, before.stderr
    with read_only(store):
        res = run("query", "any", "--format", "csv", "--store", str(store))
        assert res.returncode == 0 and res.stdout == before.stdout, res.stderr
        assert run("store", "stats", "--store", str(store)).returncode == 0
        one_line_error(run("import", str(csv), "--no-compact", "--store", str(store)),
                       str(store))
        one_line_error(run("store", "compact", "--store", str(store)), str(store))
        one_line_error(run("store", "retention", "--days", "1", "--store", str(store)),
                       str(store))
    assert FlowStore(store).stats().rows == 500  # nothing lost or half-written


@pytest.mark.parametrize("args", [
    ["import", "{csv}"],
    ["store", "compact"],
    ["sources", "add", "192.0.2.0/24", "--id", "1", "--partner", "x"],
    ["tenants", "list"],
    ["audit", "verify"],
    pytest.param(["store", "stats"], marks=pytest.mark.slow),
    pytest.param(["sources", "list"], marks=pytest.mark.slow),
    pytest.param(["optout", "list"], marks=pytest.mark.slow),
    pytest.param(["classes", "list"], marks=pytest.mark.slow),
    pytest.param(["query", "any"], marks=pytest.mark.slow),
])
def test_a_mistyped_store_path_is_an_error_and_creates_nothing(tmp_path: Path,
                                                               args: list[str]) -> None:
    csv = tmp_path / "flows.csv"
    csv.write_text("time_start,src_addr,dst_addr,bytes\n")
    typo = tmp_path / "stroe"
    res = run(*[a.format(csv=csv) for a in args], "--store", str(typo))
    one_line_error(res, str(typo))
    assert not typo.exists()


def test_the_commands_that_create_a_store_do(tmp_path: Path) -> None:
    res = run("store", "create", "--store", str(tmp_path / "a"))
    assert res.returncode == 0 and (tmp_path / "a" / "store.json").exists(), res.stderr
    assert run("sources", "add", "192.0.2.0/24", "--id", "1", "--partner", "x",
               "--store", str(tmp_path / "a")).returncode == 0
    assert run("tenants", "list", "--store", str(tmp_path / "a")).returncode == 0
    csv = tmp_path / "flows.csv"
    csv.write_text("time_start,src_addr,dst_addr,bytes\n"
                   f"{random_flows(1, seed=1, days=1).column('time_start')[0].as_py().isoformat()}"
                   ",10.0.0.1,10.0.0.2,100\n")
    res = run("import", "--create", str(csv), "--store", str(tmp_path / "b"))
    assert res.returncode == 0 and FlowStore(tmp_path / "b").stats().rows == 1, res.stderr
    res = run("simulate", "--flows", "1000", "--days", "1", "--store", str(tmp_path / "c"))
    assert res.returncode == 0 and (tmp_path / "c" / "store.json").exists(), res.stderr
