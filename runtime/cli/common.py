"""What the ``rrim`` commands share: exit codes, the JSON summary, failing with the right code, signals,
and the options of ``invert``, ``reprocess`` and ``check`` (made from :class:`rrim.io.schema.ArchiveOptions`).
Logging and progress: :mod:`rrim.cli.logs`."""
from __future__ import annotations

import functools
import json
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path

import click

from rrim.io.schema import ArchiveOptions, option_type
from rrim.models.loading import DATA_DIR

log = logging.getLogger("rrim")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA, EXIT_MODEL, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
#: The output was written but most of its spectra (more than half) were skipped (NaN glue).
EXIT_MOSTLY_SKIPPED = 6
EXAMPLE_ARCHIVE = DATA_DIR / "examples" / "example_archive.nc"


def exit_code(exc: BaseException) -> int:
    from rrim.io.paths import ArchiveError
    from rrim.models.modelfile import ModelFileError
    from rrim.models.sessions import ProviderUnavailable

    if isinstance(exc, ProviderUnavailable):
        return EXIT_NO_CUDA
    if isinstance(exc, ModelFileError):
        return EXIT_MODEL
    if isinstance(exc, (ArchiveError, ValueError, click.BadParameter)):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def emit(summary: dict, report: str | None) -> None:
    """The JSON summary to stdout, or atomically to ``report``; if that fails, to stdout with the error
    logged (and exit 1 if nothing else failed)."""
    from rrim.files import atomic_write_text

    text = json.dumps(summary, indent=2, default=str)
    if report:
        try:
            atomic_write_text(report, text + "\n")
            log.info("report written to %s", report)
            return
        except OSError as e:
            log.error("%s: the report could not be written (%s); it follows on stdout", report, e.strerror or e)
            click.echo(text)
            if summary.get("exit_code", EXIT_OK) == EXIT_OK:
                sys.exit(EXIT_FAILED)
            return
    click.echo(text)


def check_side_outputs(paths: dict, *, inputs: dict, outputs: dict) -> None:
    """Refuse (before any work) a report or plot path ({option: path}) that is missing its folder, is a
    folder, or would overwrite an input ({label: path}), an output or another side output."""
    from rrim.io.paths import ArchiveError, check_output_path

    for option, path in paths.items():
        if path is None:
            continue
        others = {**outputs, **{f"{o} file": q for o, q in paths.items() if o != option}}
        for label, inp in inputs.items():
            if inp is not None and Path(path).resolve() == Path(inp).resolve():
                raise ArchiveError(f"{path}: {option} would overwrite the {label}; inputs are never modified")
        check_output_path(path, what=f"{option} file", others=others)


def fail(exc: BaseException, report: str | None, **context) -> None:
    code = exit_code(exc)
    message = "interrupted (Ctrl-C or SIGTERM); nothing was written" if code == EXIT_INTERRUPTED else \
        str(exc) or type(exc).__name__
    if code == EXIT_FAILED:
        log.error("%s: %s", type(exc).__name__, message, exc_info=log.isEnabledFor(logging.DEBUG))
    else:
        log.error("%s", message)
    status = "interrupted" if code == EXIT_INTERRUPTED else "error"
    emit({"status": status, "error": message, "exit_code": code, **context}, report)
    sys.exit(code)


def sigterm_as_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. under a test runner's thread)
        pass


#: The options of invert, reprocess and check that choose the model and how it runs (an output records the
#: model's sha256 and the provider that ran, not these).
ENGINE_OPTIONS = ("model", "sha256", "provider", "batch-size")
#: Options that mean the same to invert, reprocess and check: the environment sets them as RRIM_OPTION too.
SHARED_OPTIONS = ENGINE_OPTIONS + tuple(f.name.replace("_", "-") for f in fields(ArchiveOptions))


def _as_float(ctx, param, value):
    return None if value is None else float(value)


def field_option(f):
    """The click option of :class:`ArchiveOptions` field ``f``: ``--temperature-var`` for ``temperature_var``,
    a flag for a bool, its type, choices, bound, default and help from the field."""
    meta, kind = f.metadata, option_type(f)
    decls = ("--" + f.name.replace("_", "-"), f.name)
    if kind is bool:
        return click.option(*decls, is_flag=True, default=f.default, help=meta["help"])
    if "choices" in meta:  # strings on the command line (click < 8.2 compares choices as strings)
        return click.option(*decls, type=click.Choice([f"{c:g}" for c in meta["choices"]]), default=f.default,
                            callback=_as_float, help=meta["help"])
    kind = click.FloatRange(min=meta["greater_than"], min_open=True) if "greater_than" in meta else kind
    return click.option(*decls, type=kind, default=f.default, show_default=f.default is not None, help=meta["help"],
                        metavar=meta["units"].upper() if "units" in meta else None)


def archive_options(f):
    """The options of ``invert``, ``reprocess`` and ``check``: the model and how it runs
    (:data:`ENGINE_OPTIONS`), one option per :class:`ArchiveOptions` field (:func:`field_option`) and
    ``--report``. The command receives the fields as one argument, ``opts``."""
    @functools.wraps(f)
    def command(**kwargs):
        return f(opts=ArchiveOptions(**{g.name: kwargs.pop(g.name) for g in fields(ArchiveOptions)}), **kwargs)

    opts = [
        click.option("--model", "model_name", default="rrim-default", show_default=True,
                     help="Installed model name or path to an .onnx file."),
        click.option("--sha256", default=None, help="Pin the model file's sha256 (refused if it differs)."),
        click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="auto: CUDA if it really loads, else CPU; cuda: fail (exit 3) if CUDA cannot run."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Spectra per model call (default: the fastest of 16…256, measured once per model and machine)."),
        *(field_option(g) for g in fields(ArchiveOptions)),
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write the JSON summary here instead of stdout."),
    ]
    for o in reversed(opts):
        command = o(command)
    return command


def engine_for(model_name, sha256, provider, tf32, batch_size):
    """The command's one :class:`~rrim.inversion.engine.Engine` (``batch_size`` None: measured when first needed)."""
    from rrim.inversion.engine import Engine
    from rrim.models.loading import load_model

    model = load_model(model_name, sha256=sha256)
    engine = Engine(model, provider, tf32=tf32, batch_size=batch_size)
    log.info("model %s (%s form, sha256 %s…) on %s", model.name, model.form, model.sha256[:12], engine.provider)
    log.debug("model file %s (sha256 %s), %s spectra per model call", model.path, model.sha256,
              batch_size or "the measured number of")
    warn_if_uncalibrated(model)
    return engine


def warn_if_uncalibrated(model) -> bool:
    """Log a warning when ``model`` has no usable calibration (no out_of_distribution flag, no bands);
    True when it has one."""
    from rrim.inversion.uncertainty import calibration_digest

    digest = calibration_digest(model)
    if digest in ("none", "unreadable"):
        log.warning("model %s has %s calibration: the out_of_distribution flag is off and --uncertainty bands are "
                    "unavailable (run `rrim calibrate %s`)", model.name, "no" if digest == "none" else "an unreadable",
                    model.path)
        return False
    return True
