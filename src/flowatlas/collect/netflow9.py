"""NetFlow v9 (RFC 3954) message structure: header, template and options template flowsets.

Records are decoded by :mod:`flowatlas.collect.records`, shared with IPFIX.
"""

from __future__ import annotations

import struct

from flowatlas.collect.message import Message, MessageError, TemplateParser, walk_sets
from flowatlas.collect.templates import V9_SCOPE_BASE, Field, Template

HEADER = struct.Struct("!HHIIII")
PAIR = struct.Struct("!HH")
MAX_FIELDS = 512


def parse(data: bytes) -> Message:
    if len(data) < HEADER.size:
        raise MessageError("truncated_header")
    _, _count, uptime, secs, seq, source_id = HEADER.unpack_from(data)
    msg = Message(9, source_id, seq, secs * 1_000_000, uptime)
    return walk_sets(data, HEADER.size, len(data), msg, _TEMPLATE_SETS)


def _templates(data: bytes, pos: int, end: int, msg: Message) -> None:
    while end - pos >= 4:
        tid, count = PAIR.unpack_from(data, pos)
        pos += 4
        if tid < 256 or count == 0 or count > MAX_FIELDS:
            if tid == 0 and count == 0:
                return  # padding
            raise MessageError("bad_template", f"template {tid} with {count} fields")
        if pos + 4 * count > end:
            raise MessageError("truncated_template", f"template {tid}")
        fields = tuple(Field(*PAIR.unpack_from(data, pos + 4 * i)) for i in range(count))
        pos += 4 * count
        msg.templates.append(Template(tid, fields))


def _options_templates(data: bytes, pos: int, end: int, msg: Message) -> None:
    while end - pos >= 6:
        tid, scope_len, option_len = struct.unpack_from("!HHH", data, pos)
        pos += 6
        if tid < 256:
            return  # padding
        if scope_len % 4 or option_len % 4 or pos + scope_len + option_len > end:
            raise MessageError("bad_options_template", f"template {tid}")
        scope = tuple(
            Field(V9_SCOPE_BASE + t, n)
            for t, n in (PAIR.unpack_from(data, pos + i) for i in range(0, scope_len, 4))
        )
        pos += scope_len
        options = tuple(Field(*PAIR.unpack_from(data, pos + i)) for i in range(0, option_len, 4))
        pos += option_len
        if not scope:
            raise MessageError("bad_options_template", f"template {tid} without scope")
        msg.templates.append(Template(tid, scope + options, len(scope)))


_TEMPLATE_SETS: dict[int, TemplateParser] = {0: _templates, 1: _options_templates}


def template_set(payload: bytes, set_id: int, msg: Message) -> None:
    """Parse one template (0) or options template (1) flowset body into ``msg``."""
    _TEMPLATE_SETS[set_id](payload, 0, len(payload), msg)
