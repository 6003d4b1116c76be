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
130  interrupted (Ctrl-C / SIGTERM); no partial output is left. ``reprocess`` finishes
     the file it is writing and starts no other; a second signal stops at once
==== ==========================================================================
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from . import __version__

log = logging.getLogger("rrim")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_CUDA, EXIT_MODEL, EXIT_BUSY, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXAMPLE_ARCHIVE = Path(__file__).resolve().parent / "examples" / "example_archive.nc"
LOCK_NAME = ".rrim-reprocess.lock"
OUTPUT_SUFFIX = ".glue.nc"


def _exit_code(exc: BaseException) -> int:
    from .archives import ArchiveError
    from .modelfile import ModelFileError
    from .sessions import ProviderUnavailable

    if isinstance(exc, ProviderUnavailable):
        return EXIT_NO_CUDA
    if isinstance(exc, ModelFileError):
        return EXIT_MODEL
    if isinstance(exc, (ArchiveError, ValueError, click.BadParameter)):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def _emit(summary: dict, report: str | None) -> None:
    """The JSON summary to stdout, or atomically to ``report``; if that fails, to stdout with the error
    logged (and exit 1 if nothing else failed)."""
    from .files import atomic_write_text

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


def _check_side_outputs(paths: dict, *, inputs: dict, outputs: dict) -> None:
    """Refuse (before any work) a report or plot path ({option: path}) that is missing its folder, is a
    folder, or would overwrite an input ({label: path}), an output or another side output."""
    from .archives import ArchiveError, check_output_path

    for option, path in paths.items():
        if path is None:
            continue
        others = {**outputs, **{f"{o} file": q for o, q in paths.items() if o != option}}
        for label, inp in inputs.items():
            if inp is not None and Path(path).resolve() == Path(inp).resolve():
                raise ArchiveError(f"{path}: {option} would overwrite the {label}; inputs are never modified")
        check_output_path(path, what=f"{option} file", others=others)


def _fail(exc: BaseException, report: str | None, **context) -> None:
    code = _exit_code(exc)
    message = "interrupted (Ctrl-C or SIGTERM); nothing was written" if code == EXIT_INTERRUPTED else \
        str(exc) or type(exc).__name__
    if code == EXIT_FAILED:
        log.error("%s: %s", type(exc).__name__, message, exc_info=log.isEnabledFor(logging.DEBUG))
    else:
        log.error("%s", message)
    status = "interrupted" if code == EXIT_INTERRUPTED else "error"
    _emit({"status": status, "error": message, "exit_code": code, **context}, report)
    sys.exit(code)


def _sigterm_as_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. under a test runner's thread)
        pass


class _StopAfterFile:
    """SIGTERM / SIGINT handling of ``reprocess``: the first signal lets the file being written finish
    and starts no other (a flag, so no library call can swallow it); a second one stops at once
    (KeyboardInterrupt: that file's temporary output is removed)."""

    def __init__(self):
        self.requested = False
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._handler)
        except ValueError:  # not the main thread (e.g. under a test runner's thread)
            pass

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: finishing the current file, then stopping (send it again to stop at once)",
                    signal.Signals(signum).name)


class _Progress:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrim")
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool):
    """rrim: optical scattering rates → electron-boson glue functions I²χ(Ω).

    Exit codes: 0 ok; 1 some files failed or a check failed; 2 usage error or bad input;
    3 CUDA asked for but unavailable; 4 model refused; 5 output folder locked by another run;
    130 interrupted.
    """
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=level, format="rrim %(levelname)s: %(message)s", force=True)


def _archive_options(f):
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


def _options(var, dim, temperature, temperature_var, crop, smoothing, uncertainty, impurity, tf32):
    from .archives import ArchiveOptions

    return ArchiveOptions(var=var, dim=dim, temperature_name=temperature_var, temperature=temperature,
                          crop=crop, smoothing_meV=smoothing, uncertainty=None if uncertainty is None else float(uncertainty),
                          impurity=impurity, tf32=tf32)


def _load(model_name, sha256, provider, tf32):
    from .models import load_model

    model = load_model(model_name, sha256=sha256)
    session = model.session(provider, tf32=tf32)
    log.info("model %s (%s form, sha256 %s…) on %s", model.name, model.form, model.sha256[:12], session.provider)
    return model, session


@main.command("invert")
@click.argument("input_path", metavar="INPUT.nc", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output NetCDF file.")
@click.option("--example", is_flag=True, help="Invert the example archive shipped with rrim (instead of INPUT.nc).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG of a few spectra (needs rrim[plot]).")
@click.option("--plot-spectra", type=click.IntRange(1, 12), default=3, show_default=True)
@_archive_options
def invert_command(input_path, output, example, plot_path, plot_spectra, model_name, sha256, provider, tf32,
                   batch_size, var, dim, temperature, temperature_var, crop, smoothing, uncertainty, impurity, report):
    """Invert the scattering rates of INPUT.nc into glue functions written to OUTPUT."""
    from .archives import invert_archive
    from .tuning import choose_batch_size

    _sigterm_as_interrupt()
    source = EXAMPLE_ARCHIVE if example else Path(input_path or "")
    try:
        _check_side_outputs({"--report": report, "--plot": plot_path},
                            inputs={"input": source if example or input_path else None}, outputs={"output": output})
    except Exception as e:
        _fail(e, None, input=str(source), output=str(output))
    if example == bool(input_path):
        _fail(click.BadParameter("give either INPUT.nc or --example"), report)
    progress = _Progress("inverting")
    try:
        opts = _options(var, dim, temperature, temperature_var, crop, smoothing, uncertainty, impurity, tf32)
        model, session = _load(model_name, sha256, provider, tf32)
        batch_size = batch_size or choose_batch_size(model, session)
        summary = invert_archive(source, output, model, opts, provider=provider, batch_size=batch_size,
                                 progress=progress, preview=plot_spectra if plot_path else 0)
        progress.close()
        result = {"status": "ok", **summary.to_dict(), "output": str(Path(output).resolve()), "batch_size": batch_size}
        if example:
            result["example_glue_error"] = _example_error(source, output)
        if plot_path:
            result["plot"] = str(_plot(summary, plot_path, source if example else None))
    except (Exception, KeyboardInterrupt) as e:
        progress.close()
        _fail(e, report, input=str(source), output=str(output))
    log.info("wrote %s (%d spectra, %.1f spectra/s, provider %s)", result["output"], summary.n_spectra,
             result["spectra_per_second"] or 0, summary.provider)
    if plot_path:
        log.info("plot: %s", result["plot"])
    _emit(result, report)


def _example_error(source: Path, output) -> dict:
    """Median and 90th percentile of ‖x̂ − x_true‖/‖x_true‖ over the example's spectra."""
    import numpy as np

    from .archives import open_dataset

    with open_dataset(source) as a, open_dataset(output) as b:
        truth, glue = a["glue_true"].values, b["glue"].values.astype(np.float64)
    err = np.linalg.norm(glue - truth, axis=-1) / np.linalg.norm(truth, axis=-1)
    return {"median_relative_l2": float(np.median(err)), "p90_relative_l2": float(np.percentile(err, 90))}


def _plot(summary, plot_path, example_source: Path | None) -> Path:
    from .plotting import plot_inversions

    p = summary.preview
    truth = None
    if example_source is not None:
        from .archives import open_dataset

        with open_dataset(example_source) as a:
            t = a["glue_true"].values.reshape(-1, a.sizes["Omega"])
        truth = t[: len(p["glue"])]
    labels = [", ".join(f"{d}={i}" for d, i in zip(p["lead"], idx)) or "spectrum" for idx in p["index"]]
    return plot_inversions(Path(plot_path).resolve(), p["omega"], p["Omega"], p["y"], p["glue"], p["fit"],
                           p["residual"], labels=labels, truth=truth,
                           title=f"{Path(summary.input).name} — model {summary.model} ({summary.provider})")


@main.command("reprocess")
@click.argument("archive_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--pattern", default="*.nc", show_default=True, help="Glob of input files (use **/*.nc to recurse).")
@click.option("--force", is_flag=True, help="Redo files whose outputs are current.")
@click.option("--dry-run", is_flag=True, help="Say what would be done; write nothing.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another run's lock on the output folder (then exit 5).")
@click.option("--dask-scheduler", metavar="ADDRESS", help="Run the files on this Dask distributed scheduler (needs rrim[dask]).")
@click.option("--dask-workers", type=click.IntRange(min=1), help="Run the files on a local Dask cluster of N worker processes.")
@_archive_options
def reprocess_command(archive_dir, output_dir, pattern, force, dry_run, lock_timeout, dask_scheduler, dask_workers,
                      model_name, sha256, provider, tf32, batch_size, var, dim, temperature, temperature_var, crop,
                      smoothing, uncertainty, impurity, report):
    """Invert every archive in ARCHIVE_DIR matching --pattern into OUTPUT_DIR/NAME.glue.nc.

    Idempotent: a file whose output records the same input sha256, model sha256 and options is
    skipped. A failing file is reported and the others go on; exit 1 if any failed. One run per
    output folder at a time (a lock file in it). A file reached through a link that leads out of
    ARCHIVE_DIR is not read (reported as failed).
    """
    import filelock

    from .archives import ArchiveError, display_name, file_sha256, is_current, remove_stale_temporaries, reprocess_one
    from .files import file_kind, identity
    from .tuning import choose_batch_size

    _sigterm_as_interrupt()  # until the lock is held nothing is written: a signal stops at once
    src_dir, out_dir = Path(archive_dir).resolve(), Path(output_dir).resolve()
    try:
        if out_dir == src_dir or out_dir in src_dir.parents:
            raise ArchiveError(f"{output_dir}: the output folder {'is' if out_dir == src_dir else 'contains'} ARCHIVE_DIR "
                               f"{archive_dir}; outputs would land among the inputs (give a folder outside it)")
        if report is not None:
            r = Path(report).resolve()
            if src_dir in r.parents:
                raise ArchiveError(f"{report}: --report inside ARCHIVE_DIR {archive_dir}; inputs are never modified")
            if out_dir in r.parents and (r.name.endswith(OUTPUT_SUFFIX) or r.name == LOCK_NAME):
                raise ArchiveError(f"{report}: --report would overwrite an output or the lock of {output_dir}")
            if r.parent != out_dir:  # OUT_DIR itself is created below
                _check_side_outputs({"--report": report}, inputs={}, outputs={})
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise click.BadParameter(f"--pattern {pattern!r}: must be relative to ARCHIVE_DIR, without '..'")
    except Exception as e:
        _fail(e, None, archive_dir=str(src_dir), output_dir=str(out_dir))
    try:
        opts = _options(var, dim, temperature, temperature_var, crop, smoothing, uncertainty, impurity, tf32)
        model, session = _load(model_name, sha256, provider, tf32)
        if not dry_run:
            if not out_dir.parent.is_dir():
                raise ArchiveError(f"{out_dir}: its parent folder does not exist")
            out_dir.mkdir(exist_ok=True)
    except (Exception, KeyboardInterrupt) as e:
        _fail(e, report, archive_dir=str(src_dir), output_dir=str(out_dir))
    try:
        found = sorted(p for p in src_dir.glob(pattern)
                       if not p.name.startswith(".") and out_dir not in p.resolve().parents)
    except (ValueError, NotImplementedError) as e:  # pathlib refuses some patterns
        _fail(click.BadParameter(f"--pattern {pattern!r}: {e}"), report, archive_dir=str(src_dir))
    if not found:
        log.warning("%s: no file matches --pattern %r; nothing to do", src_dir, pattern)
    done, skipped, failed, planned = [], [], [], []

    def refuse(p: Path, error: str) -> None:
        failed.append({"input": display_name(str(p.relative_to(src_dir))), "exit_code": EXIT_USAGE, "error": error})
        log.error("%s", error)

    # a link that leads out of ARCHIVE_DIR is not followed: the job reads only what the folder holds
    inputs = []
    for p in found:
        kind = file_kind(p)
        if src_dir not in p.resolve().parents:
            refuse(p, f"{p}: links to {p.resolve()}, outside {src_dir}; not followed")
        elif kind is not None:
            refuse(p, f"{p}: matches --pattern {pattern!r} but is {kind}, not an archive file; not read")
        else:
            inputs.append(p)
    targets: dict[Path, list[Path]] = {}
    for p in inputs:
        targets.setdefault(_output_for(p, src_dir, out_dir), []).append(p)
    for out, group in targets.items():
        if len(group) > 1:
            names = ", ".join(display_name(str(q.relative_to(src_dir))) for q in group)
            for q in group:
                refuse(q, f"{q}: inputs {names} would all write {out.name}; none of them is inverted "
                          "(rename them or narrow --pattern)")
    inputs = [p for p in inputs if len(targets[_output_for(p, src_dir, out_dir)]) == 1]
    t0 = time.perf_counter()
    lock = filelock.FileLock(str(out_dir / LOCK_NAME)) if not dry_run else None
    try:
        if lock is not None:
            lock.acquire(timeout=lock_timeout)
    except filelock.Timeout:
        log.error("%s: another rrim reprocess holds %s; try later or pass --lock-timeout", out_dir, LOCK_NAME)
        _emit({"status": "busy", "output_dir": str(out_dir), "exit_code": EXIT_BUSY}, report)
        sys.exit(EXIT_BUSY)
    except OSError as e:
        _fail(ArchiveError(f"{out_dir}: cannot create the lock file ({e.strerror or e})"), report)
    except KeyboardInterrupt as e:  # while waiting for another run's lock
        _fail(e, report, archive_dir=str(src_dir), output_dir=str(out_dir))
    stop = _StopAfterFile()
    interrupted = False
    try:
        jobs = []  # (rel, path, out, digest, identity) of the files to invert
        for path in inputs:
            if stop.requested:
                break
            rel = display_name(str(path.relative_to(src_dir)))
            out = _output_for(path, src_dir, out_dir)
            try:
                if not dry_run:  # a run killed while redoing a current output (--force) left its temporary
                    remove_stale_temporaries(out)
                ident = identity(path)
                digest = file_sha256(path)
                if not force and is_current(out, digest, model, opts, provider=session.provider):
                    skipped.append(rel)
                    log.info("%s: output current, skipped", rel)
                elif not force and _holds_another_input(out, path):
                    raise ArchiveError(f"{path}: {out} holds the inversion of another input "
                                       f"({_holds_another_input(out, path)}); not replaced (remove it or pass --force)")
                elif dry_run:
                    planned.append(rel)
                else:
                    jobs.append((rel, path, out, digest, ident))
            except Exception as e:
                failed.append({"input": rel, "error": str(e), "exit_code": _exit_code(e)})
                log.error("%s: %s", rel, e)
        kwargs = dict(provider=provider, batch_size=batch_size or (choose_batch_size(model, session) if jobs else 1))
        if dask_scheduler or dask_workers:
            from .plugins.distributed import reprocess_on_dask

            results = reprocess_on_dask(jobs, model, opts, scheduler=dask_scheduler, n_workers=dask_workers, **kwargs)
        else:
            results = ((rel, _attempt(reprocess_one, path, out, model, opts, input_sha256=digest, input_identity=ident,
                                      progress=_Progress(str(rel)), **kwargs))
                       for rel, path, out, digest, ident in jobs if not stop.requested)
        for rel, result in results:
            if isinstance(result, Exception):
                failed.append({"input": str(rel), "error": str(result), "exit_code": _exit_code(result)})
                log.error("%s: %s", rel, result)
            else:
                done.append({"input": str(rel), **result})
                log.info("%s → %s (%d spectra)", rel, Path(result["output"]).name, result["n_spectra"])
            if stop.requested:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if lock is not None:
            lock.release()
    interrupted = interrupted or (stop.requested and len(done) + len(failed) + len(skipped) + len(planned) < len(found))
    status = "interrupted" if interrupted else ("failed" if failed else "ok")
    code = EXIT_INTERRUPTED if interrupted else (EXIT_FAILED if failed else EXIT_OK)
    summary = {"status": status, "exit_code": code, "archive_dir": str(src_dir), "output_dir": str(out_dir),
               "pattern": pattern, "model": model.name, "model_sha256": model.sha256, "provider": session.provider,
               "options": json.loads(opts.to_json()), "processed": done, "skipped": skipped, "failed": failed,
               "seconds": round(time.perf_counter() - t0, 3)}
    if dry_run:
        summary.update(status="dry-run", would_process=planned)
    _emit(summary, report)
    sys.exit(code)


def _output_for(path: Path, src_dir: Path, out_dir: Path) -> Path:
    """OUT_DIR/REL/NAME.glue.nc for input ARCHIVE_DIR/REL/NAME.EXT."""
    rel = path.relative_to(src_dir)
    return out_dir / rel.parent / ((rel.name[: -len(path.suffix)] if path.suffix else rel.name) + OUTPUT_SUFFIX)


def _holds_another_input(out: Path, path: Path) -> str | None:
    """The input file name an existing output records, when it is not ``path``'s (else None)."""
    from .archives import display_name, read_provenance

    recorded = (read_provenance(out) or {}).get("input_file")
    return recorded if recorded is not None and recorded != display_name(path.name) else None


def _attempt(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or the exception it raised (KeyboardInterrupt passes through)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        return e


def _is_netcdf(path: Path) -> bool:
    from .files import open_regular

    with open_regular(path) as f:  # a FIFO or device is refused, never waited on
        head = f.read(8)
    return head[:3] == b"CDF" or head[:4] == b"\x89HDF"


@main.command("calibrate")
@click.argument("model_name", metavar="MODEL", default="rrim-default")
@click.option("--sha256", default=None, help="Pin the model file's sha256.")
@click.option("-n", "--spectra", type=click.IntRange(min=20), default=300, show_default=True,
              help="Held-out spectra per noise level in the fit draw and in the test draw.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resamples", type=click.IntRange(min=2, max=1024), default=16, show_default=True,
              help="Noise-resampled copies per spectrum (the band's spread).")
@click.option("--report", "report_md", type=click.Path(dir_okay=False), default=None,
              help="Markdown report (default: NAME.calibration.md beside the model).")
def calibrate_command(model_name, sha256, spectra, seed, resamples, report_md):
    """Calibrate MODEL's uncertainty bands and OOD threshold on held-out synthetic spectra; writes
    NAME.calibration.json (used by --uncertainty and the out_of_distribution flag) beside the model."""
    from .calibration import calibrate, report_markdown
    from .files import atomic_write_text
    from .models import load_model
    from .uncertainty import calibration_path

    try:
        model = load_model(model_name, sha256=sha256)
        out = calibration_path(model.path)
        report = Path(report_md) if report_md else out.with_suffix(".md")
        _check_side_outputs({"--report": report}, inputs={"model": model.path},
                            outputs={"calibration": out, "golden file": model.golden})
        command = f"rrim calibrate {model_name} -n {spectra} --seed {seed} --resamples {resamples}"
        cal = calibrate(model, n=spectra, seed=seed, resamples=resamples, command=command)
        atomic_write_text(out, cal.to_json() + "\n")
        atomic_write_text(report, report_markdown(cal, model))
    except (Exception, KeyboardInterrupt) as e:
        _fail(e, None, model=str(model_name))
    _emit({"calibration": str(out), "report": str(report), "alpha": cal.alpha, "beta": cal.beta,
           "ood_threshold": cal.ood_threshold, "band_scale": cal.band_scale}, None)


@main.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def inspect_command(path):
    """Describe FILE: a model (metadata, grids, sha256) or an archive (variables, units, provenance)."""
    from .files import file_kind

    p = Path(path)
    try:
        if file_kind(p) is not None:
            raise click.BadParameter(f"{p}: is {file_kind(p)}, not a model or archive file")
        if _is_netcdf(p):
            result = _inspect_archive(p)
        else:
            from .models import load_model

            result = {"kind": "model", **load_model(p).describe()}
    except (Exception, KeyboardInterrupt) as e:
        _fail(e, None, path=str(p))
    _emit(result, None)


def _inspect_archive(p: Path) -> dict:
    import numpy as np

    from .archives import PROVENANCE_ATTRIBUTES, file_sha256, open_dataset

    with open_dataset(p) as ds:
        variables = {str(k): {"dims": list(v.dims), "shape": list(v.shape), "dtype": str(v.dtype),
                              "units": v.attrs.get("units")} for k, v in ds.variables.items()}
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
    is_output = "model_sha256" in attrs
    return {"kind": "rrim output" if is_output else "archive", "path": str(p.resolve()), "sha256": file_sha256(p),
            "variables": variables,
            "provenance" if is_output else "attributes": {k: attrs[k] for k in (PROVENANCE_ATTRIBUTES if is_output else attrs) if k in attrs}}


@main.command("models")
def models_command():
    """List the installed models (name, file, sha256, form, golden file, model card)."""
    from .models import MODELS_DIR, installed_models

    try:
        models = installed_models()
    except Exception as e:
        _fail(e, None)
    _emit({"models_dir": str(MODELS_DIR), "models": [
        {"name": m.name, "file": str(m.path), "present": m.path.is_file(), "sha256": m.sha256, "form": m.form,
         "golden": str(m.golden) if m.golden.is_file() else None, "card": str(m.card) if m.card.is_file() else None}
        for m in models.values()]}, None)


@main.command("selfcheck")
def selfcheck_command():
    """Verify every shipped model (sha256, metadata, golden parity) and list the providers that load."""
    from .models import check_golden, installed_models, load_model
    from .sessions import ProviderUnavailable, available_providers

    checks, ok = [], True
    first = None
    for name in installed_models():
        entry = {"model": name}
        try:
            m = load_model(name)
            first = first or m
            g = check_golden(m)
            entry.update(sha256=m.sha256, sha256_ok=True, golden_max_rel_error=g.max_rel_error, golden_rtol=g.rtol,
                         passed=g.passed)
        except Exception as e:
            entry.update(passed=False, error=str(e))
        ok &= entry["passed"]
        checks.append(entry)
    if not checks:
        ok = False
        log.error("no installed models")
    providers = {}
    for prov in ("cpu", "cuda"):
        if first is None:
            break
        try:
            providers[prov] = first.session(prov).provider == prov
        except ProviderUnavailable as e:
            providers[prov] = False
            log.info("%s", e)
    _emit({"status": "ok" if ok else "failed", "rrim_version": __version__, "models": checks,
           "onnxruntime_providers": available_providers(), "providers_that_load": providers}, None)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _register_export_commands() -> None:
    from .export.commands import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_export_commands()
