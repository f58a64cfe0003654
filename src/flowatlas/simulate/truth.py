"""Ground truth: what was planted, where, and how much of it the partners recorded.

Written as JSON with sorted keys and rounded floats so the same seed gives the same bytes, plus
the world's prefix-class table as CSV (``prefix,class,asn``) for pseudonymisation and scoring.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowatlas.simulate.scenarios.planted import iso

FORMAT_VERSION = 1


@dataclass
class GroundTruth:
    config: dict[str, Any]
    prefixes: list[tuple[str, str, int]]
    c2: list[dict[str, Any]] = field(default_factory=list)
    relays: list[dict[str, Any]] = field(default_factory=list)
    enterprise: list[dict[str, Any]] = field(default_factory=list)
    exporters: list[dict[str, Any]] = field(default_factory=list)
    flows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _stable({
            "format": FORMAT_VERSION,
            "config": self.config,
            "exporters": self.exporters,
            "flows": self.flows,
            "scenarios": {"c2": self.c2, "relays": self.relays, "enterprise": self.enterprise},
            "prefixes": [{"prefix": p, "class": c, "asn": a} for p, c, a in self.prefixes],
        })
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, indent=1) + "\n"

    def prefixes_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["prefix", "class", "asn"])
        w.writerows(self.prefixes)
        return buf.getvalue()

    def write(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the JSON at ``path`` and the prefix table next to it; returns both paths."""
        json_path = Path(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path = json_path.with_name(json_path.stem + ".prefixes.csv")
        for target, content in ((json_path, self.to_json()), (csv_path, self.prefixes_csv())):
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(content)
            os.replace(tmp, target)
        return json_path, csv_path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ground-truth JSON file back (as plain dicts and lists)."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def _stable(value: Any) -> Any:
    """Floats rounded to 6 digits so their text is the same on every platform."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


__all__ = ["GroundTruth", "iso", "load"]
