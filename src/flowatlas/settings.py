"""One typed settings schema for every component: store, collector, engine, service.

Each section is a frozen dataclass whose fields carry their default, a one-line help text and
their bounds (see :func:`setting`); ``docs/settings.md`` lists every field and a test keeps the
two in step. Where a value comes from, lowest first:

1. the defaults below;
2. what is kept with the store: ``store.json`` (the ``store`` section, read and written by
   :class:`~flowatlas.store.FlowStore` exactly as before) and ``settings.json`` beside it (the
   other sections, written by ``flowatlas settings set``);
3. an optional settings file named by ``FLOWATLAS_SETTINGS`` (TOML or JSON, one table per
   section) — not for the ``store`` section;
4. environment variables ``FLOWATLAS_<SECTION>_<NAME>`` (``FLOWATLAS_ENGINE_MEMORY_LIMIT=2GB``)
   — not for the ``store`` section;
5. command-line options (``serve --port``, ``collect --batch-rows``), applied by the command.

Store settings describe the data itself (how long it is kept, how its files are written), so
every process must see the same value: they come only from ``store.json`` and an override from a
file or the environment is an error, not a silent difference between processes.

Validation errors name the setting and where the bad value came from, in one line.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flowatlas.store.flowstore import (
    DEFAULT_INGEST_COMPRESSION,
    DEFAULT_RETENTION_DAYS,
    INGEST_COMPRESSIONS,
)

STORE_FILE = "store.json"
FILENAME = "settings.json"
"""The non-store sections kept with a store (``<store>/settings.json``)."""
ENV_FILE = "FLOWATLAS_SETTINGS"
ENV_PREFIX = "FLOWATLAS_"


class SettingsError(ValueError):
    """A setting that is unknown or whose value is invalid; the message names it."""


_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)


def _size(value: str) -> str | None:
    return None if _SIZE.match(value) else "is not a size such as 512MB or 2GB"


def _host(value: str) -> str | None:
    return None if value.strip() and " " not in value else "is not a host name or address"


def setting(default: Any, help: str, *, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] = (),
            check: Callable[[str], str | None] | None = None, unit: str = "") -> Any:
    """A schema field: its default and what docs, validation and ``settings show`` need."""
    return field(default=default, metadata={
        "help": help, "minimum": minimum, "maximum": maximum, "choices": choices,
        "check": check, "unit": unit,
    })


@dataclass(frozen=True)
class StoreSettings:
    """The data's own settings; kept in ``store.json``."""

    retention_days: int = setting(
        DEFAULT_RETENTION_DAYS, "Days of history kept; older whole days are deleted by "
        "`store retention` and serve's maintenance.", minimum=1, unit="days")
    ingest_compression: str = setting(
        DEFAULT_INGEST_COMPRESSION, "Codec of newly appended (ingest) files; compacted runs are "
        "always zstd.", choices=INGEST_COMPRESSIONS)


@dataclass(frozen=True)
class CollectorSettings:
    """The UDP collector (``flowatlas collect`` and ``serve --collect``)."""

    batch_rows: int = setting(
        200_000, "Append to the store when this many decoded rows are buffered...", minimum=1,
        unit="rows")
    batch_seconds: float = setting(
        2.0, "...or when the oldest buffered row is this old.", minimum=0.05, unit="seconds")
    receive_buffer: int = setting(
        32 << 20, "Kernel receive buffer asked for per socket (granted up to net.core.rmem_max "
        "unless the process may force it).", minimum=65_536, maximum=1 << 31, unit="bytes")
    template_max_bytes_per_exporter: int = setting(
        4 << 20, "Estimated bytes of templates one exporter may hold; over it, its own least "
        "recently refreshed templates go.", minimum=65_536, unit="bytes")
    template_max_bytes: int = setting(
        128 << 20, "Estimated bytes of templates of all exporters; over it, the exporter "
        "holding the most loses its least recently refreshed.", minimum=65_536, unit="bytes")
    pending_max_bytes_per_exporter: int = setting(
        2 << 20, "Bytes of data sets one exporter may have waiting for their template; over "
        "it, its oldest go (counted as unknown template).", minimum=65_536, unit="bytes")
    pending_max_bytes: int = setting(
        16 << 20, "Bytes of data sets waiting for their template, all exporters; over it, the "
        "exporter holding the most loses its oldest.", minimum=65_536, unit="bytes")
    sequence_max_streams_per_exporter: int = setting(
        256, "Sequence-number streams (observation domains, sFlow sub-agents and sources) "
        "tracked per exporter address; least recently seen go first.", minimum=1,
        unit="streams")
    sequence_max_streams: int = setting(
        65_536, "Sequence-number streams tracked in all; over it, the exporter with the most "
        "loses its least recently seen.", minimum=1, unit="streams")
    sequence_max_gap: int = setting(
        65_536, "Widest sequence gap counted as loss; a wider jump is a reset "
        "(sequence_resets), never loss.", minimum=1, unit="records or packets")
    status_max_exporters: int = setting(
        4096, "Exporter addresses with counters of their own in the live status; the least "
        "recently seen beyond it are summed into the totals (exporters_evicted).", minimum=1,
        unit="exporters")


@dataclass(frozen=True)
class IngestSettings:
    """The ingest pipeline every producer writes through (collector, import, simulate)."""

    plausible_past_days: int = setting(
        0, "How far behind the ingesting clock a flow may start; older flows are counted and "
        "dropped. 0: the store's retention window.", minimum=0, unit="days")
    plausible_future_seconds: float = setting(
        86_400.0, "How far ahead of the ingesting clock a flow may start or end; later flows "
        "are counted and dropped.", minimum=0, unit="seconds")


@dataclass(frozen=True)
class EngineSettings:
    """The embedded DuckDB engine."""

    memory_limit: str = setting(
        "1GB", "DuckDB's memory limit; larger aggregations spill to a temporary directory.",
        check=_size)
    threads: int = setting(
        0, "DuckDB worker threads; 0 lets DuckDB use one per core.", minimum=0, maximum=1024)


@dataclass(frozen=True)
class ServiceSettings:
    """``flowatlas serve``: the HTTP API and its maintenance schedule."""

    host: str = setting("127.0.0.1", "Address the HTTP API listens on.", check=_host)
    port: int = setting(8080, "TCP port of the HTTP API (0: any free port).", minimum=0,
                        maximum=65535)
    maintenance_seconds: float = setting(
        3600.0, "Seconds between maintenance runs: retention, then compaction of the days that "
        "are due.", minimum=0.1, unit="seconds")
    console_assets: str = setting(
        "node_modules", "Folder of the web console's npm packages (`npm ci` installs them); "
        "a relative path is taken from the repository's root.")


@dataclass(frozen=True)
class Settings:
    """Every component's settings; one section per component."""

    store: StoreSettings = field(default_factory=StoreSettings)
    collector: CollectorSettings = field(default_factory=CollectorSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)

    def get(self, name: str) -> Any:
        section, key = _split(name)
        return getattr(getattr(self, section), key)

    def with_values(self, values: Mapping[str, Any]) -> Settings:
        """A copy with ``{"section.name": value}`` applied (values already typed)."""
        out = self
        for name, value in values.items():
            section, key = _split(name)
            out = replace(out, **{section: replace(getattr(out, section), **{key: value})})
        return out


SECTIONS: dict[str, type[Any]] = {
    "store": StoreSettings,
    "collector": CollectorSettings,
    "ingest": IngestSettings,
    "engine": EngineSettings,
    "service": ServiceSettings,
}
PERSISTED_ONLY = frozenset({"store"})
"""Sections that only come from what is kept with the store (not from a file or the env)."""


@dataclass(frozen=True)
class SettingInfo:
    name: str  # "section.key"
    type: str  # "int", "float" or "str"
    default: Any
    help: str
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]
    unit: str
    check: Callable[[str], str | None] | None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.replace(".", "_").upper()

    def parse(self, raw: Any, origin: str) -> Any:
        """Type and bound-check one value; ``origin`` says where it came from (for errors)."""
        where = f"{self.name} = {raw!r} (from {origin})"
        value: Any
        if self.type == "int":
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise SettingsError(f"{where}: not a whole number")
            try:
                value = int(str(raw).replace("_", ""))
            except ValueError:
                raise SettingsError(f"{where}: not a whole number") from None
        elif self.type == "float":
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise SettingsError(f"{where}: not a number")
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{where}: not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise SettingsError(f"{where}: not a finite number")
        else:
            if not isinstance(raw, str):
                raise SettingsError(f"{where}: not text")
            value = raw.strip()
        if self.minimum is not None and value < self.minimum:
            raise SettingsError(f"{where}: must be at least {_num(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise SettingsError(f"{where}: must be at most {_num(self.maximum)}")
        if self.choices and value not in self.choices:
            raise SettingsError(f"{where}: choose one of {', '.join(self.choices)}")
        if self.check is not None and (problem := self.check(value)) is not None:
            raise SettingsError(f"{where}: {problem}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def schema() -> list[SettingInfo]:
    """Every setting, section by section, in declaration order."""
    out = []
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            m = f.metadata
            default = f.default if f.default is not MISSING else None
            out.append(SettingInfo(
                f"{section}.{f.name}", str(f.type), default, m["help"], m["minimum"],
                m["maximum"], m["choices"], m["unit"], m["check"],
            ))
    return out


def info(name: str) -> SettingInfo:
    for s in schema():
        if s.name == name:
            return s
    known = ", ".join(s.name for s in schema())
    raise SettingsError(f"unknown setting {name!r}; known: {known}")


def _split(name: str) -> tuple[str, str]:
    section, dot, key = name.partition(".")
    if not dot or section not in SECTIONS or key not in {f.name for f in fields(SECTIONS[section])}:
        info(name)  # raises with the list of known names
    return section, key


# -- loading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """Settings and, per setting, where its value came from (``default``, a file, an env var)."""

    settings: Settings
    origins: dict[str, str]

    def rows(self) -> Iterator[tuple[SettingInfo, Any, str]]:
        for s in schema():
            yield s, self.settings.get(s.name), self.origins.get(s.name, "default")


def load(store_root: str | os.PathLike[str] | None = None,
         env: Mapping[str, str] | None = None) -> Loaded:
    """The effective settings for a store (None: defaults, settings file and environment only).

    Reads only; a store that does not exist yet simply contributes nothing.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def take(name: str, raw: Any, origin: str) -> None:
        values[name] = info(name).parse(raw, origin)
        origins[name] = origin

    if store_root is not None:
        root = Path(store_root)
        store_json = _read_json(root / STORE_FILE)
        for key in ("retention_days", "ingest_compression"):
            if key in store_json:
                take(f"store.{key}", store_json[key], str(root / STORE_FILE))
        kept = root / FILENAME
        for name, raw in _flatten(_read_json(kept), str(kept)):
            if name.startswith("store."):
                raise SettingsError(f"{name} (in {kept}): store settings are kept in {STORE_FILE}")
            take(name, raw, str(kept))
    if env.get(ENV_FILE):
        path = Path(env[ENV_FILE])
        for name, raw in _flatten(_read_file(path), str(path)):
            _refuse_store(name, str(path))
            take(name, raw, str(path))
    for s in schema():
        if s.env in env:
            _refuse_store(s.name, s.env)
            take(s.name, env[s.env], s.env)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and _looks_like_setting(k)
                     and k not in {s.env for s in schema()})
    if unknown:
        raise SettingsError(f"{unknown[0]}: no such setting; known: "
                            + ", ".join(s.env for s in schema()))
    return Loaded(Settings().with_values(values), origins)


def _looks_like_setting(env_name: str) -> bool:
    rest = env_name[len(ENV_PREFIX):].lower()
    return any(rest.startswith(section + "_") for section in SECTIONS)


def _refuse_store(name: str, origin: str) -> None:
    if name.split(".", 1)[0] in PERSISTED_ONLY:
        raise SettingsError(
            f"{name} (from {origin}): store settings describe the data and are kept in "
            f"{STORE_FILE}; change them with 'flowatlas settings set {name}=VALUE'"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read settings from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: settings must be an object of sections")
    return data


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise SettingsError(f"{ENV_FILE}={path}: no such file")
        return _read_json(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"{ENV_FILE}={path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings from {path}: {exc}") from exc


def _flatten(data: Mapping[str, Any], origin: str) -> Iterator[tuple[str, Any]]:
    for section, body in data.items():
        if section not in SECTIONS:
            raise SettingsError(f"{origin}: unknown section {section!r}; known: "
                                + ", ".join(SECTIONS))
        if not isinstance(body, Mapping):
            raise SettingsError(f"{origin}: section {section!r} must be a table of settings")
        for key, raw in body.items():
            name = f"{section}.{key}"
            info(name)
            yield name, raw


# -- changing what is kept with a store -------------------------------------------------------


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``section.name=value`` texts (``flowatlas settings set``) -> typed values."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise SettingsError(f"{item!r}: use SECTION.NAME=VALUE, e.g. engine.threads=2")
        out[name.strip()] = info(name.strip()).parse(raw.strip(), "the command line")
    return out


def save(store_root: str | os.PathLike[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Keep typed non-store ``values`` in ``<store>/settings.json``; returns what changed.

    Store settings are changed through FlowStore (it owns ``store.json``); see
    ``governance.admin.Admin.set_settings``, which also audits.
    """
    path = Path(store_root) / FILENAME
    kept = _read_json(path)
    changed: dict[str, Any] = {}
    for name, value in values.items():
        section, key = _split(name)
        if section in PERSISTED_ONLY:
            raise SettingsError(f"{name}: store settings are kept in {STORE_FILE}")
        body = kept.setdefault(section, {})
        if body.get(key) != value:
            body[key] = value
            changed[name] = value
    if changed:
        tmp = path.with_name(f".{FILENAME}.{os.getpid()}")
        tmp.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    return changed
