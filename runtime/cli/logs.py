"""Logging and progress of the ``rrim`` commands: one timestamped line each on stderr (text or JSON
lines), -v/-q/--log-format anywhere on the command line, the libraries' loggers under rrim's level, and
progress as a bar on a terminal or as periodic log lines (files, spectra/s, ETA) when unattended."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

import click

log = logging.getLogger("rrim")

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
