"""``rrim reprocess``: a folder of archives, idempotent and locked, optionally on Dask."""
from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from rrim.cli.common import (EXIT_BUSY, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MOSTLY_SKIPPED, EXIT_OK, EXIT_USAGE,
                             archive_options, check_side_outputs, emit, engine_for, exit_code, fail,
                             sigterm_as_interrupt)
from rrim.cli.logs import Progress

log = logging.getLogger("rrim")

LOCK_NAME = ".rrim-reprocess.lock"
OUTPUT_SUFFIX = ".glue.nc"


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


@click.command("reprocess")
@click.argument("archive_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--pattern", default="*.nc", show_default=True, help="Glob of input files (use **/*.nc to recurse).")
@click.option("--force", is_flag=True, help="Redo files whose outputs are current.")
@click.option("--min-age", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Leave files modified less than SECONDS ago for a later run (files still being copied in).")
@click.option("--dry-run", is_flag=True,
              help="Open and validate every file that would be inverted (variable, units, ω range, temperatures) "
                   "and say what would be done; invert and write nothing.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another run's lock on the output folder (then exit 5).")
@click.option("--dask-scheduler", metavar="ADDRESS", help="Run the files on this Dask distributed scheduler (needs rrim[dask]).")
@click.option("--dask-workers", type=click.IntRange(min=1), help="Run the files on a local Dask cluster of N worker processes.")
@archive_options
def reprocess_command(archive_dir, output_dir, pattern, force, min_age, dry_run, lock_timeout, dask_scheduler,
                      dask_workers, model_name, sha256, provider, batch_size, report, opts):
    """Invert every archive in ARCHIVE_DIR matching --pattern into OUTPUT_DIR/NAME.glue.nc.

    Idempotent: a file whose output records the same input sha256, model sha256 and options is
    skipped; an input whose size, mtime, ctime and inode are those recorded at its last hashing is
    not read again. A failing file is reported and the others go on. Exit 1 when a file failed for
    the first time; a file whose same bytes failed the same way before for a reason of the input
    (same error, model and options) is retried and reported under "still_failing" without failing the
    run again (docs/OPERATIONS.md). One run per output folder at a time (a lock file in it). A file reached
    through a link that leads out of ARCHIVE_DIR is not read (reported as failed).
    """
    import filelock

    from rrim.files import file_kind
    from rrim.io.paths import ArchiveError, display_name
    from rrim.jobs.reprocess import STATE_NAME, RunState, is_current, remove_stale_temporaries, reprocess_one

    sigterm_as_interrupt()  # until the lock is held nothing is written: a signal stops at once
    src_dir, out_dir = Path(archive_dir).resolve(), Path(output_dir).resolve()
    try:
        if out_dir == src_dir or out_dir in src_dir.parents:
            raise ArchiveError(f"{output_dir}: the output folder {'is' if out_dir == src_dir else 'contains'} ARCHIVE_DIR "
                               f"{archive_dir}; outputs would land among the inputs (give a folder outside it)")
        if report is not None:
            r = Path(report).resolve()
            if src_dir in r.parents:
                raise ArchiveError(f"{report}: --report inside ARCHIVE_DIR {archive_dir}; inputs are never modified")
            if out_dir in r.parents and (r.name.endswith(OUTPUT_SUFFIX) or r.name in (LOCK_NAME, STATE_NAME)):
                raise ArchiveError(f"{report}: --report would overwrite an output, the lock or the run record of {output_dir}")
            if r.parent != out_dir:  # OUT_DIR itself is created below
                check_side_outputs({"--report": report}, inputs={}, outputs={})
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise click.BadParameter(f"--pattern {pattern!r}: must be relative to ARCHIVE_DIR, without '..'")
    except Exception as e:
        fail(e, None, archive_dir=str(src_dir), output_dir=str(out_dir))
    try:
        engine = engine_for(model_name, sha256, provider, opts.tf32, batch_size)
        model = engine.model
        if not dry_run:
            if not out_dir.parent.is_dir():
                raise ArchiveError(f"{out_dir}: its parent folder does not exist")
            out_dir.mkdir(exist_ok=True)
    except (Exception, KeyboardInterrupt) as e:
        fail(e, report, archive_dir=str(src_dir), output_dir=str(out_dir))
    try:
        found = sorted(p for p in src_dir.glob(pattern)
                       if not p.name.startswith(".") and out_dir not in p.resolve().parents)
    except (ValueError, NotImplementedError) as e:  # pathlib refuses some patterns
        fail(click.BadParameter(f"--pattern {pattern!r}: {e}"), report, archive_dir=str(src_dir))
    if not found:
        log.warning("%s: no file matches --pattern %r; nothing to do", src_dir, pattern)
    t0 = time.perf_counter()
    lock = filelock.FileLock(str(out_dir / LOCK_NAME)) if not dry_run else None
    try:
        if lock is not None:
            if lock_timeout > 0:
                log.info("%s: waiting up to %g s for the output folder's lock", out_dir, lock_timeout)
            lock.acquire(timeout=lock_timeout)
    except filelock.Timeout:
        log.error("%s: another rrim reprocess holds %s; try later or pass --lock-timeout", out_dir, LOCK_NAME)
        emit({"status": "busy", "output_dir": str(out_dir), "exit_code": EXIT_BUSY}, report)
        sys.exit(EXIT_BUSY)
    except OSError as e:
        fail(ArchiveError(f"{out_dir}: cannot create the lock file ({e.strerror or e})"), report)
    except KeyboardInterrupt as e:  # while waiting for another run's lock
        fail(e, report, archive_dir=str(src_dir), output_dir=str(out_dir))
    state = RunState(out_dir)
    done, skipped, deferred, failed, still_failing, planned = [], [], [], [], [], []
    setting = hashlib.sha256(f"{model.sha256}|{opts.to_json()}".encode()).hexdigest()

    def failure(rel: str, error: str, code: int, what: str) -> None:
        """Report a failed file: a new failure, or a known one (same bytes, model and options; bad input)."""
        known = state.fail(rel, hashlib.sha256(f"{what}|{setting}|{code}".encode()).hexdigest(), error)
        if known is not None and code == EXIT_USAGE:
            entry = state.failures()[rel]
            still_failing.append({"input": rel, "error": error, "exit_code": code, "since": entry["since"],
                                  "runs": entry["runs"]})
            log.warning("%s: still failing, unchanged since %s (%d runs; not a new failure): %s", rel,
                        entry["since"], entry["runs"], error)
        else:
            failed.append({"input": rel, "error": error, "exit_code": code})
            log.error("%s: %s", rel, error)

    # a link that leads out of ARCHIVE_DIR is not followed: the job reads only what the folder holds
    inputs = []
    for p in found:
        kind = file_kind(p)
        rel = display_name(str(p.relative_to(src_dir)))
        if src_dir not in p.resolve().parents:
            failure(rel, f"{p}: links to {p.resolve()}, outside {src_dir}; not followed", EXIT_USAGE, f"link {p.resolve()}")
        elif kind is not None:
            failure(rel, f"{p}: matches --pattern {pattern!r} but is {kind}, not an archive file; not read", EXIT_USAGE,
                    kind)
        else:
            inputs.append(p)
    targets: dict[Path, list[Path]] = {}
    for p in inputs:
        targets.setdefault(_output_for(p, src_dir, out_dir), []).append(p)
    for out, group in targets.items():
        if len(group) > 1:
            names = ", ".join(display_name(str(q.relative_to(src_dir))) for q in group)
            for q in group:
                failure(display_name(str(q.relative_to(src_dir))),
                        f"{q}: inputs {names} would all write {out.name}; none of them is inverted "
                        "(rename them or narrow --pattern)", EXIT_USAGE, f"clash {names}")
    inputs = [p for p in inputs if len(targets[_output_for(p, src_dir, out_dir)]) == 1]
    stop = _StopAfterFile()
    interrupted = False
    spectra = 0
    try:
        jobs = []  # (rel, path, out, digest, identity) of the files to invert
        now = time.time()
        for path in inputs:
            if stop.requested:
                break
            rel = display_name(str(path.relative_to(src_dir)))
            out = _output_for(path, src_dir, out_dir)
            digest = None
            try:
                age = now - path.stat().st_mtime
                if age < min_age:
                    deferred.append(rel)
                    log.info("%s: modified %.0f s ago, less than --min-age %g s; left for a later run", rel,
                             max(age, 0), min_age)
                    continue
                if not dry_run:  # a run killed while redoing a current output (--force) left its temporary
                    remove_stale_temporaries(out)
                digest, ident = state.digest(rel, path)
                if not force and is_current(out, digest, model, opts, provider=engine.provider):
                    skipped.append(rel)
                    state.succeed(rel)
                    log.info("%s: output current, skipped", rel)
                elif not force and _holds_another_input(out, path):
                    raise ArchiveError(f"{path}: {out} holds the inversion of another input "
                                       f"({_holds_another_input(out, path)}); not replaced (remove it or pass --force)")
                elif dry_run:
                    _validate(path, model, opts)
                    planned.append(rel)
                    log.info("%s: valid, would be inverted", rel)
                else:
                    jobs.append((rel, path, out, digest, ident))
            except Exception as e:
                failure(rel, str(e), exit_code(e), digest or "unread")
        progress = Progress("reprocess")
        if jobs:
            progress.files(0, len(jobs), 0)
        digests = {rel: digest for rel, _, _, digest, _ in jobs}
        if dask_scheduler or dask_workers:
            from rrim.plugins.distributed import reprocess_on_dask

            results = reprocess_on_dask(jobs, model, opts, scheduler=dask_scheduler, n_workers=dask_workers,
                                        provider=provider, batch_size=engine.batch_size if jobs else 1)
        else:
            results = ((rel, _attempt(reprocess_one, path, out, engine, opts, input_sha256=digest, input_identity=ident,
                                      progress=progress))
                       for rel, path, out, digest, ident in jobs if not stop.requested)
        for rel, result in results:
            if isinstance(result, Exception):
                failure(str(rel), str(result), exit_code(result), digests[rel])
            else:
                done.append({"input": str(rel), **result})
                state.succeed(rel)
                spectra += result["n_spectra"]
                log.info("%s → %s (%d spectra)", rel, Path(result["output"]).name, result["n_spectra"])
            progress.files(len(done) + sum(f["input"] in digests for f in failed + still_failing), len(jobs), spectra)
            if stop.requested:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        engine.close()
        try:
            if not dry_run:
                state.save(display_name(str(p.relative_to(src_dir))) for p in found)
        except OSError as e:
            log.error("%s: the run record could not be written (%s); the next run hashes every input again",
                      state.path, e.strerror or e)
        if lock is not None:
            lock.release()
    settled = len(done) + len(failed) + len(still_failing) + len(skipped) + len(planned) + len(deferred)
    interrupted = interrupted or (stop.requested and settled < len(found))
    mostly_skipped = [d["input"] for d in done if 2 * d["spectra_skipped"] > d["n_spectra"]]
    status = "interrupted" if interrupted else ("failed" if failed else "mostly_skipped" if mostly_skipped else "ok")
    code = EXIT_INTERRUPTED if interrupted else (EXIT_FAILED if failed else EXIT_MOSTLY_SKIPPED if mostly_skipped else EXIT_OK)
    totals = {"files": len(found), "processed": len(done), "skipped": len(skipped), "deferred": len(deferred),
              "failed": len(failed), "still_failing": len(still_failing), "mostly_skipped": len(mostly_skipped),
              "spectra": spectra, "hashed": state.hashed}
    summary = {"status": status, "exit_code": code, "archive_dir": str(src_dir), "output_dir": str(out_dir),
               "pattern": pattern, "model": model.name, "model_sha256": model.sha256, "provider": engine.provider,
               "options": json.loads(opts.to_json()), "processed": done, "skipped": skipped, "deferred": deferred,
               "failed": failed, "still_failing": still_failing, "totals": totals,
               **({"mostly_skipped": mostly_skipped} if mostly_skipped else {}),
               "seconds": round(time.perf_counter() - t0, 3)}
    if dry_run:
        totals["would_process"] = len(planned)
        summary.update(status="dry-run" if not interrupted else status, would_process=planned)
    log.info("reprocess: %s", ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in totals.items()),
             extra={"fields": {"totals": totals, "exit_code": code}})
    emit(summary, report)
    sys.exit(code)


def _validate(path: Path, model, opts) -> None:
    """Open ``path`` and validate it against ``model`` and ``opts`` as ``invert`` would, reading no spectra."""
    from rrim.io.reading import open_dataset, read_source

    with open_dataset(path) as ds:
        read_source(ds, path, model, opts)


def _output_for(path: Path, src_dir: Path, out_dir: Path) -> Path:
    """OUT_DIR/REL/NAME.glue.nc for input ARCHIVE_DIR/REL/NAME.EXT."""
    rel = path.relative_to(src_dir)
    return out_dir / rel.parent / ((rel.name[: -len(path.suffix)] if path.suffix else rel.name) + OUTPUT_SUFFIX)


def _holds_another_input(out: Path, path: Path) -> str | None:
    """The input file name an existing output records, when it is not ``path``'s (else None)."""
    from rrim.io.paths import display_name
    from rrim.io.provenance import read_provenance

    recorded = (read_provenance(out) or {}).get("input_file")
    return recorded if recorded is not None and recorded != display_name(path.name) else None


def _attempt(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or the exception it raised (KeyboardInterrupt passes through)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        return e
