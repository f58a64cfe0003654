"""``flowatlas serve`` and the control-plane commands: tenants, keys, audit, optout, classes,
settings."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import click
import pyarrow as pa

from flowatlas.cli.common import (
    InputError,
    format_option,
    render,
    render_rich,
    store_option,
    user_errors,
)
from flowatlas.governance.audit import AuditLog
from flowatlas.governance.changes import Actor
from flowatlas.governance.classes import ClassError, PrefixClasses
from flowatlas.governance.controlplane import ControlPlane, ControlPlaneError
from flowatlas.governance.keys import ApiKeyError, KeyRing
from flowatlas.governance.optout import OptOutError, OptOuts
from flowatlas.governance.tenants import (
    Quotas,
    Role,
    TenantError,
    TenantRegistry,
    parse_quota_assignments,
)
from flowatlas.ranges import NetClassError, read_rows
from flowatlas.settings import SettingsError
from flowatlas.store import StoreError

_ERRORS = (TenantError, ApiKeyError, OptOutError, ClassError)


def _control(store_path: str) -> ControlPlane:
    """The control plane of an existing store: a mistyped --store is an error, never a new
    empty store (serve --demo and `settings set` create the store before they get here)."""
    try:
        return ControlPlane.for_store(store_path, create=False)
    except ControlPlaneError as exc:
        raise InputError(str(exc)) from exc


# Changes made here are audited by the registries themselves, as made by ``cli:<login name>``.
CLI = Actor.cli


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# -- serve ------------------------------------------------------------------------------------


@click.command("serve")
@store_option
@click.option("--host", help="Address to listen on (setting service.host, default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="TCP port (setting service.port, default 8080).")
@click.option(
    "--demo",
    is_flag=True,
    help="Create a 'demo' admin tenant if missing and print a fresh key for it.",
)
@click.option(
    "--collect",
    "collect",
    multiple=True,
    metavar="HOST:PORT",
    help="Also run the flow collector on this UDP endpoint (repeatable).",
)
@click.option(
    "--retention-every",
    type=click.FloatRange(min=0.1),
    help="Seconds between maintenance runs: retention, and compaction of the days that are "
    "due (see `store compact --due`); setting service.maintenance_seconds, default 3600.",
)
@user_errors(*_ERRORS, SettingsError)
def serve(
    store_path: str,
    host: str | None,
    port: int | None,
    demo: bool,
    collect: tuple[str, ...],
    retention_every: float | None,
) -> None:
    """Run the HTTP API (and the collector) over one store."""
    import uvicorn

    from flowatlas.api.app import create_app
    from flowatlas.service import Service, ServiceError
    from flowatlas.settings import load

    settings = load(store_path).settings
    if retention_every is not None:
        settings = settings.with_values({"service.maintenance_seconds": retention_every})
    host = settings.service.host if host is None else host
    port = settings.service.port if port is None else port
    try:
        service = Service(store_path, settings=settings, create=demo, collect=collect)
    except StoreError as exc:
        raise InputError(
            f"{exc} (create one with 'flowatlas serve --demo', 'flowatlas collect' or "
            "'flowatlas import --create')"
        ) from exc
    except ServiceError as exc:
        raise InputError(f"--{exc}") from exc
    try:
        if demo:
            _demo_key(service.control)
        service.start()
    except ServiceError as exc:
        service.stop()
        raise InputError(f"--{exc}") from exc
    click.echo(f"flowatlas: serving {store_path} on http://{host}:{port} "
               "(OpenAPI at /openapi.json)", err=True)
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        service.stop()


def _demo_key(control: ControlPlane) -> None:
    tenants = TenantRegistry(control, CLI())
    if not any(t.name == "demo" for t in tenants.list()):
        tenants.add("demo", "admin")
    key_id, key = KeyRing(control, CLI()).create("demo")
    click.echo(f"demo admin key (shown once, id {key_id}): {key}", err=True)


# -- tenants ----------------------------------------------------------------------------------


@click.group("tenants")
def tenants() -> None:
    """Tenants of the service: roles, enterprise prefixes, quotas."""


@tenants.command("add")
@store_option
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--prefix", "prefixes", multiple=True, help="Enterprise scope prefix (repeatable).")
@click.option("--can-reveal", is_flag=True, help="May reveal pseudonymised addresses (audited).")
@click.option(
    "--quota",
    "quotas",
    multiple=True,
    metavar="NAME=VALUE",
    help=f"Quota override (repeatable): {', '.join(Quotas.names())}.",
)
@user_errors(*_ERRORS)
def tenants_add(
    store_path: str,
    name: str,
    role: str,
    prefixes: tuple[str, ...],
    can_reveal: bool,
    quotas: tuple[str, ...],
) -> None:
    """Register a tenant."""
    t = TenantRegistry(_control(store_path), CLI()).add(
        name, role, prefixes, can_reveal=can_reveal, quotas=parse_quota_assignments(quotas)
    )
    click.echo(
        f"tenant {t.name} added ({t.role.value}); create a key with "
        f"'flowatlas keys create --tenant {t.name}'"
    )


def _number(value: float) -> str:
    """A quota as typed: 5, not 5.0 (overrides are stored as floats); 2.5 stays 2.5."""
    return str(int(value)) if float(value).is_integer() else str(value)


@tenants.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True)
def tenants_list(store_path: str, as_json: bool) -> None:
    """List tenants."""
    rows = [
        {
            "name": t.name,
            "role": t.role.value,
            "prefixes": " ".join(p.text for p in t.prefixes),
            "can_reveal": t.can_reveal,
            "disabled": t.disabled,
            # Typed values (max_hops=5, not 5.0): the overrides are stored as floats.
            "quotas": " ".join(f"{k}={_number(getattr(t.quotas, k))}"
                               for k in sorted(t.quota_overrides)) or "defaults",
            "created": _when(t.created_at),
        }
        for t in TenantRegistry(_control(store_path)).list()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        render_rich(
            rows,
            ["name", "role", "prefixes", "can_reveal", "disabled", "quotas", "created"],
            "tenants",
        )


@tenants.command("disable")
@store_option
@click.argument("name")
@user_errors(*_ERRORS)
def tenants_disable(store_path: str, name: str) -> None:
    """Disable a tenant: its keys stop working at once."""
    _set_disabled(store_path, name, True)


@tenants.command("enable")
@store_option
@click.argument("name")
@user_errors(*_ERRORS)
def tenants_enable(store_path: str, name: str) -> None:
    """Enable a disabled tenant again."""
    _set_disabled(store_path, name, False)


def _set_disabled(store_path: str, name: str, disabled: bool) -> None:
    TenantRegistry(_control(store_path), CLI()).set_disabled(name, disabled)
    verb = "disable" if disabled else "enable"
    click.echo(f"tenant {name} {verb}d")


@tenants.command("quota")
@store_option
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True)
@user_errors(*_ERRORS)
def tenants_quota(store_path: str, name: str, assignments: tuple[str, ...]) -> None:
    """Change quotas: flowatlas tenants quota NAME rows_per_day=5000 max_hops=1"""
    t = TenantRegistry(_control(store_path), CLI()).set_quotas(
        name, parse_quota_assignments(assignments))
    click.echo(json.dumps({"tenant": t.name, "quotas": t.quotas.__dict__}, indent=1))


# -- keys -------------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """API keys: random, shown once, stored as hashes."""


@keys.command("create")
@store_option
@click.option("--tenant", required=True)
@user_errors(*_ERRORS)
def keys_create(store_path: str, tenant: str) -> None:
    """Create a key for a tenant and print it once (stdout: the key only)."""
    key_id, key = KeyRing(_control(store_path), CLI()).create(tenant)
    click.echo(f"key id {key_id} for tenant {tenant}; it is shown only now:", err=True)
    click.echo(key)


@keys.command("revoke")
@store_option
@click.argument("key_id")
@user_errors(*_ERRORS)
def keys_revoke(store_path: str, key_id: str) -> None:
    """Revoke a key by its id (the part after 'fa_')."""
    KeyRing(_control(store_path), CLI()).revoke(key_id)
    click.echo(f"key {key_id} revoked")


@keys.command("list")
@store_option
@click.option("--tenant")
def keys_list(store_path: str, tenant: str | None) -> None:
    """List key ids (never the keys)."""
    rows = [
        {
            "key_id": k.key_id,
            "tenant": k.tenant,
            "created": _when(k.created_at),
            "revoked": _when(k.revoked_at),
        }
        for k in KeyRing(_control(store_path)).list(tenant)
    ]
    render_rich(rows, ["key_id", "tenant", "created", "revoked"], "keys")


# -- audit ------------------------------------------------------------------------------------


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log."""


def _parse_head(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise InputError(f"--expect-head {text!r}: use SEQ:HASH as 'flowatlas audit head' prints")
    return int(seq), digest.lower()


@audit.command("verify")
@store_option
@click.option("--expect-head", help="SEQ:HASH published earlier (detects a rewritten log).")
def audit_verify(store_path: str, expect_head: str | None) -> None:
    """Recompute the hash chain; exit 1 and list the problems if anything was altered."""
    v = AuditLog(_control(store_path), time.time).verify(_parse_head(expect_head))
    if v.ok:
        click.echo(f"audit log intact: {v.entries} entries, head {v.head_seq}:{v.head_hash}")
        return
    for problem in v.problems:
        click.echo(f"TAMPERED: {problem}", err=True)
    raise SystemExit(1)


@audit.command("head")
@store_option
def audit_head(store_path: str) -> None:
    """Print SEQ:HASH of the newest entry (publish it; verify against it later)."""
    seq, digest = AuditLog(_control(store_path), time.time).head()
    click.echo(f"{seq}:{digest}")


@audit.command("report")
@store_option
@click.option("--json", "as_json", is_flag=True)
def audit_report(store_path: str, as_json: bool) -> None:
    """Transparency summary per tenant and per data source."""
    report = AuditLog(_control(store_path), time.time).report()
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    render_rich(
        [
            {
                "tenant": name,
                "requests": t["requests"],
                "rows": t["rows"],
                "refused": sum(v for k, v in t["outcomes"].items() if k != "ok"),
                "reveals": t["reveals"],
                "purposes": len(t["purposes"]),
                "routes": ", ".join(f"{k}:{v}" for k, v in sorted(t["routes"].items())),
            }
            for name, t in report["tenants"].items()
        ],
        ["tenant", "requests", "rows", "refused", "reveals", "purposes", "routes"],
        "per tenant",
    )
    if not report["sources"]:
        return
    render_rich(
        [
            {
                "source": src,
                "rows": s["rows"],
                "tenants": ", ".join(f"{k}:{v}" for k, v in sorted(s["tenants"].items())),
            }
            for src, s in report["sources"].items()
        ],
        ["source", "rows", "tenants"],
        "rows disclosed per source",
    )


@audit.command("show")
@store_option
@click.option("--after", default=0, show_default=True, type=int)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, None))
def audit_show(store_path: str, after: int, limit: int) -> None:
    """Print entries as NDJSON."""
    for entry in AuditLog(_control(store_path), time.time).entries(after, limit):
        click.echo(json.dumps(entry, sort_keys=True))


# -- opt-outs and prefix classes --------------------------------------------------------------


@click.group("optout")
def optout() -> None:
    """Opt-outs: prefixes/ASNs dropped at ingest and purged from history (audited)."""


@optout.command("add")
@store_option
@click.argument("target")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@user_errors(*_ERRORS)
def optout_add(store_path: str, target: str, reason: str) -> None:
    """Opt out a prefix, address or AS<number>, and purge its stored flows."""
    from flowatlas.store import FlowStore, StoreError

    control = _control(store_path)
    try:
        store: FlowStore | None = FlowStore(store_path, create=False)
    except StoreError:
        store = None
    purged = OptOuts(control, actor=CLI()).add(target, reason, store)
    click.echo(f"opted out {target}; {purged} stored flows purged")


@optout.command("remove")
@store_option
@click.argument("target")
@user_errors(*_ERRORS)
def optout_remove(store_path: str, target: str) -> None:
    """Remove an opt-out (purged flows stay gone)."""
    if not OptOuts(_control(store_path), actor=CLI()).remove(target):
        raise InputError(f"no opt-out {target!r}")
    click.echo(f"opt-out {target} removed")


@optout.command("list")
@store_option
def optout_list(store_path: str) -> None:
    """List opt-outs."""
    rows = [
        {"kind": k, "value": v, "reason": r, "added": _when(t)}
        for k, v, r, t in OptOuts(_control(store_path)).list()
    ]
    render_rich(rows, ["kind", "value", "reason", "added"], "opt-outs")


@click.group("classes")
def classes() -> None:
    """The prefix-class table: residential/eyeball space is pseudonymised for tenants."""


@classes.command("set")
@store_option
@click.argument("prefix")
@click.argument("cls", metavar="CLASS")
@user_errors(*_ERRORS)
def classes_set(store_path: str, prefix: str, cls: str) -> None:
    """Set a prefix's class (residential and eyeball are pseudonymised)."""
    p = PrefixClasses(_control(store_path), CLI()).set(prefix, cls)
    click.echo(f"{p.text} is {cls}")


@classes.command("import")
@store_option
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@user_errors(*_ERRORS, NetClassError)
def classes_import(store_path: str, path: str) -> None:
    """Set classes from a CSV of prefix,class[,asn] (e.g. the simulator's *.prefixes.csv)."""
    rows = read_rows(path)
    count = PrefixClasses(_control(store_path), CLI()).set_many(rows, source=path)
    click.echo(f"{count} prefix classes set from {path}")


@classes.command("remove")
@store_option
@click.argument("prefix")
@user_errors(*_ERRORS)
def classes_remove(store_path: str, prefix: str) -> None:
    if not PrefixClasses(_control(store_path), CLI()).remove(prefix):
        raise InputError(f"no class for {prefix}")
    click.echo(f"{prefix} removed")


@classes.command("list")
@store_option
def classes_list(store_path: str) -> None:
    rows = [{"prefix": p, "class": c} for p, c in PrefixClasses(_control(store_path)).list()]
    render_rich(rows, ["prefix", "class"], "prefix classes")


# -- settings ---------------------------------------------------------------------------------


@click.group("settings")
def settings_group() -> None:
    """Every component's settings (store, collector, engine, service); see docs/settings.md."""


def _settings_table(store_path: str) -> pa.Table:
    from flowatlas.settings import load

    loaded = load(store_path)
    rows = list(loaded.rows())
    return pa.table({
        "setting": [s.name for s, _, _ in rows],
        "value": [str(v) for _, v, _ in rows],
        "default": [str(s.default) for s, _, _ in rows],
        "source": [origin for _, _, origin in rows],
    })


@settings_group.command("show")
@store_option
@format_option
@user_errors(SettingsError)
def settings_show(store_path: str, fmt: str) -> None:
    """The effective value of every setting and where it came from."""
    render(_settings_table(store_path), fmt, title=f"settings of {store_path}")


@settings_group.command("set")
@store_option
@click.argument("assignments", nargs=-1, required=True, metavar="SECTION.NAME=VALUE...")
@user_errors(SettingsError, StoreError)
def settings_set(store_path: str, assignments: tuple[str, ...]) -> None:
    """Keep settings with the store (audited): flowatlas settings set engine.threads=2"""
    from flowatlas.governance.configure import set_settings
    from flowatlas.settings import parse_assignments

    values = parse_assignments(assignments)
    set_settings(store_path, values, CLI())
    for name, value in values.items():
        click.echo(f"{name} = {value}")


COMMANDS: list[click.Command] = [serve, tenants, keys, audit, optout, classes, settings_group]
