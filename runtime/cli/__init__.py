"""The ``rrim`` command line. Logs go to stderr; a JSON summary goes to stdout (or ``--report FILE``).

Commands: ``invert`` (one archive), ``reprocess`` (a folder of archives, idempotent, locked),
``inspect`` (a model or an archive), ``models`` (installed models), ``selfcheck`` (sha256 and
golden parity of every shipped model, the providers that load); ``train`` and ``export`` come from
:mod:`rrim.export.commands` (torch is imported only when they run).

Exit codes:

==== ==========================================================================
0    success
1    some files failed (reprocess), a self-check failed, or an unexpected error
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

import logging
import sys

import click

from rrim import __version__
from rrim.cli.invert import invert_command
from rrim.cli.models import calibrate_command, inspect_command, models_command, selfcheck_command
from rrim.cli.reprocess import reprocess_command
from rrim.export.commands import COMMANDS as EXPORT_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrim")
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool):
    """rrim: optical scattering rates → electron-boson glue functions I²χ(Ω).

    Exit codes: 0 ok; 1 some files failed or a check failed; 2 usage error or bad input;
    3 CUDA asked for but unavailable; 4 model refused; 5 output folder locked by another run;
    6 output written but most spectra skipped; 130 interrupted.
    """
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=level, format="rrim %(levelname)s: %(message)s", force=True)


for _command in (invert_command, reprocess_command, calibrate_command, inspect_command, models_command,
                 selfcheck_command, *EXPORT_COMMANDS):
    main.add_command(_command)
