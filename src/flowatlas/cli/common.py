"""Options, rendering and error handling shared by every CLI command."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import click

# Everything else is imported where it is used: the CLI's entry point imports this module, and
# ``flowatlas --version`` must not pay for pyarrow (see cli/main.py).
if TYPE_CHECKING:
    import pyarrow as pa

    from flowatlas.enrich import Enricher
    from flowatlas.formats import OutputFormat
    from flowatlas.query.window import Window

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """Bad input from the user: printed as one line, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"flowatlas: error: {self.format_message()}", err=True)


def store_option(f: F) -> F:
    return click.option(
        "--store", "store_path", envvar="FLOWATLAS_STORE", default="flowatlas-store",
        show_default=True, show_envvar=True, type=click.Path(file_okay=False),
        help="Path of the flow store.",
    )(f)


_WINDOW_META = "flowatlas.window"


def _keep(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # -t and --tz reach window_from through the context, so every command taking
    # window_options gets them without a parameter of its own.
    ctx.meta.setdefault(_WINDOW_META, {})[param.name] = value


def window_options(f: F) -> F:
    f = click.option("--tz", expose_value=False, callback=_keep,
                     help="Zone for times written without one (and for display): an IANA name "
                          "such as Europe/Berlin, or +02:00. Default UTC.")(f)
    f = click.option("-t", "--time-window", "time_window", expose_value=False, callback=_keep,
                     help="nfdump's window START[-END], e.g. 2026/11/30.05:00-2026/11/30.06:00, "
                          "2026/11/30, today, yesterday: flows starting at or after START and "
                          "ending by END.")(f)
    f = click.option("--until", help="End of the window (ISO time, or 7d/12h/30m back from now).")(f)
    f = click.option("--since", help="Start of the window (ISO time, today, yesterday, or "
                                     "7d/12h/30m back from now).")(f)
    return f


def _window_meta() -> dict[str, str | None]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_WINDOW_META, {}) if ctx is not None else {}


def format_option(f: F) -> F:
    """``-o``/``--format`` for commands that print tables (see :func:`output_option`)."""
    return output_option()(f)


def output_option(*, flows: bool = False, extra: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``-o``/``--format``: the output format, as nfdump's ``-o`` (order is ``-s FIELD/ORDER``).

    ``flows`` commands also take nfdump's ``line``, ``long``, ``extended`` and ``fmt:...``;
    ``extra`` names formats a command writes itself (``graph -o graphml``).
    """

    def convert(ctx: click.Context, param: click.Parameter, value: str) -> OutputFormat:
        from flowatlas.formats import OutputFormat, OutputFormatError, parse_format

        if value.strip().lower() in extra:
            return OutputFormat(value.strip().lower())
        try:
            return parse_format(value, flows=flows)
        except OutputFormatError as exc:
            raise InputError(str(exc)) from None

    choices = ", ".join([*("table, line, long, extended, fmt:<format>, csv, json, ndjson, "
                           "parquet, arrow" if flows else "table, csv, json, ndjson, parquet, "
                           "arrow").split(", "), *extra])

    def deco(fn: F) -> F:
        return click.option(
            "-o", "--format", "fmt", default="table", show_default=True, callback=convert,
            metavar="FORMAT", help=f"Output format (as nfdump -o): {choices}.",
        )(fn)

    return deco


def window_from(since: str | None, until: str | None) -> Window:
    """The window of --since/--until or -t (not both), times read in --tz."""
    from flowatlas.query.window import Window, parse_zone

    meta = _window_meta()
    try:
        tz = parse_zone(meta.get("tz"))
        nfdump = meta.get("time_window")
        if nfdump and (since or until):
            raise InputError("give either -t or --since/--until, not both")
        return Window.nfdump(nfdump, tz=tz) if nfdump else Window.parse(since, until, tz=tz)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def display_zone() -> str | None:
    """The --tz of the running command (None: UTC), checked by window_from."""
    from flowatlas.query.window import parse_zone, zone_name

    try:
        return zone_name(parse_zone(_window_meta().get("tz")))
    except ValueError as exc:
        raise InputError(str(exc)) from exc


_FOOTER_META = "flowatlas.enrichment_footer"


def command_enricher() -> Enricher:
    """The enricher of the running command: the datasets loaded into its ``--store`` (when
    there is a store there) over the default dataset."""
    from pathlib import Path

    from flowatlas.enrich import DatasetError, enricher

    ctx = click.get_current_context(silent=True)
    store = None
    while ctx is not None and store is None:
        path = ctx.params.get("store_path")
        if path and (Path(path) / "store.json").exists():
            store = path
        ctx = ctx.parent
    try:
        return enricher(store)
    except DatasetError as exc:
        raise InputError(str(exc)) from None


def identified(table: pa.Table, fmt: OutputFormat | None = None) -> pa.Table:
    """``table`` with the AS number, AS name and country of its addresses (formats/identity.py),
    from the datasets of the running command's ``--store`` and the default one. Under a
    terminal table the command ends with one line naming the data (once per command)."""
    from flowatlas.formats.identity import identity_columns, with_identity

    if not identity_columns(table):
        return table
    enrich = command_enricher()
    ctx = click.get_current_context(silent=True)
    out = with_identity(table, enrich)
    if (ctx is not None and enrich.datasets and fmt is not None and fmt.name == "table"
            and not ctx.meta.get(_FOOTER_META)):
        ctx.meta[_FOOTER_META] = True
        footer = enrich.footer()
        ctx.call_on_close(lambda: click.echo(footer))
    return out


def write_out(batches: Iterable[pa.RecordBatch | pa.Table], fmt: OutputFormat, *,
              schema: pa.Schema | None = None, header: bool = True, identity: bool = True) -> int:
    """Stream batches to stdout in a bulk format or an nfdump layout, times in the --tz zone,
    addresses with their identity (``identity``); returns rows written."""
    import pyarrow as pa

    from flowatlas.formats import in_zone, open_output

    if identity and not fmt.is_layout:
        batches = (identified(b if isinstance(b, pa.Table) else pa.Table.from_batches([b]), fmt)
                   for b in batches)
        if schema is not None:
            schema = identified(schema.empty_table(), fmt).schema

    if fmt.binary and sys.stdout.isatty():
        raise InputError(f"-o {fmt.name} writes binary data: redirect it to a file or a pipe")
    zone = display_zone()
    sys.stdout.flush()
    out: BinaryIO = sys.stdout.buffer
    writer = open_output(fmt, out, header=header,
                         schema=None if schema is None else in_zone(schema.empty_table(),
                                                                     zone).schema)
    for batch in batches:
        writer.write(in_zone(batch, zone))
    writer.close()
    out.flush()
    return writer.rows


def render(table: pa.Table, fmt: OutputFormat | str, title: str | None = None, *,
           identity: bool = True) -> None:
    """Print a result table in the chosen format (``table``: a terminal table with a title),
    times in the --tz zone, addresses with their AS number, AS name and country (``identity``,
    see :func:`identified`)."""
    from flowatlas.formats import in_zone, parse_format

    if isinstance(fmt, str):
        fmt = parse_format(fmt)
    if identity:
        table = identified(table, fmt)
    table = in_zone(table, display_zone())
    if fmt.name == "table":
        from flowatlas.formats import display

        columns, rows, right = display(table)
        render_cells(columns, rows, right, title, empty=table.num_rows == 0)
    else:
        write_out([table], fmt, schema=table.schema, identity=False)


def render_rich(records: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """Loose rows (control-plane listings) as a terminal table."""
    from flowatlas.formats.text import display_value

    rows = [[display_value(c, r.get(c)) for c in columns] for r in records]
    right = [bool(records) and isinstance(records[0].get(c), (int, float))
             and not isinstance(records[0].get(c), bool) for c in columns]
    render_cells(columns, rows, right, title, empty=not records)


def render_cells(columns: list[str], rows: list[list[str]], right: list[bool],
                 title: str | None = None, *, empty: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    # Off a terminal rich would assume 80 columns and squeeze flows past reading.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    out = Table(title=title, show_lines=False, header_style="bold")
    for i, name in enumerate(columns):
        # Prose (an explanation, not an address or time) wraps, so the short columns beside it
        # keep their full width instead of all being cut to fit.
        prose = any(" " in r[i] and len(r[i]) > 40 for r in rows[:50])
        out.add_column(name, justify="right" if right[i] else "left", no_wrap=not prose,
                       min_width=len(name) if not prose else None)
    for row in rows:
        out.add_row(*row)
    console.print(out)
    if empty:
        console.print("[dim]no matching flows[/dim]")


def run_cli(group: click.Group) -> int:
    """Run the group; user errors (ours or click's) print one line and exit 2."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        if isinstance(exc, InputError):
            exc.show()
            return 2
        click.echo(f"flowatlas: error: {exc.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return 0


def user_errors(*types: type[BaseException]) -> Callable[[F], F]:
    """Turn the given exception types raised by the core into one-line exit-2 errors."""

    def deco(f: F) -> F:
        import functools

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return f(*args, **kwargs)
            except types as exc:
                raise InputError(str(exc)) from exc

        return wrapper  # type: ignore[return-value]

    return deco


def as_flags(message: str, flags: Mapping[str, str]) -> str:
    """A library message that starts with a parameter (``seed=-1: must be >= 0``, ``scenarios:
    ...``) as the user typed it on the command line (``--seed -1: must be >= 0``).

    The library names its parameters; only the command knows which flag fed which, so it
    passes ``flags`` (parameter -> flag). Other messages come back unchanged.
    """
    m = _LEADING_PARAMETER.match(message)
    if m is None or m[1] not in flags:
        return message
    return flags[m[1]] + (" " if m[2] == "=" else ":") + message[m.end():]


_LEADING_PARAMETER = re.compile(r"([a-z][a-z0-9_]*)([=:])")


def eprint(message: str) -> None:
    print(message, file=sys.stderr)
