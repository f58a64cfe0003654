"""What the v9 and IPFIX message parsers produce: header facts, templates and data sets."""

from __future__ import annotations

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
