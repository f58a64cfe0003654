"""What the v9 and IPFIX message parsers produce: header facts, templates and data sets."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from flowatlas.collect.templates import Template


class MessageError(ValueError):
    """A message that cannot be parsed past some point; ``reason`` is the counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class DataSet(NamedTuple):  # a NamedTuple: one is made per set, on the hot path
    template_id: int
    start: int
    end: int


@dataclass
class Message:
    version: int
    domain: int
    sequence: int
    export_us: int
    uptime_ms: int | None
    templates: list[Template] = field(default_factory=list)
    withdrawn: list[int] = field(default_factory=list)
    withdraw_all: bool = False
    data_sets: list[DataSet] = field(default_factory=list)
    error: MessageError | None = None
    """Set when parsing stopped early; what came before it is still good."""


SET_HEADER = struct.Struct("!HH")
TemplateParser = Callable[[bytes, int, int, "Message"], None]


def walk_sets(data: bytes, pos: int, end: int, msg: Message,
              template_sets: Mapping[int, TemplateParser]) -> Message:
    """Walk a v9 or IPFIX message's sets (the two share the layout; only template set ids
    differ): template sets go to their parser, data sets (id >= 256) are recorded, others
    are skipped by length. A malformed set stops the walk and is kept as ``msg.error``."""
    try:
        while end - pos >= SET_HEADER.size:
            set_id, set_len = SET_HEADER.unpack_from(data, pos)
            if set_len < SET_HEADER.size or pos + set_len > end:
                raise MessageError("bad_set_length", f"set {set_id} length {set_len}")
            body, set_end = pos + SET_HEADER.size, pos + set_len
            parser = template_sets.get(set_id)
            if parser is not None:
                parser(data, body, set_end, msg)
            elif set_id >= 256:
                msg.data_sets.append(DataSet(set_id, body, set_end))
            pos = set_end
    except MessageError as exc:
        msg.error = exc
    except struct.error as exc:
        msg.error = MessageError("truncated_set", str(exc))
    return msg
