"""flowatlas.ranges: the 16-byte keys and range sets every layer shares, owned by none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa

from flowatlas.addresses import pack_many, parse_prefix
from flowatlas.ranges import NetClassTable, RangeSet, addr_keys, addr_text, in_classes, in_prefixes


def test_access_control_does_not_import_the_analytics() -> None:
    """Governance (gate, pseudonyms, opt-outs, scopes, classes) uses flowatlas.ranges only."""
    code = ("import json, sys\n"
            "import flowatlas.governance.gate, flowatlas.governance.pseudonym\n"
            "import flowatlas.governance.pseudospace, flowatlas.governance.optout\n"
            "import flowatlas.governance.scope, flowatlas.governance.classes\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('flowatlas.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    analytics = [m for m in json.loads(out) if m.startswith("flowatlas.analytics")]
    assert not analytics, analytics


def test_keys_from_columns_and_matrices_agree() -> None:
    column = pack_many(["10.0.0.1", "2001:db8::1", "10.0.0.2"])
    keys = addr_keys(column)
    matrix = np.frombuffer(column.buffers()[1], dtype=np.uint8).reshape(-1, 16)
    assert (addr_keys(matrix) == keys).all()
    assert addr_text(keys) == ["10.0.0.1", "2001:db8::1", "10.0.0.2"]
    assert addr_text(keys[:0]) == []


def test_range_sets_merge_overlaps_and_nulls_are_outside() -> None:
    prefixes = [parse_prefix(p) for p in ("10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32")]
    ranges = RangeSet(prefixes)
    assert len(ranges.lows) == 2  # 10.1/16 lies inside 10/8
    packed = pack_many(["10.1.2.3", "11.0.0.1", "2001:db8::5", "10.1.0.1"])
    column = pa.array([*packed.to_pylist()[:3], None], type=packed.type)
    assert in_prefixes(column, prefixes).tolist() == [True, False, True, False]
    table = NetClassTable.from_rows([("10.0.0.0/8", "enterprise"), ("10.1.0.0/16", "cdn")])
    assert in_classes(column, table, {"cdn"}).tolist() == [True, False, False, False]
    assert table.lookup(addr_keys(column)[:2]) == ["cdn", "unknown"]
