"""Governance audits itself: every control-plane change, from any front end, is written to the
audit log with its actor; and the one control-plane file migrates an old store's
``sources.sqlite`` into itself."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowatlas.addresses import pack, parse_prefix
from flowatlas.cli.main import cli
from flowatlas.governance import controlplane
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.changes import Actor
from flowatlas.governance.controlplane import ControlPlane, ControlPlaneError
from flowatlas.governance.keys import KeyRing
from flowatlas.governance.sources import SourceRegistry
from flowatlas.governance.tenants import TenantError, TenantRegistry
from flowatlas.store import FlowStore

ALICE = {"LOGNAME": "alice", "USER": "alice", "LNAME": "alice", "USERNAME": "alice"}


def entries(store: Path) -> list[dict[str, object]]:
    return list(AuditLog(ControlPlane.for_store(store), time.time).entries())


def test_every_kind_of_change_from_the_cli_is_audited_with_its_actor(tmp_path: Path) -> None:
    store = tmp_path / "s"
    FlowStore(store)
    csv = tmp_path / "classes.csv"
    csv.write_text("prefix,class\n10.0.0.0/8,residential\n10.1.0.0/16,hosting\n")
    runner = CliRunner()

    def run(*args: str) -> str:
        res = runner.invoke(cli, [*args, "--store", str(store)], env=ALICE)
        assert res.exit_code == 0, res.output
        return res.output

    steps = [
        (("tenants", "add", "soc", "--role", "analyst"), "tenants.add"),
        (("tenants", "quota", "soc", "rows_per_day=5000"), "tenants.quota"),
        (("tenants", "disable", "soc"), "tenants.disable"),
        (("tenants", "enable", "soc"), "tenants.enable"),
        (("keys", "create", "--tenant", "soc"), "keys.create"),
        (("classes", "set", "100.64.0.0/10", "eyeball"), "classes.set"),
        (("classes", "import", str(csv)), "classes.import"),
        (("classes", "remove", "10.1.0.0/16"), "classes.remove"),
        (("sources", "add", "192.0.2.0/24", "--id", "9", "--partner", "lab"), "sources.add"),
        (("sources", "remove", "9"), "sources.remove"),
        (("optout", "add", "198.51.100.7", "--reason", "DSR #1"), "optout.add"),
        (("optout", "remove", "198.51.100.7"), "optout.remove"),
        (("settings", "set", "engine.threads=2"), "settings.set"),
        (("store", "settings", "--retention-days", "40"), "settings.set"),
    ]
    for args, route in steps:
        before = len(entries(store))
        run(*args)
        new = entries(store)[before:]
        assert [e["route"] for e in new] == [route], (args, new)
        assert new[0]["actor"] == "cli:alice" and new[0]["outcome"] == "ok"
        if route == "keys.create":
            key_id = str(new[0]["params"]["key"])  # type: ignore[index]
    before = len(entries(store))
    run("keys", "revoke", key_id)
    (revoked,) = entries(store)[before:]
    assert (revoked["route"], revoked["actor"], revoked["params"]) == (
        "keys.revoke", "cli:alice", {"key": key_id})
    by_route = {e["route"]: e for e in entries(store)}
    assert by_route["classes.import"]["params"] == {"source": str(csv), "count": 2}
    assert by_route["sources.add"]["params"] == {
        "prefix": "192.0.2.0/24", "source_id": 9, "partner": "lab", "sampling": None,
        "basis": "contract"}
    assert by_route["settings.set"]["params"] == {
        "settings": {"store.retention_days": 40}, "before": {"store.retention_days": 90}}
    assert AuditLog(ControlPlane.for_store(store), time.time).verify().ok


def test_library_and_api_actors_and_refused_changes(tmp_path: Path) -> None:
    control = ControlPlane(tmp_path / "control.sqlite")
    audit = AuditLog(control, time.time)
    TenantRegistry(control).add("ops", "admin")
    KeyRing(control, Actor.key("ops", "k1")).create("ops")
    first, second = list(audit.entries())
    assert str(first["actor"]).startswith("local:") and first["tenant"] is None
    assert (second["actor"], second["tenant"], second["key_id"]) == ("key:k1", "ops", "k1")
    # A refused change is rolled back together with its entry: no entry without a change.
    with pytest.raises(TenantError, match="exists already"):
        TenantRegistry(control, Actor.cli()).add("ops", "admin")
    with pytest.raises(TenantError, match="no tenant"):
        TenantRegistry(control, Actor.cli()).set_disabled("nobody")
    assert len(list(audit.entries())) == 2 and audit.verify().ok


# -- one control plane: migrations ------------------------------------------------------------

# What the exporter registry of flowatlas before the fold wrote to <store>/sources.sqlite
# (collect/sources.py at a711561): its table, in WAL mode, one row per registered prefix.
OLD_SOURCES_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    prefix TEXT PRIMARY KEY,
    low BLOB NOT NULL,
    high BLOB NOT NULL,
    source_id INTEGER NOT NULL,
    partner TEXT NOT NULL,
    sampling INTEGER,
    basis TEXT NOT NULL,
    added_at REAL NOT NULL
)
"""


def old_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as the code before the fold left it: control.sqlite at schema version 1 with a
    tenant, and the exporter registry in its own sources.sqlite."""
    FlowStore(root)
    with monkeypatch.context() as m:
        m.setattr(controlplane, "MIGRATIONS", controlplane.MIGRATIONS[:1])
        control = ControlPlane.for_store(root)
        TenantRegistry(control).add("soc", "analyst")
        assert control.version == 1
        control.close()
    db = sqlite3.connect(root / "sources.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(OLD_SOURCES_SCHEMA)
    for prefix, sid, partner, sampling, basis in (("192.0.2.0/24", 7, "Example Net", 1000, "contract"),
                                                  ("2001:db8::/48", 8, "Lab", None, "research")):
        p = parse_prefix(prefix)
        db.execute("INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (p.text, p.low, p.high, sid, partner, sampling, basis, 1.7e9))
    db.close()


def test_an_old_stores_sources_sqlite_is_folded_in_on_first_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "old"
    old_store(root, monkeypatch)
    res = CliRunner().invoke(cli, ["sources", "list", "--store", str(root), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[1:] == ["192.0.2.0/24,7,Example Net,1000,contract",
                                          "2001:db8::/48,8,Lab,,research"]
    assert not (root / "sources.sqlite").exists() and (root / "sources.sqlite.migrated").exists()
    control = ControlPlane.for_store(root)
    assert control.version == len(controlplane.MIGRATIONS) == 2
    reg = SourceRegistry(control)
    hit = reg.lookup(pack("192.0.2.9"))
    assert hit is not None and (hit.source_id, hit.sampling) == (7, 1000)
    assert TenantRegistry(control).get("soc").role.value == "analyst"  # the rest is kept
    log = AuditLog(control, time.time)
    (migrated,) = [e for e in log.entries() if e["route"] == "sources.migrate"]
    assert migrated["actor"] == "migration" and migrated["rows"] == 2 and log.verify().ok
    # Opening again imports nothing twice.
    again = ControlPlane.for_store(root)
    assert len([e for e in AuditLog(again, time.time).entries()
                if e["route"] == "sources.migrate"]) == 1
    assert len(SourceRegistry(again).list()) == 2


def test_a_new_store_has_no_sources_file_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    reg = SourceRegistry.for_store(tmp_path)
    reg.add("192.0.2.1", 1, "lab")
    assert not (tmp_path / "sources.sqlite").exists()
    assert [s.prefix for s in SourceRegistry.for_store(tmp_path).list()] == ["192.0.2.1"]
    db = sqlite3.connect(tmp_path / "control.sqlite", isolation_level=None)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ControlPlaneError, match="schema version 99"):
        ControlPlane.for_store(tmp_path)
