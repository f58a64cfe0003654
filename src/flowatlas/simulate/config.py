"""Simulation settings, the ``--scenarios`` mini-language, and seeded random streams."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

US = 1_000_000
MS = 1_000
DAY_US = 86_400 * US


class ConfigError(ValueError):
    """A simulation option that is out of range or cannot be read."""


@dataclass(frozen=True)
class ScenarioConfig:
    """How many of each planted investigation, and their main knobs."""

    c2: int = 2
    victims: int = 12
    relays: int = 4
    max_hops: int = 16
    cover: int = 3
    enterprise: int = 1
    talkers: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"scenario {f.name}={value!r}: must be a whole number >= 0")
        if not 1 <= self.max_hops <= 16:
            raise ConfigError(f"scenario max_hops={self.max_hops}: must be 1..16")
        if self.victims < 1 and self.c2:
            raise ConfigError("scenario victims: a C2 needs at least 1 victim")

    @classmethod
    def parse(cls, text: str | None) -> ScenarioConfig:
        """``c2=2,relays=5,enterprise=1``, ``none``, a JSON object, or a path to a JSON file."""
        if text is None or not text.strip():
            return cls()
        t = text.strip()
        if t == "none":
            return cls(c2=0, relays=0, enterprise=0)
        if t.endswith(".json") or Path(t).is_file():
            try:
                t = Path(t).read_text()
            except OSError as exc:
                raise ConfigError(f"scenarios: cannot read {text!r}: {exc}") from exc
        if t.lstrip().startswith("{"):
            try:
                raw = json.loads(t)
            except ValueError as exc:
                raise ConfigError(f"scenarios: not valid JSON: {exc}") from exc
            if not isinstance(raw, dict):
                raise ConfigError("scenarios: JSON must be an object of name: count")
            items = list(raw.items())
        else:
            items = []
            for part in t.split(","):
                name, sep, value = part.partition("=")
                if not sep:
                    raise ConfigError(f"scenarios: {part.strip()!r} is not name=count")
                try:
                    items.append((name.strip(), int(value)))
                except ValueError:
                    raise ConfigError(
                        f"scenarios: {name.strip()}={value.strip()!r} is not a whole number"
                    ) from None
        known = {f.name for f in fields(cls)}
        values: dict[str, int] = {}
        for name, value in items:
            if name not in known:
                raise ConfigError(
                    f"scenarios: unknown name {name!r} (known: {', '.join(sorted(known))})"
                )
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"scenarios: {name}={value!r} is not a whole number")
            values[name] = value
        return replace(cls(), **values)


def default_end() -> datetime:
    """Today 00:00 UTC: demos show recent data, and the value is stable for a whole day."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a simulated world; the same config gives the same flows."""

    seed: int = 1
    flows: int = 1_000_000
    days: float = 14.0
    end: datetime = field(default_factory=default_end)
    sampling: tuple[int, ...] = (1,)
    observe_share: float = 0.7
    exporters: int = 8
    scenarios: ScenarioConfig = field(default_factory=ScenarioConfig)
    chunk_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}: must be >= 0")
        if self.flows < 0:
            raise ConfigError(f"flows={self.flows}: must be >= 0")
        if not 0 < self.days <= 400:
            raise ConfigError(f"days={self.days}: must be in (0, 400]")
        if self.end.tzinfo is None:
            object.__setattr__(self, "end", self.end.replace(tzinfo=UTC))
        if not self.sampling or any(n < 1 or n > 1_000_000 for n in self.sampling):
            raise ConfigError(f"sampling={self.sampling}: each rate must be 1..1000000")
        if not 0 < self.observe_share <= 1:
            raise ConfigError(f"observe_share={self.observe_share}: must be in (0, 1]")
        if not 1 <= self.exporters <= 4096:
            raise ConfigError(f"exporters={self.exporters}: must be 1..4096")
        if self.chunk_rows < 1_000:
            raise ConfigError(f"chunk_rows={self.chunk_rows}: must be >= 1000")

    @property
    def end_us(self) -> int:
        # Whole milliseconds everywhere so NetFlow/IPFIX millisecond fields round-trip exactly.
        return int(self.end.timestamp() * 1000) * MS

    @property
    def start_us(self) -> int:
        return self.end_us - int(self.days * DAY_US) // MS * MS

    @property
    def start(self) -> datetime:
        return self.end - timedelta(microseconds=self.end_us - self.start_us)


def parse_sampling(text: str) -> tuple[int, ...]:
    """``1``, ``1000``, or ``1000,2000,4000`` (rates given to exporters in turn)."""
    try:
        rates = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ConfigError(f"sampling={text!r}: use N or N,M,... (whole numbers >= 1)") from None
    if not rates or any(r < 1 or r > 1_000_000 for r in rates):
        raise ConfigError(f"sampling={text!r}: each rate must be 1..1000000")
    return rates


# Stream ids keep the random streams of different parts independent of each other.
STREAM_WORLD = 1
STREAM_BACKGROUND = 2
STREAM_OBSERVE = 3
STREAM_C2 = 10
STREAM_RELAYS = 11
STREAM_ENTERPRISE = 12


def stream_rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, stream, index), never on what ran before."""
    return np.random.default_rng([seed, stream, index])
