"""``flowatlas enrich ADDR...`` and ``flowatlas enrich build|info``: who addresses belong to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from flowatlas.cli.common import InputError, format_option, render, user_errors

if TYPE_CHECKING:
    from flowatlas.formats import OutputFormat


class _AddressGroup(click.Group):
    """A group whose first argument, when it names no subcommand, is an address to look up
    (``flowatlas enrich 8.8.8.8`` beside ``flowatlas enrich build``)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and any(c in cmd_name for c in ".:"):
            return super().get_command(ctx, "lookup")
        return found

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and super().get_command(ctx, args[0]) is None and not args[0].startswith("-"):
            return "lookup", super().get_command(ctx, "lookup"), args
        return super().resolve_command(ctx, args)


@click.group("enrich", cls=_AddressGroup)
def enrich_group() -> None:
    """AS number, AS name and country of addresses (offline dataset; docs/enrichment.md)."""


@enrich_group.command("lookup")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--store", "store_path", envvar="FLOWATLAS_STORE", default=None,
              type=click.Path(file_okay=False),
              help="Also use the datasets loaded into this store (`enrich load`).")
@format_option
def lookup_cmd(addresses: tuple[str, ...], store_path: str | None, fmt: OutputFormat) -> None:
    """The identity of ADDRESSES (also `flowatlas enrich ADDR...`)."""
    import pyarrow as pa

    from flowatlas.addresses import AddressError, pack_many
    from flowatlas.enrich import DatasetError, enricher

    try:
        column = pack_many(list(addresses))
    except AddressError as exc:
        raise InputError(str(exc)) from None
    try:
        enrich = enricher(_store_root(store_path))
    except DatasetError as exc:
        raise InputError(str(exc)) from None
    ident = enrich.column(column).table()
    table = pa.Table.from_arrays([column, *ident.columns], names=["address", *ident.column_names])
    render(table, fmt, identity=False)
    if fmt.name == "table":
        click.echo(enrich.footer())


def _store_root(store_path: str | None) -> str | None:
    from pathlib import Path

    if store_path is None or not (Path(store_path) / "store.json").exists():
        return None
    return store_path


@enrich_group.command("build")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where to write the dataset (default: the environment's enrichment directory).")
@click.option("--if-changed", is_flag=True,
              help="Do nothing when OUT already holds the dataset of SOURCE's versions.")
@user_errors(ValueError)
def build_cmd(source: str, out: str | None, if_changed: bool) -> None:
    """Convert the ip-location-db npm packages in SOURCE into the default dataset (set-up runs
    this; see docs/enrichment.md)."""
    from flowatlas.enrich.dataset import build_ip_location_db, default_dir, is_current

    target = out or str(default_dir())
    if if_changed and is_current(source, target):
        click.echo(f"enrichment dataset in {target} is current")
        return
    info = build_ip_location_db(source, target)
    ranges = ", ".join(f"{k}: {v:,}" for k, v in info.ranges.items())
    click.echo(f"built {info.source} {info.version} ({info.date}) in {target} ({ranges} ranges)")


@enrich_group.command("info")
@click.option("--store", "store_path", envvar="FLOWATLAS_STORE", default=None,
              type=click.Path(file_okay=False),
              help="Also list the datasets loaded into this store.")
@format_option
@user_errors(ValueError)
def info_cmd(store_path: str | None, fmt: OutputFormat) -> None:
    """The datasets enrichment answers from, in order: source, version, date, licence."""
    import pyarrow as pa

    from flowatlas.enrich import enricher

    enrich = enricher(_store_root(store_path))
    rows: list[dict[str, Any]] = [{
        "source": d.info.source, "version": d.info.version, "date": d.info.date,
        "licence": d.info.licence, "ranges": sum(d.info.ranges.values()), "path": str(d.root),
    } for d in enrich.datasets]
    if not rows:
        raise InputError("no enrichment dataset installed (run scripts/env.sh)")
    render(pa.Table.from_pylist(rows), fmt)


@enrich_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", "store_path", envvar="FLOWATLAS_STORE", default="flowatlas-store",
              show_default=True, type=click.Path(file_okay=False), help="Path of the flow store.")
@click.option("--name", help="Name of the dataset in the store (default: the file's database type).")
@user_errors(ValueError, RuntimeError)
def load_cmd(file: str, store_path: str, name: str | None) -> None:
    """Load a MaxMind-format database (.mmdb: GeoLite2, DB-IP, IPinfo) into the store: its
    answers come before the default dataset's, field by field."""
    from flowatlas.enrich.mmdb import load_into_store
    from flowatlas.store import FlowStore

    store = FlowStore(store_path, create=False)  # a mistyped path is an error, not a store
    loaded, info = load_into_store(file, store.root, name)
    provides = ", ".join(_provides(store.root, loaded))
    click.echo(f"loaded {info.source} ({info.date}) as {loaded!r}: {sum(info.ranges.values()):,} "
               f"networks ({provides}) into {store.root}")


def _provides(root: object, name: str) -> list[str]:
    from pathlib import Path

    from flowatlas.enrich import Dataset
    from flowatlas.enrich.lookup import STORE_DIR

    return [f for layer in Dataset.load(Path(str(root)) / STORE_DIR / name).layers
            for f in layer.provides]


@enrich_group.command("unload")
@click.argument("name")
@click.option("--store", "store_path", envvar="FLOWATLAS_STORE", default="flowatlas-store",
              show_default=True, type=click.Path(file_okay=False), help="Path of the flow store.")
@user_errors(ValueError, RuntimeError)
def unload_cmd(name: str, store_path: str) -> None:
    """Remove a dataset `enrich load` put into the store (the default dataset stays)."""
    from flowatlas.enrich.mmdb import remove_from_store
    from flowatlas.store import FlowStore

    store = FlowStore(store_path, create=False)
    remove_from_store(store.root, name)
    click.echo(f"removed dataset {name!r} from {store.root}")


COMMANDS = [enrich_group]
