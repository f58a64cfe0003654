"""Options, rendering and error handling shared by every CLI command."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

# Everything else is imported where it is used: the CLI's entry point imports this module, and
# ``flowatlas --version`` must not pay for pyarrow (see cli/main.py).
if TYPE_CHECKING:
    import pyarrow as pa

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
    from flowatlas.formats import FORMATS

    return click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
        help="Output format.",
    )(f)


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


def render(table: pa.Table, fmt: str, title: str | None = None) -> None:
    """Print a result table in the chosen format, times in the --tz zone."""
    from flowatlas.formats import in_zone, iter_csv, iter_ndjson, to_json, to_records

    table = in_zone(table, display_zone())
    if fmt == "csv":
        for chunk in iter_csv([table]):
            click.echo(chunk, nl=False)
    elif fmt == "ndjson":
        for chunk in iter_ndjson([table]):
            click.echo(chunk, nl=False)
    elif fmt == "json":
        click.echo(to_json(table))
    else:
        render_rich(to_records(table), table.column_names, title)


def render_rich(records: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    # Off a terminal rich would assume 80 columns and squeeze flows past reading.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    out = Table(title=title, show_lines=False, header_style="bold")
    for name in columns:
        numeric = records and isinstance(records[0].get(name), (int, float))
        # Prose (an explanation, not an address or time) wraps, so the short columns beside it
        # keep their full width instead of all being cut to fit.
        prose = any(isinstance(r.get(name), str) and " " in r[name] and len(r[name]) > 40
                    for r in records[:50])
        out.add_column(name, justify="right" if numeric else "left", no_wrap=not prose,
                       min_width=len(name) if not prose else None)
    for rec in records:
        out.add_row(*("" if rec[c] is None else _fmt_cell(rec[c]) for c in columns))
    console.print(out)
    if not records:
        console.print("[dim]no matching flows[/dim]")


def _fmt_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


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
