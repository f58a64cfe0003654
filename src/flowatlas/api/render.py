"""Results to HTTP responses: JSON documents, or CSV/NDJSON/Parquet/Arrow streamed in chunks.

The bytes come from the same writers as the CLI's (:mod:`flowatlas.formats.bulk`).

Streaming exports run the engine in a thread of their own that owns its DuckDB cursor (a cursor
must stay on one thread, and a response iterator hops between pool threads); a small bounded
queue between that thread and the response keeps memory flat.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from fastapi.responses import JSONResponse, StreamingResponse

from flowatlas.formats import to_records
from flowatlas.formats.bulk import MEDIA, iter_bulk
from flowatlas.formats.identity import with_identity

if TYPE_CHECKING:
    from flowatlas.enrich import Enricher

_DONE = object()
_QUEUE_CHUNKS = 4


def enrichment_field(enrich: Enricher | None) -> dict[str, Any]:
    """The ``enrichment`` field of a JSON answer: the source, version and date of the data
    behind its ``*_asn``/``*_as_name``/``*_country`` fields (docs/enrichment.md)."""
    if enrich is None:
        return {"source": None, "version": None, "date": None}
    return enrich.field()


def enrichment_headers(headers: dict[str, str], enrich: Enricher | None) -> dict[str, str]:
    """``X-Flowatlas-Enrichment: SOURCE DATE`` for the streamed formats (no JSON field there)."""
    field = enrichment_field(enrich)
    if not field["source"]:
        return headers
    return {**headers, "X-Flowatlas-Enrichment": f"{field['source']} {field['date']}"}


def table_response(
    table: pa.Table, fmt: str, headers: dict[str, str], extra: dict[str, Any] | None = None,
    enrich: Enricher | None = None,
) -> JSONResponse | StreamingResponse:
    """One result; with ``enrich``, every address column gets its identity columns."""
    table = with_identity(table, enrich)
    if fmt == "json":
        body = {**(extra or {}), "count": table.num_rows, "rows": to_records(table)}
        if enrich is not None:
            body["enrichment"] = enrichment_field(enrich)
        return JSONResponse(body, headers=headers)
    chunks = iter_bulk([table], fmt, schema=table.schema)
    return StreamingResponse(chunks, media_type=MEDIA[fmt],
                             headers=enrichment_headers(headers, enrich))


def streamed(
    produce: Callable[[], Iterator[pa.Table]],
    fmt: str,
    headers: dict[str, str],
    finish: Callable[[str], None],
    enrich: Enricher | None = None,
) -> StreamingResponse:
    """Stream tables from ``produce`` (run on its own thread); ``finish(outcome)`` runs once;
    with ``enrich``, each table's addresses get their identity columns."""
    q: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        outcome = "ok"
        try:
            for chunk in iter_bulk((with_identity(t, enrich) for t in produce()), fmt):
                if not put(chunk):
                    outcome = "aborted:client-gone"
                    break
        except Exception as exc:  # reported in-band: headers are already sent
            outcome = "error:stream"
            if fmt in ("csv", "ndjson"):  # binary formats end truncated: their readers say so
                put((f"\n# error: {exc}\n" if fmt == "csv"
                     else f'{{"error": "{type(exc).__name__}"}}\n').encode())
        finally:
            finish(outcome)
            put(_DONE)

    def body() -> Iterator[bytes]:
        thread = threading.Thread(target=worker, name="flowatlas-export", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                assert isinstance(item, bytes)
                yield item
        finally:
            stop.set()

    return StreamingResponse(body(), media_type=MEDIA[fmt],
                             headers=enrichment_headers(headers, enrich))
