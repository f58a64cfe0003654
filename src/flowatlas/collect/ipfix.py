"""IPFIX (RFC 7011) message structure: header, template, options template and data sets.

Enterprise-specific fields carry a 4-byte PEN after the id and are kept in the template so that
the record decoder skips them by length. Records are decoded by
:mod:`flowatlas.collect.records`, shared with NetFlow v9.
"""

from __future__ import annotations

import struct

from flowatlas.collect.message import Message, MessageError, TemplateParser, walk_sets
from flowatlas.collect.templates import Field, Template
from flowatlas.protocols.elements import ENTERPRISE_BIT

HEADER = struct.Struct("!HHIII")
MAX_FIELDS = 512


def parse(data: bytes) -> Message:
    if len(data) < HEADER.size:
        raise MessageError("truncated_header")
    _, length, export_secs, seq, domain = HEADER.unpack_from(data)
    if length < HEADER.size or length > len(data):
        raise MessageError("bad_message_length", f"{length} for a {len(data)}-byte datagram")
    msg = Message(10, domain, seq, export_secs * 1_000_000, None)
    return walk_sets(data, HEADER.size, length, msg, _TEMPLATE_SETS)


def _templates(data: bytes, pos: int, end: int, msg: Message, options: bool) -> None:
    header = 6 if options else 4
    while end - pos >= header:
        tid, count = struct.unpack_from("!HH", data, pos)
        scope = struct.unpack_from("!H", data, pos + 4)[0] if options else 0
        pos += header if count else 4  # a withdrawal has no scope count
        if count == 0:
            if tid in (2, 3):
                msg.withdraw_all = True
            elif tid >= 256:
                msg.withdrawn.append(tid)
            else:
                return  # padding
            continue
        if tid < 256 or count > MAX_FIELDS or (options and not 0 < scope <= count):
            raise MessageError("bad_template", f"template {tid} with {count} fields")
        fields: list[Field] = []
        for _ in range(count):
            if pos + 4 > end:
                raise MessageError("truncated_template", f"template {tid}")
            element, length = struct.unpack_from("!HH", data, pos)
            pos += 4
            pen = 0
            if element & ENTERPRISE_BIT:
                if pos + 4 > end:
                    raise MessageError("truncated_template", f"template {tid}")
                pen = struct.unpack_from("!I", data, pos)[0]
                element &= ~ENTERPRISE_BIT
                pos += 4
            fields.append(Field(element, length, pen))
        msg.templates.append(Template(tid, tuple(fields), scope))


def _plain_templates(data: bytes, pos: int, end: int, msg: Message) -> None:
    _templates(data, pos, end, msg, options=False)


def _options_templates(data: bytes, pos: int, end: int, msg: Message) -> None:
    _templates(data, pos, end, msg, options=True)


_TEMPLATE_SETS: dict[int, TemplateParser] = {2: _plain_templates, 3: _options_templates}


def template_set(payload: bytes, set_id: int, msg: Message) -> None:
    """Parse one template (2) or options template (3) set body into ``msg``."""
    _TEMPLATE_SETS[set_id](payload, 0, len(payload), msg)
