"""The docs say only what exists: every ``flowatlas ...`` command line (its subcommands and
options, read from the click command tree), every setting, every file and code reference and
every relative link in README.md and docs/*.md.

Each failure names the file, the line and what is missing, so whoever renamed a command, an
option, a setting or a module sees at once which page to fix.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

from flowatlas.cli.main import cli
from flowatlas.settings import SECTIONS, schema

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SKIP_DIRS = {".git", ".venv", "__pycache__", "node_modules", ".mypy_cache", ".ruff_cache",
             ".pytest_cache", ".hypothesis"}


@dataclass(frozen=True)
class Code:
    page: Path
    line: int
    text: str
    block: bool
    lang: str = ""

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_of(page: Path) -> list[Code]:
    """Inline code spans and fenced block lines of a page, each with its line number."""
    out: list[Code] = []
    fence: str | None = None
    for n, line in enumerate(page.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence is not None:
            out.append(Code(page, n, line, True, fence))
            continue
        out.extend(Code(page, n, m, False) for m in re.findall(r"`([^`\n]+)`", line))
    return out


ALL_CODE = [c for page in PAGES for c in code_of(page)]


def test_pages_have_code_to_check() -> None:
    assert len(PAGES) >= 5 and len(ALL_CODE) > 100, [str(p) for p in PAGES]


# -- commands ----------------------------------------------------------------------------------

SHELL_STOP = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>&1", "#", "\\"}


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose: fall back to words
        return text.split()


def command_lines(code: Code) -> list[list[str]]:
    """The argument lists after each ``flowatlas`` (or ``path/to/flowatlas``) in shell code."""
    if code.block and code.lang not in ("", "sh", "bash", "shell", "console"):
        return []
    text = code.text.replace("\\|", "|")
    tokens = _tokens(text.lstrip("$ "))
    found = []
    for i, t in enumerate(tokens):
        if t == "flowatlas" or t.endswith("/flowatlas"):
            args = []
            for a in tokens[i + 1:]:
                if a in SHELL_STOP or a.startswith((">", "2>")):
                    break
                args.append(a)
            found.append(args)
    return found


def _options(cmd: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in cmd.params:
        names.update(p.opts)
        names.update(p.secondary_opts)
    return names


def check_command(args: list[str]) -> str | None:
    """None when ``flowatlas ARGS`` names real (sub)commands and options, else what is wrong."""
    cmd: click.Command = cli
    path = ["flowatlas"]
    ctx = click.Context(cli, info_name="flowatlas")
    for a in args:
        if a.startswith("[-"):  # an optional option in a usage line: [--sampling N]
            a = a.strip("[]")
        if a.startswith("-") and not re.match(r"^-\d", a) and a not in ("-", "--"):
            opt = a.split("=", 1)[0]
            if opt not in _options(cmd):
                return f"{' '.join(path)} has no option {opt}"
            continue
        if not isinstance(cmd, click.Group):
            continue  # an argument or an option's value
        if a in ("...", "…") or a.isupper() or a.startswith(("<", "[")):
            return None  # a placeholder for any command
        names = a.split("|")
        group = cmd
        missing = [n for n in names if group.get_command(ctx, n) is None]
        if missing:
            return f"{' '.join(path)} has no command {missing[0]!r}"
        if len(names) > 1:
            return None  # alternatives: each exists, their options are not followed
        sub = group.get_command(ctx, a)
        assert sub is not None
        cmd = sub
        path.append(a)
        ctx = click.Context(cmd, info_name=a, parent=ctx)
    return None


def test_every_documented_command_and_option_exists() -> None:
    problems = []
    seen = 0
    for code in ALL_CODE:
        for args in command_lines(code):
            seen += 1
            problem = check_command(args)
            if problem:
                problems.append(f"{code.where()}: `flowatlas {' '.join(args)}`: {problem}")
    assert seen > 20, "no flowatlas command lines found in the docs: is the extraction broken?"
    assert not problems, "commands in the docs that do not exist:\n" + "\n".join(problems)


def test_the_check_catches_what_it_should() -> None:
    assert check_command(["query", "host 10.0.0.1", "-n", "5", "--format", "csv"]) is None
    assert check_command(["store", "stats|compact"]) is None
    assert check_command(["sources", "list", "[--format", "table|csv]"]) is None
    assert "no option --colour" in (check_command(["sources", "list", "[--colour]"]) or "")
    assert "no command 'qeury'" in (check_command(["qeury"]) or "")
    assert "no option --colour" in (check_command(["query", "--colour"]) or "")
    assert "no command 'nope'" in (check_command(["store", "stats|nope"]) or "")


# -- settings ----------------------------------------------------------------------------------

SETTING = re.compile(rf"^({'|'.join(SECTIONS)})\.([a-z_]+)(=\S*)?$")
ENV = re.compile(r"\bFLOWATLAS_([A-Z][A-Z0-9_]*)\b")
FILE_SUFFIXES = {"json", "sqlite", "csv", "py", "md", "toml", "migrated", "tmp", "parquet"}
# Objects whose attributes the docs also write as `section.name` (``service.gate``,
# ``store.retention()``): such a name is an attribute of that object, not a setting.
OBJECTS = {"service": "src/flowatlas/service.py", "store": "src/flowatlas/store/flowstore.py",
           "collector": "src/flowatlas/collect/server.py",
           "engine": "src/flowatlas/engines/duckdb.py"}
OTHER_ENV = {"STORE", "PORT", "SETTINGS", "ENRICHMENT_DIR"}


@cache
def _attributes(section: str) -> set[str]:
    path = ROOT / OBJECTS.get(section, "")
    if not path.is_file():
        return set()
    text = path.read_text()
    return set(re.findall(r"self\.(\w+)\s*[:=]", text)) | set(re.findall(r"def (\w+)", text))


def test_every_documented_setting_exists() -> None:
    known = {s.name for s in schema()}
    env_known = {s.env for s in schema()}
    problems = []
    checked = 0
    for code in ALL_CODE:
        words = [code.text.strip()] if not code.block else code.text.split()
        if code.block and "settings" in code.text:
            words = _tokens(code.text)
        for word in words:
            m = SETTING.match(word.rstrip(".,;:"))
            if m is None or m[2] in FILE_SUFFIXES:
                continue
            name = f"{m[1]}.{m[2]}"
            checked += 1
            if name not in known and m[2] not in _attributes(m[1]):
                problems.append(f"{code.where()}: setting `{name}` does not exist "
                                f"(known: {', '.join(sorted(known))})")
        for env in ENV.findall(code.text):
            full = f"FLOWATLAS_{env}"
            section = next((s for s in SECTIONS if env.startswith(s.upper() + "_")), None)
            if section is not None and full not in env_known:
                problems.append(f"{code.where()}: environment variable {full} is no setting")
            elif section is None and env not in OTHER_ENV and not env.startswith("<"):
                problems.append(f"{code.where()}: environment variable {full} is not read by "
                                "flowatlas (add it to OTHER_ENV in tests/test_docs.py if it is)")
    assert checked >= 10, f"only {checked} settings found in the docs: is the extraction broken?"
    assert not problems, "settings in the docs that do not exist:\n" + "\n".join(problems)


# -- files, code references and links ---------------------------------------------------------


@cache
def repo_files() -> frozenset[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        rel = Path(dirpath).relative_to(ROOT)
        out.update((rel / f).as_posix() for f in filenames)
    return frozenset(out)


def find_file(ref: str) -> str | None:
    """The repository file ``ref`` names: as given, under src/flowatlas/ (the docs' usual
    root), or — for a bare or partial path — the one file whose path ends with it."""
    ref = ref.lstrip("./")
    files = repo_files()
    for candidate in (ref, f"src/flowatlas/{ref}", f"src/{ref}"):
        if candidate in files:
            return candidate
    ends = sorted(f for f in files if f.endswith("/" + ref))
    return ends[0] if ends else None


def module_file(module: str) -> str | None:
    parts = module.split(".")
    for candidate in ("src/" + "/".join(parts) + ".py", "src/" + "/".join(parts) + "/__init__.py"):
        if candidate in repo_files():
            return candidate
    return None


@cache
def names_in(path: str) -> frozenset[str]:
    """Top-level names of a module, and ``Class.member`` for the members of its classes."""
    tree = ast.parse((ROOT / path).read_text())
    names: set[str] = set()

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return [node.name]
        if isinstance(node, ast.Assign):
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        if isinstance(node, ast.ImportFrom | ast.Import):
            return [(a.asname or a.name).split(".")[0] for a in node.names]
        return []

    for node in tree.body:
        for name in targets(node):
            names.add(name)
        if isinstance(node, ast.If):  # TYPE_CHECKING imports
            for sub in node.body:
                names.update(targets(sub))
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                names.update(f"{node.name}.{n}" for n in targets(sub))
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) \
                        and sub.value.id == "self" and isinstance(sub.ctx, ast.Store):
                    names.add(f"{node.name}.{sub.attr}")
    if path.endswith("__init__.py"):
        init = (ROOT / path).read_text()
        names.update(re.findall(r'"(\w+)": "flowatlas\.', init))  # the lazy exports
    return frozenset(names)


PATH = re.compile(r"^[\w./-]*[\w-]\.(py|sh)$")
SYMBOL = re.compile(r"^([\w./-]+\.py|flowatlas(?:\.\w+)*): ?([A-Za-z_][\w.]*)$")
DOTTED = re.compile(r"^flowatlas(\.[A-Za-z_]\w*)+$")


def check_reference(text: str) -> str | None:
    """None when ``text`` (one inline code span or word) names something that exists."""
    text = text.strip().rstrip(".,;:")
    m = SYMBOL.match(text)
    if m:
        target, symbol = m[1], m[2]
        path = find_file(target) if target.endswith(".py") else module_file(target)
        if path is None:
            return f"no file or module {target}"
        if symbol not in names_in(path):
            return f"{path} defines no {symbol}"
        return None
    if DOTTED.match(text):
        parts = text.split(".")
        for i in range(len(parts), 0, -1):
            path = module_file(".".join(parts[:i]))
            if path is not None:
                rest = ".".join(parts[i:])
                if rest and rest.split(".")[0] not in {"__all__", "__version__"} \
                        and rest not in names_in(path) and parts[i] not in names_in(path):
                    return f"{path} defines no {rest}"
                return None
        return f"no module {text}"
    if PATH.match(text) and find_file(text) is None:
        return f"no file {text}"
    return None


def test_every_file_and_code_reference_exists() -> None:
    problems = []
    checked = 0
    for code in ALL_CODE:
        if code.block and code.lang not in ("", "sh", "bash", "shell", "console"):
            continue
        words = [code.text] if not code.block and SYMBOL.match(code.text.strip()) else \
            code.text.split()
        for word in words:
            w = word.strip().rstrip(".,;:")
            checked += bool(SYMBOL.match(w) or DOTTED.match(w) or PATH.match(w))
            problem = check_reference(word)
            if problem:
                problems.append(f"{code.where()}: `{word.strip()}`: {problem}")
    assert checked >= 30, f"only {checked} code references found: is the extraction broken?"
    assert not problems, "code references in the docs that do not exist:\n" + "\n".join(problems)


def test_every_relative_link_exists() -> None:
    problems = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                    continue
                if not (page.parent / target.split("#")[0]).exists():
                    problems.append(f"{page.relative_to(ROOT)}:{n}: link to {target}")
    assert not problems, "links in the docs to files that do not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize(("text", "ok"), [
    ("governance/pseudonym.py", True), ("world.py", True), ("src/flowatlas/settings.py", True),
    ("query/plan.py: DayGroups", True), ("flowatlas.ranges: NetClassTable", True),
    ("flowatlas.addresses", True), ("flowatlas.__all__", True),
    ("governance/nothing.py", False), ("query/plan.py: no_such_thing", False),
    ("flowatlas.ranges: Nope", False), ("flowatlas.nomodule", False),
])
def test_reference_check(text: str, ok: bool) -> None:
    assert (check_reference(text) is None) is ok, check_reference(text)
