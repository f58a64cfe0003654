"""Writing simulated flows as CSV or NDJSON files, streamed batch by batch."""

from __future__ import annotations

import os
from typing import IO

import pyarrow as pa

from flowatlas.formats.bulk import iter_csv, iter_ndjson


class TextSink:
    """CSV (with a header) or NDJSON, rendered like every other flowatlas output."""

    def __init__(self, path: str | os.PathLike[str], fmt: str) -> None:
        if fmt not in ("csv", "ndjson"):
            raise ValueError(f"format {fmt!r}: use csv or ndjson")
        self.fmt = fmt
        self._fh: IO[str] = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._first = True

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        chunks = (iter_csv([table], header=self._first) if self.fmt == "csv"
                  else iter_ndjson([table]))
        for chunk in chunks:
            self._fh.write(chunk)
        self._first = False

    def close(self) -> None:
        self._fh.close()
