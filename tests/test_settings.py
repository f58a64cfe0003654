"""The settings schema: defaults, what is kept with a store, the file and the environment,
errors naming the setting, the documentation page and the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowatlas.cli.main import cli
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.settings import Settings, SettingsError, load, parse_assignments, save, schema
from flowatlas.store import FlowStore

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_every_setting_is_documented_with_its_default() -> None:
    text = DOCS.read_text()
    for s in schema():
        row = re.search(rf"^\| `{re.escape(s.name)}` \| ([^|]+) \|", text, re.MULTILINE)
        assert row, f"{s.name} is not in docs/settings.md"
        assert row.group(1).strip() == str(s.default), f"{s.name}: documented default differs"
        assert s.env in text or "FLOWATLAS_<SECTION>_<NAME>" in text


def test_defaults_without_a_store(tmp_path: Path) -> None:
    loaded = load(tmp_path / "none", env={})
    assert loaded.settings == Settings()
    assert {origin for _, _, origin in loaded.rows()} == {"default"}
    assert not (tmp_path / "none").exists()  # reading never creates a store


def test_store_json_then_settings_json_then_file_then_env(tmp_path: Path) -> None:
    FlowStore(tmp_path, retention_days=30, ingest_compression="zstd")
    save(tmp_path, {"engine.threads": 3, "service.port": 9001, "collector.batch_rows": 5})
    conf = tmp_path / "site.toml"
    conf.write_text('[service]\nport = 9002\nhost = "0.0.0.0"\n[engine]\nmemory_limit = "2GB"\n')
    env = {"FLOWATLAS_SETTINGS": str(conf), "FLOWATLAS_SERVICE_PORT": "9003"}
    loaded = load(tmp_path, env=env)
    s = loaded.settings
    assert (s.store.retention_days, s.store.ingest_compression) == (30, "zstd")
    assert s.engine.threads == 3 and s.collector.batch_rows == 5
    assert s.service.host == "0.0.0.0" and s.engine.memory_limit == "2GB"
    assert s.service.port == 9003
    assert loaded.origins["service.port"] == "FLOWATLAS_SERVICE_PORT"
    assert loaded.origins["service.host"] == str(conf)
    assert loaded.origins["engine.threads"] == str(tmp_path / "settings.json")
    assert loaded.origins["store.retention_days"] == str(tmp_path / "store.json")
    assert "collector.batch_seconds" not in loaded.origins
    assert dict((s.name, o) for s, _, o in loaded.rows())["collector.batch_seconds"] == "default"
    # FlowStore still reads and keeps its own settings in store.json.
    assert FlowStore(tmp_path).retention_days == 30


@pytest.mark.parametrize(("env", "message"), [
    ({"FLOWATLAS_ENGINE_THREADS": "two"},
     r"engine.threads = 'two' \(from FLOWATLAS_ENGINE_THREADS\): not a whole"),
    ({"FLOWATLAS_ENGINE_THREADS": "-1"}, "engine.threads = '-1' .*must be at least 0"),
    ({"FLOWATLAS_SERVICE_PORT": "70000"}, "service.port .*must be at most 65535"),
    ({"FLOWATLAS_ENGINE_MEMORY_LIMIT": "lots"}, "engine.memory_limit .*not a size"),
    ({"FLOWATLAS_COLLECTOR_BATCH_SECONDS": "nan"}, "collector.batch_seconds .*finite"),
    ({"FLOWATLAS_ENGINE_THREAD": "2"}, "FLOWATLAS_ENGINE_THREAD: no such setting"),
    ({"FLOWATLAS_STORE_RETENTION_DAYS": "3"}, "store.retention_days .*kept in store.json"),
])
def test_bad_values_name_the_setting_and_where_it_came_from(
        tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(tmp_path, env=env)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("[engine]\nthreads = true\n")
    with pytest.raises(SettingsError, match=rf"engine.threads = True \(from {re.escape(str(conf))}\)"):
        load(None, env={"FLOWATLAS_SETTINGS": str(conf)})
    conf.write_text("[engin]\nthreads = 1\n")
    with pytest.raises(SettingsError, match="unknown section 'engin'"):
        load(None, env={"FLOWATLAS_SETTINGS": str(conf)})
    conf.write_text("[store]\nretention_days = 1\n")
    with pytest.raises(SettingsError, match=r"store\.retention_days"):
        load(None, env={"FLOWATLAS_SETTINGS": str(conf)})
    with pytest.raises(SettingsError, match="no such file"):
        load(None, env={"FLOWATLAS_SETTINGS": str(tmp_path / "missing.toml")})
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(SettingsError, match=r"settings\.json"):
        load(tmp_path, env={})
    with pytest.raises(SettingsError, match=r"unknown setting 'engine\.thread'"):
        parse_assignments(["engine.thread=2"])


def test_settings_command_sets_shows_and_audits(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    runner = CliRunner()
    res = runner.invoke(cli, ["settings", "set", "--store", store, "engine.threads=2",
                              "store.retention_days=14"], env={"USER": "alice"})
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["settings", "show", "--store", store, "--format", "json"], env={})
    assert res.exit_code == 0, res.output
    shown = {r["setting"]: r for r in json.loads(res.output)}
    assert shown.keys() == {s.name for s in schema()}
    assert shown["engine.threads"]["value"] == "2"
    assert shown["store.retention_days"]["value"] == "14"
    assert shown["service.port"] == {"setting": "service.port", "value": "8080",
                                     "default": "8080", "source": "default"}
    assert FlowStore(store).retention_days == 14
    # The old command still shows and changes the store's settings.
    res = runner.invoke(cli, ["store", "settings", "--store", store, "--format", "json"])
    assert {r["setting"]: r["value"] for r in json.loads(res.output)}["retention_days"] == "14"
    entries = list(AuditLog(ControlPlane.for_store(store), lambda: 0.0).entries())
    changes = [e for e in entries if e["route"] == "settings.set"]
    assert changes and changes[-1]["params"]["settings"] == {"engine.threads": 2,
                                                            "store.retention_days": 14}
    bad = runner.invoke(cli, ["settings", "set", "--store", store, "engine.threads=many"])
    assert bad.exit_code == 2
    assert "engine.threads = 'many' (from the command line): not a whole number" in bad.output
    assert load(store, env={}).settings.engine.threads == 2  # nothing changed
