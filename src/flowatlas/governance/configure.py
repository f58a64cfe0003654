"""Changing the settings kept with a store, audited like every other control-plane change."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flowatlas.governance.changes import Actor, ChangeLog
from flowatlas.governance.controlplane import ControlPlane
from flowatlas.settings import load, save
from flowatlas.store import FlowStore


def set_settings(store_root: str | os.PathLike[str], values: Mapping[str, Any],
                 actor: Actor | None = None, *, create: bool = True) -> dict[str, Any]:
    """Keep typed ``values`` (``{"engine.threads": 2}``) with the store: the ``store`` section in
    ``store.json`` (through FlowStore, which validates and owns it), the others in
    ``settings.json``. Returns what changed; a change is audited as ``settings.set`` with the
    values before and after."""
    before = load(store_root, env={}).settings  # what is kept, without this process's env
    changed = {k: v for k, v in values.items() if before.get(k) != v}
    store = FlowStore(store_root, create=create,
                      retention_days=values.get("store.retention_days"),
                      ingest_compression=values.get("store.ingest_compression"))
    save(store.root, {k: v for k, v in values.items() if not k.startswith("store.")})
    if changed:
        ChangeLog(ControlPlane.for_store(store.root), actor).record(
            "settings.set", settings=changed, before={k: before.get(k) for k in changed})
    return changed
