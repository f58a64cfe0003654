"""Entry point: the ``flowatlas`` click group. Each command group lives in its own module."""

from __future__ import annotations

import sys

import click

from flowatlas import __version__
from flowatlas.cli.common import run_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="flowatlas")
def cli() -> None:
    """flowatlas: collect, keep, query and investigate flow telemetry."""


def _register() -> None:
    # Imported here so each module only depends on click and the core, never on each other.
    from flowatlas.cli import (
        collect_cmds,
        investigate_cmds,
        query_cmds,
        service_cmds,
        simulate_cmds,
        store_cmds,
    )

    for module in (collect_cmds, investigate_cmds, query_cmds, service_cmds, simulate_cmds,
                   store_cmds):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    sys.exit(run_cli(cli))
