"""The ``rrim`` command line. Logs go to stderr; a JSON summary goes to stdout (or ``--report FILE``).

Commands: ``invert`` (one archive), ``reprocess`` (a folder of archives, idempotent, locked),
``check`` (an archive's preflight), ``inspect`` (a model by name or file, or an archive), ``models``
(the models a name finds), ``validate-model`` (a foreign ONNX file against the contract),
``calibrate``, ``selfcheck`` (sha256 and golden parity of every shipped model, the providers that
load); ``train``, ``export`` and ``experiments`` come from :mod:`rrim.export.commands` (torch is
imported only when they run). Logging, progress, the run record of ``reprocess`` and the options'
environment variables: docs/OPERATIONS.md.

Exit codes:

==== ==========================================================================
0    success
1    a file failed for the first time (reprocess: the same bytes failing the same way
     again do not count), a check failed, or an unexpected error
2    usage error or bad input (archive unreadable or invalid, output folder missing
     or unwritable); the message names file, variable and reason
3    ``--provider cuda`` asked for but CUDA cannot run here
4    model refused (not ONNX, sha256 mismatch, incomplete metadata, wrong I/O)
5    another ``rrim reprocess`` holds the output folder's lock
6    ``invert`` wrote the output (``reprocess``: every output) but skipped more than half of its
     spectra (non-finite, or outside the model's trained ω coverage); JSON status ``mostly_skipped``
130  interrupted (Ctrl-C / SIGTERM); no partial output is left. ``reprocess`` finishes
     the file it is writing and starts no other; a second signal stops at once
==== ==========================================================================
"""
from __future__ import annotations

import click

from rrim import __version__
from rrim.cli.check import check_command
from rrim.cli.common import SHARED_OPTIONS
from rrim.cli.logs import logging_options
from rrim.cli.invert import invert_command
from rrim.cli.models import (calibrate_command, inspect_command, models_command, selfcheck_command,
                             validate_model_command)
from rrim.cli.reprocess import reprocess_command
from rrim.export.commands import COMMANDS as EXPORT_COMMANDS

#: Prefix of every environment variable rrim reads (docs/OPERATIONS.md, "Configuration from the environment").
ENV_PREFIX = "RRIM"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrim")
def main():
    """rrim: optical scattering rates → electron-boson glue functions I²χ(Ω).

    Every option may also come from the environment (`--help` of each command names the variables):
    RRIM_COMMAND_OPTION, and for the options invert, reprocess and check share RRIM_OPTION
    (e.g. RRIM_MODEL, RRIM_PROVIDER); a command-line option wins over both.

    Exit codes: 0 ok; 1 some files failed or a check failed; 2 usage error or bad input;
    3 CUDA asked for but unavailable; 4 model refused; 5 output folder locked by another run;
    6 output written but most spectra skipped; 130 interrupted.
    """


def _env_name(*parts: str) -> str:
    return "_".join([ENV_PREFIX, *(p.upper().replace("-", "_") for p in parts)])


def _option_name(option: click.Option) -> str:
    return max((o for o in option.opts if o.startswith("--")), key=len)[2:]


def _add_environment(command: click.Command) -> None:
    """The logging options for ``command`` (so -v/-q stand anywhere) and an environment variable for
    each of its options: RRIM_COMMAND_OPTION, then RRIM_OPTION for :data:`SHARED_OPTIONS`."""
    command.params.extend(logging_options())
    for param in command.params:
        if not isinstance(param, click.Option) or param.envvar is not None or param.hidden:
            continue
        name = _option_name(param)
        if name in ("verbose", "quiet", "log-format"):
            continue  # from the group's variables only (they would count twice)
        param.envvar = [_env_name(command.name, name)] + ([_env_name(name)] if name in SHARED_OPTIONS else [])
        param.show_envvar = True


for _option in logging_options():
    _option.envvar, _option.show_envvar = _env_name(_option_name(_option)), True
    main.params.append(_option)
for _command in (invert_command, reprocess_command, check_command, calibrate_command, inspect_command,
                 models_command, validate_model_command, selfcheck_command, *EXPORT_COMMANDS):
    _add_environment(_command)
    main.add_command(_command)


def environment_variables() -> list[tuple[str, str, str]]:
    """(variables, command, option) of every option that the environment can set, in ``rrim --help`` order."""
    rows = [(f"`{o.envvar}`", "all", f"`--{_option_name(o)}`") for o in main.params if isinstance(o, click.Option)
            and o.envvar]
    for name, command in main.commands.items():
        rows += [(", ".join(f"`{v}`" for v in p.envvar), name, f"`--{_option_name(p)}`") for p in command.params
                 if isinstance(p, click.Option) and isinstance(p.envvar, list)]
    return rows


def environment_table() -> str:
    """The Markdown table of :func:`environment_variables` (docs/OPERATIONS.md holds it; a test compares)."""
    lines = ["| variables (first set wins) | command | option |", "|---|---|---|"]
    return "\n".join(lines + [f"| {v} | {c} | {o} |" for v, c, o in environment_variables()]) + "\n"
