"""Rendering results, once, for every front end.

* :mod:`flowatlas.formats.text`: addresses, times, protocols and pseudonym marks as text, and
  table cells for terminals.
* :mod:`flowatlas.formats.bulk`: CSV, NDJSON, JSON, Parquet and Arrow IPC writers that stream
  batch by batch (Arrow's vectorised writers).
* :mod:`flowatlas.formats.nfdump`: nfdump's ``line``/``long``/``extended``/``fmt:`` flow layouts.

:func:`parse_format` reads the ``-o``/``--format`` value the CLI takes (nfdump's meaning of
``-o``), and :func:`open_output` gives the writer for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowatlas.formats.text import (
    PSEUDONYM_MARK,
    PSEUDONYM_SUFFIX,
    display,
    in_zone,
    iso,
    readable,
    to_json,
    to_records,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from flowatlas.formats.bulk import Sink, Writer

TABLE = "table"
BULK = ("csv", "ndjson", "json", "parquet", "arrow")
FLOW_LAYOUTS = ("line", "long", "extended")
FORMATS = (TABLE, *BULK)
"""What any result can be written as."""
FLOW_FORMATS = (TABLE, *FLOW_LAYOUTS, *BULK)
"""What flow records can be written as (plus ``fmt:<format string>``)."""


class OutputFormatError(ValueError):
    """An ``-o`` value that names no output format."""


@dataclass(frozen=True)
class OutputFormat:
    name: str  # table, a bulk format, line/long/extended, or "fmt"
    template: str | None = None  # the layout's format string (line/long/extended/fmt)

    @property
    def binary(self) -> bool:
        return self.name in ("parquet", "arrow")

    @property
    def is_layout(self) -> bool:
        return self.template is not None


def parse_format(text: str, *, flows: bool = False) -> OutputFormat:
    """``table``, ``csv``, ``json``, ``ndjson``, ``parquet``, ``arrow``; for flows also nfdump's
    ``line``, ``long``, ``extended`` and ``fmt:%ts %sap -> %dap %byt``."""
    value = text.strip()
    low = value.lower()
    if low in FORMATS:
        return OutputFormat(low)
    if low in FLOW_LAYOUTS or low.startswith("fmt:"):
        if not flows:
            raise OutputFormatError(
                f"output format {value!r} lays out flow records; this command prints a table: "
                f"use one of {', '.join(FORMATS)}")
        from flowatlas.formats.nfdump import LAYOUTS, FormatError, Layout

        template = LAYOUTS[low] if low in FLOW_LAYOUTS else value[4:]
        try:
            Layout.parse(template)
        except FormatError as exc:
            raise OutputFormatError(str(exc)) from None
        return OutputFormat("fmt" if low.startswith("fmt:") else low, template)
    known = ", ".join(FLOW_FORMATS if flows else FORMATS) + (", fmt:<format>" if flows else "")
    hint = ("; -o selects the output format as in nfdump: give the order as -s FIELD/ORDER or "
            "--order" if low in ("flows", "packets", "bytes") else "")
    raise OutputFormatError(f"unknown output format {value!r}: use one of {known}{hint}")


def open_output(fmt: OutputFormat, sink: Sink, *, header: bool = True,
                schema: pa.Schema | None = None) -> Writer:
    """The streaming writer for a bulk format or an nfdump layout (not ``table``)."""
    if fmt.template is not None:
        from flowatlas.formats.nfdump import Layout, LayoutWriter

        return LayoutWriter(sink, Layout.parse(fmt.template), quiet=not header)
    from flowatlas.formats.bulk import open_writer

    return open_writer(fmt.name, sink, header=header, schema=schema)


__all__ = [
    "BULK",
    "FLOW_FORMATS",
    "FLOW_LAYOUTS",
    "FORMATS",
    "PSEUDONYM_MARK",
    "PSEUDONYM_SUFFIX",
    "OutputFormat",
    "OutputFormatError",
    "display",
    "in_zone",
    "iso",
    "open_output",
    "parse_format",
    "readable",
    "to_json",
    "to_records",
]
