"""What the ``rrim`` commands share: exit codes, the JSON summary, failing with the right code, signals,
logging (timestamped text or JSON lines, -v/-q anywhere) and progress, and the options of ``invert``,
``reprocess`` and ``check`` (made from :class:`rrim.io.schema.ArchiveOptions`)."""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import time
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


#: Log line formats: ``text`` (a UTC timestamp, the level, the logger, the message) or ``json`` (one object a line).
LOG_FORMATS = ("text", "json")
#: Libraries whose loggers sit under rrim's level: at most their warnings unless -vv.
LIBRARY_LOGGERS = ("distributed", "dask", "tornado", "bokeh", "asyncio", "fsspec", "h5py", "matplotlib", "PIL")
#: Seconds between progress lines in the log when stderr is not a terminal.
PROGRESS_SECONDS = 30.0


def _utc(created: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``2026-12-01T19:48:09.123Z INFO rrim: message`` (UTC, milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC ISO 8601), ``level``, ``logger``, ``message``, the fields a
    record carries in ``extra={"fields": {...}}`` (progress: files, spectra_per_second, eta_seconds…) and
    ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": _utc(record.created), "level": record.levelname, "logger": record.name,
               "message": record.getMessage(), **getattr(record, "fields", {})}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(verbose: int = 0, quiet: bool = False, fmt: str = "text") -> None:
    """One handler on stderr for every logger: rrim at INFO (-v: DEBUG; -q: ERROR), the libraries of
    :data:`LIBRARY_LOGGERS` at WARNING (-v: INFO; -vv: DEBUG; -q: ERROR), lines in format ``fmt``. Sets
    ``DASK_LOGGING__DISTRIBUTED`` to that level for the Dask worker processes this one starts."""
    rrim_level = logging.ERROR if quiet else (logging.DEBUG if verbose >= 1 else logging.INFO)
    lib_level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(min(rrim_level, lib_level))
    logging.getLogger("rrim").setLevel(rrim_level)
    # Dask's worker processes configure their logging from the environment they inherit
    os.environ["DASK_LOGGING__DISTRIBUTED"] = logging.getLevelName(lib_level).lower()
    for name in LIBRARY_LOGGERS:  # their own handlers (distributed installs one) would bypass the format
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(lib_level)


def _log_setting(key: str):
    def callback(ctx: click.Context, param, value):
        settings = ctx.meta.setdefault("rrim.logging", {"verbose": 0, "quiet": False, "fmt": "text"})
        if key == "verbose":
            settings[key] += value or 0  # -v before and after the command add up
        elif value:
            settings[key] = value
        configure_logging(**settings)
    return callback


def logging_options() -> list[click.Option]:
    """-v/--verbose, -q/--quiet and --log-format, for the group and every command (so they may stand
    anywhere on the command line); each one reconfigures :func:`configure_logging`."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_log_setting("verbose"),
                     help="More detail on stderr: -v rrim's debug lines and the libraries' info, -vv everything."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_log_setting("quiet"),
                     help="Only errors on stderr."),
        click.Option(["--log-format"], type=click.Choice(LOG_FORMATS), default=None, expose_value=False,
                     callback=_log_setting("fmt"),
                     help="Log lines as text (UTC time, level, logger, message) or JSON lines.  [default: text]"),
    ]


class Progress:
    """Progress of a job: a click progress bar on stderr when it is a terminal and the job is one file,
    else a log line at most every ``every`` seconds (and at the end) with what is done, the rate of
    spectra and the time left (ETA).

    Call it with ``(done, total)`` spectra of the file being inverted; :meth:`files` reports files
    finished (jobs over several files: counts, rate and ETA are then over files).
    """

    def __init__(self, label: str, every: float = PROGRESS_SECONDS, clock=time.monotonic):
        self.label, self.every, self.clock = label, every, clock
        self.bar, self.start, self.logged = None, clock(), None
        self.last = self.total = 0  # spectra of the file being inverted
        self.spectra_before = 0  # spectra of the finished files
        self.files_done = self.files_total = None

    def files(self, done: int, total: int, spectra: int) -> None:
        """``done`` of ``total`` files finished, holding ``spectra`` spectra; logs when it is time or all are done."""
        self.files_done, self.files_total, self.spectra_before, self.last = done, total, spectra, 0
        self._log(force=done == total)

    def __call__(self, done: int, total: int) -> None:
        if self.files_total is None and sys.stderr.isatty():
            if self.bar is None:
                self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
                self.bar.__enter__()
            self.bar.update(done - self.last)
            self.last = done
            return
        self.last, self.total = done, total
        self._log(force=self.files_total is None and done == total)

    def _log(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - (self.start if self.logged is None else self.logged) < self.every:
            return
        self.logged = now
        elapsed = max(now - self.start, 1e-9)
        spectra = self.spectra_before + self.last
        rate = spectra / elapsed
        fields = {"elapsed_seconds": round(elapsed, 1), "spectra": spectra, "spectra_per_second": round(rate, 1)}
        if self.files_total is not None:
            fields.update(files_done=self.files_done, files_total=self.files_total)
            fraction = self.files_done / self.files_total if self.files_total else 1.0
            what = f"{self.files_done}/{self.files_total} files"
        else:
            fields["spectra_total"] = self.total
            fraction = spectra / self.total if self.total else 1.0
            what = f"{spectra}/{self.total} spectra"
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        fields["eta_seconds"] = None if eta is None else round(eta, 1)
        log.info("%s: %s, %.1f spectra/s, ETA %s", self.label, what, rate,
                 "unknown" if eta is None else f"{eta:.0f} s", extra={"fields": fields})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


class Heartbeat:
    """A log line every ``every`` seconds while a step with no progress of its own runs (``with Heartbeat(label):``)."""

    def __init__(self, label: str, every: float = PROGRESS_SECONDS):
        import threading

        self.label, self.every, self.start = label, every, time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="rrim-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.every):
            elapsed = time.monotonic() - self.start
            log.info("%s: running, %.0f s so far", self.label, elapsed, extra={"fields": {"elapsed_seconds": round(elapsed, 1)}})

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        log.info("%s: done in %.1f s", self.label, time.monotonic() - self.start)


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
