"""The command line loads a command's module only when that command runs.

``flowatlas --help`` lists every command from the static table in ``cli/main.py``; these tests
hold that table to the real commands, and check what ``--version``/``--help`` import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from flowatlas.cli.main import COMMANDS, cli, load

MODULES = sorted({e.module for e in COMMANDS.values()})
HEAVY = ("pyarrow", "duckdb", "numpy", "rich", "fastapi", "uvicorn", "cryptography")


def real_commands() -> dict[str, tuple[str, click.Command]]:
    found: dict[str, tuple[str, click.Command]] = {}
    for module in MODULES:
        for name, cmd in load(module).items():
            assert name not in found, f"command {name!r} defined in {found[name][0]} and {module}"
            found[name] = (module, cmd)
    return found


def test_table_lists_every_command_with_its_module_and_summary() -> None:
    real = real_commands()
    missing = sorted(set(real) - set(COMMANDS))
    assert not missing, f"add {missing} to COMMANDS in src/flowatlas/cli/main.py"
    stale = sorted(set(COMMANDS) - set(real))
    assert not stale, f"COMMANDS in src/flowatlas/cli/main.py lists {stale}, no module defines them"
    for name, (module, cmd) in real.items():
        entry = COMMANDS[name]
        assert entry.module == module, f"COMMANDS[{name!r}].module: {entry.module}, defined in {module}"
        for limit in (45, 80, 10_000):
            assert entry.short_help(limit) == cmd.get_short_help_str(limit), \
                f"COMMANDS[{name!r}].summary differs from the command's help: " \
                f"{cmd.get_short_help_str(10_000)!r}"


def test_help_lists_what_an_eager_group_would() -> None:
    eager = click.Group("cli", help=cli.help, params=cli.params,
                        context_settings=cli.context_settings)
    for _, cmd in real_commands().values():
        eager.add_command(cmd)
    runner = CliRunner()
    lazy_out = runner.invoke(cli, ["--help"], prog_name="flowatlas")
    eager_out = runner.invoke(eager, ["--help"], prog_name="flowatlas")
    assert lazy_out.exit_code == 0 and eager_out.exit_code == 0
    assert lazy_out.output == eager_out.output


def _imported_by(*argv: str) -> tuple[str, list[str]]:
    code = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
        f"sys.argv = ['flowatlas', *{list(argv)!r}]\n"
        "from flowatlas.cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_version_and_help_import_no_command_module_and_no_heavy_library() -> None:
    for argv in (["--version"], ["--help"], ["-h"]):
        out, modules = _imported_by(*argv)
        assert out.strip()
        heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
        assert not heavy, f"flowatlas {' '.join(argv)} imported {heavy}"
        loaded = sorted(m for m in modules if m in MODULES)
        assert not loaded, f"flowatlas {' '.join(argv)} imported {loaded}"


def test_a_command_loads_only_its_own_module() -> None:
    out, modules = _imported_by("simulate", "--help")
    assert "--flows" in out
    assert [m for m in modules if m in MODULES] == ["flowatlas.cli.simulate_cmds"]


def test_unknown_command_is_a_usage_error() -> None:
    res = CliRunner().invoke(cli, ["qeury"])
    assert res.exit_code == 2 and "No such command 'qeury'" in res.output
