"""``flowatlas store stats|compact|retention|settings``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import pyarrow as pa

from flowatlas.cli.common import format_option, render, store_option, user_errors
from flowatlas.store import FlowStore, StoreError
from flowatlas.store.flowstore import INGEST_COMPRESSIONS

if TYPE_CHECKING:
    from flowatlas.formats import OutputFormat


def open_store(path: str, create: bool = False) -> FlowStore:
    return FlowStore(path, create=create)


@click.group("store")
def store_group() -> None:
    """Inspect and maintain the flow store."""


@store_group.command("create")
@store_option
@click.option("--retention-days", type=click.IntRange(min=1),
              help="Days of history to keep (default 90; see `store settings`).")
@user_errors(StoreError)
def create_cmd(store_path: str, retention_days: int | None) -> None:
    """Create an empty store (to register sources or tenants before any flow arrives).

    Only this, `simulate`, `collect`, `serve --demo`, `import --create` and changing settings
    create a store; every other command on a path without one fails naming the path."""
    from pathlib import Path

    existed = (Path(store_path) / "store.json").exists()
    store = FlowStore(store_path, create=True, retention_days=retention_days)
    click.echo(f"{'store already at' if existed else 'created store'} {store.root} "
               f"(retention {store.retention_days} days)")


@store_group.command("stats")
@store_option
@format_option
@user_errors(StoreError)
def stats_cmd(store_path: str, fmt: OutputFormat) -> None:
    """Days, files, rows and bytes on disk, per day and in total.

    ``bytes`` are the live files'; ``retired_bytes`` those of files replaced by compaction or
    a purge and still kept for readers of the previous manifest (gone once their grace period
    has passed and anything writes to, compacts or opens the store)."""
    st = open_store(store_path).stats()
    days = st.days
    table = pa.table({
        "day": [d.day.isoformat() for d in days] + ["total"],
        "rows": [d.rows for d in days] + [st.rows],
        "files": [d.files for d in days] + [st.files],
        "ingest_files": [d.ingest_files for d in days] + [sum(d.ingest_files for d in days)],
        "runs": [d.runs for d in days] + [sum(d.runs for d in days)],
        "bytes": [d.bytes for d in days] + [st.bytes],
        "bytes_per_flow": [round(d.bytes / d.rows, 1) if d.rows else 0.0 for d in days]
        + [round(st.bytes / st.rows, 1) if st.rows else 0.0],
        "retired_files": [d.retired_files for d in days] + [st.retired_files],
        "retired_bytes": [d.retired_bytes for d in days] + [st.retired_bytes],
    })
    render(table, fmt, title=f"store {store_path}")


@store_group.command("compact")
@store_option
@click.option("--due", is_flag=True,
              help="Only days that are due: fresh files of a full run (2M rows), or a day that "
                   "ended over an hour ago (what `serve` does on its schedule; for cron).")
@user_errors(StoreError)
def compact_cmd(store_path: str, due: bool) -> None:
    """Rewrite fresh files into endpoint-sorted runs for fast lookups."""
    store = open_store(store_path)
    report = store.compact_due() if due else store.compact()
    click.echo(
        f"compacted {report.files_in} files into {report.runs_out} runs over {report.days} days "
        f"({report.rows:,} rows) in {report.seconds:.1f}s"
    )


@store_group.command("retention")
@store_option
@click.option("--days", type=click.IntRange(min=1), help="Window to keep (default: the store's).")
@user_errors(StoreError)
def retention_cmd(store_path: str, days: int | None) -> None:
    """Delete whole days older than the retention window."""
    store = open_store(store_path)
    deleted = store.retention(days=days)
    window = days or store.retention_days
    click.echo(f"deleted {len(deleted)} days older than {window} days"
               + (f": {deleted[0]} .. {deleted[-1]}" if deleted else ""))


@store_group.command("settings")
@store_option
@click.option("--retention-days", type=click.IntRange(min=1),
              help="Days of history to keep (applied by `store retention` and `serve`).")
@click.option("--ingest-compression", type=click.Choice(INGEST_COMPRESSIONS),
              help="Codec of newly appended files: lz4 (default) or zstd keep them small; none "
                   "takes the least CPU per row and about 4x the disk until compaction.")
@format_option
@user_errors(StoreError)
def settings_cmd(store_path: str, retention_days: int | None, ingest_compression: str | None,
                 fmt: OutputFormat) -> None:
    """Show the store's settings; change those given (creating the store if need be)."""
    changing = {k: v for k, v in (("store.retention_days", retention_days),
                                  ("store.ingest_compression", ingest_compression))
                if v is not None}
    if changing:  # through governance, which audits the change
        from flowatlas.governance.changes import Actor
        from flowatlas.governance.configure import set_settings

        set_settings(store_path, changing, Actor.cli())
    store = FlowStore(store_path, create=False)
    render(pa.table({"setting": ["retention_days", "ingest_compression"],
                     "value": [str(store.retention_days), store.ingest_compression]}),
           fmt, title=f"store {store_path}")


COMMANDS = [store_group]
