"""Time windows: nfdump's -t forms, today/yesterday, zones, and the CLI options."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from flowatlas.addresses import pack
from flowatlas.query.expr import And, Op, TimeMatch
from flowatlas.query.model import Selection
from flowatlas.query.window import Window, WindowError, parse_time, parse_zone
from flowatlas.schema import conform
from flowatlas.store import FlowStore

NOW = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)


def at(*parts: int, tz: str = "UTC") -> datetime:
    return datetime(*parts, tzinfo=parse_zone(tz)).astimezone(UTC)  # type: ignore[misc]


@pytest.mark.parametrize(("text", "since", "ends_by"), [
    ("2026/11/30.05:00:00-2026/11/30.06:00:00", at(2026, 11, 30, 5), at(2026, 11, 30, 6)),
    ("2026/11/30.05:00-2026/11/30.06", at(2026, 11, 30, 5), at(2026, 11, 30, 6)),
    ("2026/11/30.05", at(2026, 11, 30, 5), None),
    ("2026/11/30", at(2026, 11, 30), None),
    ("2026/11", at(2026, 11, 1), None),
    ("2026/11/30.05:15 - 2026-11-30T05:45", at(2026, 11, 30, 5, 15), at(2026, 11, 30, 5, 45)),
    ("today", at(2026, 11, 30), NOW),
    ("yesterday", at(2026, 11, 29), at(2026, 11, 30) - timedelta(microseconds=1)),
])
def test_nfdump_forms(text: str, since: datetime, ends_by: datetime | None) -> None:
    w = Window.nfdump(text, NOW)
    assert (w.since, w.ends_by) == (since, ends_by)
    # Both ends inclusive, as nfdump compares: a flow starting at END still qualifies.
    assert w.until == (ends_by + timedelta(microseconds=1) if ends_by else None)


def test_zone_reads_times_and_days_in_it() -> None:
    berlin = parse_zone("Europe/Berlin")
    assert Window.nfdump("2026/11/30.05:00", NOW, berlin).since == at(2026, 11, 30, 4)
    assert Window.nfdump("yesterday", NOW, berlin).since == at(2026, 11, 28, 23)
    assert parse_time("2026-11-30T05:00", NOW, parse_zone("+05:30")) == at(2026, 11, 29, 23, 30)
    assert parse_time("2026-11-30T05:00Z", NOW, berlin) == at(2026, 11, 30, 5)  # explicit zone wins
    assert parse_time("today", NOW) == at(2026, 11, 30)
    assert parse_time("yesterday", NOW) == at(2026, 11, 29)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: Window.nfdump("2026/13/01", NOW), "month must be in 1..12"),
    (lambda: Window.nfdump("2026/11/30.06-2026/11/30.05", NOW), "ends before it starts"),
    (lambda: Window.nfdump("2026/11/30.05:00:00.5", NOW), "nfdump's form is YYYY/MM/dd.hh:mm:ss"),
    (lambda: parse_zone("Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
    (lambda: parse_zone("+25:00"), "out of range"),
])
def test_bad_windows_say_what(call: object, message: str) -> None:
    with pytest.raises(WindowError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()  # type: ignore[operator]


def test_end_containment_becomes_a_filter_term() -> None:
    w = Window.nfdump("2026/11/30.05-2026/11/30.06", NOW)
    sel = Selection(window=w)
    assert sel.window.ends_by is None and sel.window.since == w.since
    assert sel.filter == TimeMatch("time_end", Op.LE, at(2026, 11, 30, 6))
    assert isinstance(Selection(sel.filter, w).filter, And)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowatlas.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three flows: inside 05:00-06:00, starting inside but ending after, and before."""
    path = tmp_path_factory.mktemp("window-store")
    def flow(start: datetime, seconds: int, port: int) -> dict[str, object]:
        return {"time_start": start, "time_end": start + timedelta(seconds=seconds),
                "src_addr": pack("10.0.0.1"), "dst_addr": pack("10.0.0.2"), "dst_port": port,
                "bytes": 100}
    rows = [flow(at(2026, 11, 30, 5, 10), 60, 1), flow(at(2026, 11, 30, 5, 50), 900, 2),
            flow(at(2026, 11, 30, 4, 59), 30, 3)]
    FlowStore(path).append(conform(pa.Table.from_pylist(rows)))
    return path


def ports(res: subprocess.CompletedProcess[str]) -> list[int]:
    assert res.returncode == 0, res.stderr
    return sorted(r["dst_port"] for r in json.loads(res.stdout))


def test_cli_time_window_options(store: Path) -> None:
    base = ("query", "--store", str(store), "--format", "json")
    assert ports(run(*base, "-t", "2026/11/30.05:00-2026/11/30.06:00")) == [1]
    assert ports(run(*base, "--since", "2026-11-30T05:00", "--until", "2026-11-30T06:00")) == [1, 2]
    assert ports(run(*base, "-t", "2026/11/30.05")) == [1, 2]
    assert ports(run(*base, "-t", "2026/11/30.06:00-2026/11/30.07:00", "--tz", "+01:00")) == [1]
    assert ports(run(*base, "--since", "2026/11/30.05:00", "--tz", "Europe/Berlin")) == [1, 2, 3]
    res = run(*base, "-t", "2026/11/30", "--since", "1d")
    assert res.returncode == 2 and "either -t or --since/--until" in res.stderr
    res = run(*base, "--tz", "Nowhere/Land")
    assert res.returncode == 2 and "unknown time zone 'Nowhere/Land'" in res.stderr
    res = run("top", "--store", str(store), "-t", "2026/11/31")
    assert res.returncode == 2 and "day is out of range" in res.stderr


def test_tz_is_the_display_zone_too(store: Path) -> None:
    res = run("query", "--store", str(store), "--format", "json", "--oldest-first", "--tz",
              "Europe/Berlin")
    assert res.returncode == 0, res.stderr
    times = [r["time_start"] for r in json.loads(res.stdout)]
    assert times == ["2026-11-30T05:59:00+01:00", "2026-11-30T06:10:00+01:00",
                     "2026-11-30T06:50:00+01:00"]
    res = run("top", "--store", str(store), "-s", "dstport", "--format", "csv", "--tz", "+5:30")
    assert res.returncode == 0, res.stderr
    assert "2026-11-30T10:40:00+05:30" in res.stdout  # port 1's first seen, 05:10 UTC
    res = run("query", "--store", str(store), "--format", "json", "--oldest-first")
    assert json.loads(res.stdout)[0]["time_start"] == "2026-11-30T04:59:00Z"  # UTC by default
    res = run("query", "--store", str(store), "--tz", "Europe/Berlin", "-n", "1")
    assert res.returncode == 0 and "06:50:00" in res.stdout  # the terminal table as well
