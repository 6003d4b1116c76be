"""The ``rrim`` command line. Logs go to stderr; machine-readable summaries to stdout as JSON.

Commands are grouped by module: runtime commands here, ``train`` and ``export`` from
:mod:`rrim.export.commands` (which imports torch only when a command runs).
"""
from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrim")
def main():
    """rrim: optical scattering rates → electron-boson glue functions I²χ(Ω)."""


def _register_export_commands() -> None:
    from .export.commands import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_export_commands()
