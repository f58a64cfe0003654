"""The public library: ``import flowatlas`` is cheap, exports what docs/library.md promises, and
every example on that page runs against a small simulated store."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flowatlas
from flowatlas.cli.common import as_flags

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "library.md"
SRC = ROOT / "src" / "flowatlas"
HEAVY = ("pyarrow", "duckdb", "numpy", "rich", "fastapi", "click")


def test_import_flowatlas_loads_nothing_heavy() -> None:
    code = "import sys, flowatlas; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_exported_name_resolves_to_its_home_object() -> None:
    exports: dict[str, str] = flowatlas._EXPORTS
    assert sorted(flowatlas.__all__) == sorted(exports), "keep __all__ and _EXPORTS the same names"
    for name, module in exports.items():
        assert getattr(flowatlas, name) is getattr(importlib.import_module(module), name), name
    assert set(flowatlas.__all__) <= set(dir(flowatlas))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        flowatlas.Nope  # noqa: B018


def test_docs_name_only_exported_names() -> None:
    """Every ``flowatlas.X`` the page uses is exported (the page is the library's contract)."""
    used = set(re.findall(r"\bflowatlas\.([A-Za-z]\w*)", DOC.read_text()))
    used |= {n.strip() for line in re.findall(r"from flowatlas import ([^\n]+)", DOC.read_text())
             for n in line.split(",")}
    assert used and not used - set(flowatlas.__all__), sorted(used - set(flowatlas.__all__))


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flowatlas.simulate import ScenarioConfig, SimConfig, simulate

    d = tmp_path_factory.mktemp("library_doc")
    cfg = SimConfig(seed=7, flows=60_000, days=7, observe_share=1.0,
                    scenarios=ScenarioConfig(c2=1, victims=4, relays=2, max_hops=4))
    simulate(d / "demo", cfg, truth_path=d / "demo" / "ground-truth.json")
    return d


def test_library_page_examples_run(demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = code_blocks(DOC.read_text())
    assert len(blocks) >= 4, "docs/library.md lost its examples"
    monkeypatch.chdir(demo)
    ns: dict[str, Any] = {"__name__": "library_md"}
    out = io.StringIO()
    for i, block in enumerate(blocks, 1):
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(block, f"docs/library.md block {i}", "exec"), ns)
            except Exception as exc:
                raise AssertionError(f"docs/library.md block {i} failed: {exc!r}\n{block}") from exc
    # The examples found what the page says they find.
    assert ns["flows"].num_rows > 0 and ns["profile"].seen
    assert ns["top"].num_rows > 0 and ns["talkers"].num_rows == 5
    assert ns["report"].path[-1] == ns["chain"]["path"][-1] and len(ns["report"].path) >= 2
    assert "victim" in ns["victims"].to_table().column("label").to_pylist()
    assert "hops=9: must be 1..6" in out.getvalue()


# -- errors name parameters, not CLI flags --------------------------------------------------


def _raised_messages(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal inside a ``raise`` statement of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    found.append((sub.lineno, sub.value))
    return found


def test_library_errors_do_not_name_command_line_flags() -> None:
    """Outside cli/, an error is about a parameter (``hops=9``); the CLI maps it to its flag."""
    bad = [f"{p.relative_to(ROOT)}:{line}: {text!r}"
           for p in sorted(SRC.rglob("*.py")) if "cli" not in p.relative_to(SRC).parts
           for line, text in _raised_messages(p) if re.search(r"(^|\W)--[a-z]", text)]
    assert not bad, "library errors naming CLI flags:\n" + "\n".join(bad)


def test_analytics_and_simulator_errors_name_parameters() -> None:
    from flowatlas.analytics.trace import TraceParams
    from flowatlas.simulate import SimConfig

    atlas = object()  # never reached: the parameters are checked first
    with pytest.raises(flowatlas.AnalyticsError, match=r"^hops=9: must be 1\.\.6$"):
        flowatlas.peer_graph(atlas, ["192.0.2.1"], hops=9)  # type: ignore[arg-type]
    with pytest.raises(flowatlas.AnalyticsError, match=r"^max_degree=0: "):
        flowatlas.peer_graph(atlas, ["192.0.2.1"], max_degree=0)  # type: ignore[arg-type]
    with pytest.raises(flowatlas.AnalyticsError, match=r"^max_hops=99: "):
        flowatlas.trace(atlas, "192.0.2.1", None, params=TraceParams(max_hops=99))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^observe_share=2\.0: "):
        SimConfig(observe_share=2.0)


def test_as_flags_maps_only_the_parameters_it_is_given() -> None:
    flags = {"observe_share": "--observe", "scenarios": "--scenarios", "target": "--udp"}
    assert as_flags("observe_share=2.0: must be in (0, 1]", flags) == "--observe 2.0: must be in (0, 1]"
    assert as_flags("scenarios: unknown name 'x'", flags) == "--scenarios: unknown name 'x'"
    assert as_flags("target=h:1: no such host", flags) == "--udp h:1: no such host"
    assert as_flags("rows_per_day=5: too many", flags) == "rows_per_day=5: too many"
    assert as_flags("no parameter here", flags) == "no parameter here"


def test_simulate_to_an_unresolvable_host_is_one_line_exit_2(tmp_path: Path) -> None:
    """Was a traceback: UdpSender's TargetError escaped the command."""
    exe = Path(sys.executable).with_name("flowatlas")
    done = subprocess.run([str(exe), "simulate", "--flows", "10", "--days", "1", "--quiet",
                           "--udp", "no-such-host.invalid:2055"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowatlas: error: --udp no-such-host"), lines
