"""What the ``rrim`` commands share: exit codes, the JSON summary, failing with the right code, signals,
progress on a terminal, and the archive options of ``invert`` and ``reprocess``."""
from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

import click

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


class Progress:
    """A click progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, label: str):
        self.label, self.bar, self.last = label, None, 0

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.last)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def archive_options(f):
    """The options shared by ``invert`` and ``reprocess``."""
    opts = [
        click.option("--model", "model_name", default="rrim-default", show_default=True,
                     help="Installed model name or path to an .onnx file."),
        click.option("--sha256", default=None, help="Pin the model file's sha256 (refused if it differs)."),
        click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="auto: CUDA if it really loads, else CPU; cuda: fail (exit 3) if CUDA cannot run."),
        click.option("--tf32", is_flag=True, help="Allow TF32 on CUDA (off by default)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Spectra per model call (default: the fastest of 16…256, measured once per model and machine)."),
        click.option("--var", default="scattering_rate", show_default=True, help="Variable holding 1/τ."),
        click.option("--dim", default="omega", show_default=True, help="Its ω dimension (with a units coordinate)."),
        click.option("--temperature", type=click.FloatRange(min=0, max=1e6), default=None,
                     help="Temperature in K (overrides the file's)."),
        click.option("--temperature-var", default="temperature", show_default=True,
                     help="Name of the temperature attribute, coordinate or variable."),
        click.option("--crop", is_flag=True, help="Accept an ω range different from the model's (spectra flagged)."),
        click.option("--smoothing", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Gaussian smoothing of the glue, σ in meV (off by default)."),
        click.option("--uncertainty", type=click.Choice(["0.68", "0.9"]), default=None,
                     help="Also write glue_lower/glue_upper, the band that covers the true glue at this calibrated "
                          "pointwise coverage (16 noise-resampled inversions per spectrum; needs the model's calibration)."),
        click.option("--impurity", is_flag=True,
                     help="Estimate the impurity (constant) scattering rate per spectrum, remove it before inverting "
                          "and write impurity_rate."),
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="Write the JSON summary here instead of stdout."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def options_from(var, dim, temperature, temperature_var, crop, smoothing, uncertainty, impurity, tf32):
    from rrim.io.schema import ArchiveOptions

    return ArchiveOptions(var=var, dim=dim, temperature_name=temperature_var, temperature=temperature,
                          crop=crop, smoothing_meV=smoothing, uncertainty=None if uncertainty is None else float(uncertainty),
                          impurity=impurity, tf32=tf32)


def engine_for(model_name, sha256, provider, tf32, batch_size):
    """The command's one :class:`~rrim.inversion.engine.Engine` (``batch_size`` None: measured when first needed)."""
    from rrim.inversion.engine import Engine
    from rrim.models.loading import load_model

    model = load_model(model_name, sha256=sha256)
    engine = Engine(model, provider, tf32=tf32, batch_size=batch_size)
    log.info("model %s (%s form, sha256 %s…) on %s", model.name, model.form, model.sha256[:12], engine.provider)
    return engine
