"""Crash consistency of ``rrim reprocess``: SIGKILL at seeded random points of a multi-file job,
then a rerun; SIGTERM and Ctrl-C (SIGINT) stop cleanly after the current file with exit code 130.

After every kill: each output already present is complete (atomic rename), the rerun redoes
only what was not finished, and the final outputs equal those of an uninterrupted run (arrays and
identity attributes); no temporary file is left and the inputs are byte-identical.
"""
from __future__ import annotations

import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reliability_support import (Running, assert_same_outputs, make_job, outputs, parse_summary, run_rrim, tally,
                                 temporaries, tree_hashes)
from runtime_helpers import write_model

#: 30 files: the file loop (not start-up) takes most of a run, so the kills spread over it
N_FILES, N_SPECTRA = 30, 24
EXIT_INTERRUPTED = 130
MISSED = "finished before the kill"
MODEL_LOADED = " form, sha256 "  # the CLI's log line once the model is verified and its session built


@dataclass
class Job:
    root: Path
    archive: Path
    model: Path
    input_hashes: dict
    reference_dir: Path
    reference: dict
    work_seconds: float  # from the model-loaded log line to the end of an uninterrupted run

    def args(self, out: Path, *extra) -> tuple:
        return ("reprocess", self.archive, "-o", out, "--model", self.model, "--provider", "cpu", *extra)


@pytest.fixture(scope="module")
def job(tmp_path_factory, small_operator) -> Job:
    """A 12-file archive and the outputs of one uninterrupted run."""
    root = tmp_path_factory.mktemp("crash")
    model = write_model(root, small_operator, "baked")
    archive = root / "archive"
    make_job(archive, small_operator, N_FILES, N_SPECTRA)
    ref = root / "reference"
    r = Running("reprocess", archive, "-o", ref, "--model", model, "--provider", "cpu", cwd=root)
    assert r.wait_for(MODEL_LOADED), "".join(r.lines)
    t0 = time.monotonic()
    rc, stdout, stderr = r.finish()
    assert rc == 0 and len(parse_summary(stdout)["processed"]) == N_FILES, stderr
    return Job(root, archive, model, tree_hashes(archive), ref, outputs(ref), time.monotonic() - t0)


def _stage(n_done: int, tmp: list, rc, over_complete: bool) -> str:
    if rc is not None:
        return MISSED
    if tmp:
        return "while replacing an output (--force)" if over_complete else "while writing an output"
    if over_complete:
        return "during --force, no output open"
    if n_done == 0:
        return "before the first output"
    return "after the last output" if n_done == N_FILES else "between outputs"


def kill_and_rerun(job: Job, trial: int, rng: np.random.Generator, over_complete: bool) -> str:
    """One SIGKILL at a random point, checks of what it left, a rerun, checks of the end state.

    ``over_complete``: the killed run is ``--force`` over a complete output folder (earlier outputs
    must survive) and the rerun is the plain job, as a scheduler would start it next time.
    """
    out = job.root / f"kill{trial:02d}"
    if over_complete:
        shutil.copytree(job.reference_dir, out)
    r = Running(*job.args(out, *(["--force"] if over_complete else [])), cwd=job.root)
    assert r.wait_for(MODEL_LOADED), "".join(r.lines)
    time.sleep(rng.uniform(0.0, job.work_seconds))
    rc_before = r.proc.poll()
    r.signal_group(signal.SIGKILL)
    r.finish()
    done = outputs(out) if out.exists() else {}  # raises if any output is partial or corrupt
    for name, content in done.items():  # every output visible after the kill is complete and right
        assert_same_outputs({name: content}, {name: job.reference[name]}, f"after kill {trial}")
    stage = _stage(len(done), temporaries(out), rc_before, over_complete)
    if over_complete:
        assert sorted(done) == sorted(job.reference), f"kill {trial}: an earlier output was lost"

    p, s = run_rrim(*job.args(out), cwd=job.root)
    assert p.returncode == 0 and s["status"] == "ok" and s["failed"] == [], (trial, p.stderr)
    processed = [d["input"] for d in s["processed"]]
    inputs = sorted(n for n in job.input_hashes)
    assert sorted(processed + s["skipped"]) == inputs, f"kill {trial}: missing or duplicated work"
    finished = {n.replace(".glue.nc", ".nc") for n in done}
    assert set(s["skipped"]) == finished, f"kill {trial}: finished files were redone or unfinished ones skipped"
    assert_same_outputs(outputs(out), job.reference, f"rerun after kill {trial} ({stage})")
    assert temporaries(out) == [], f"kill {trial}: temporary files left"
    assert tree_hashes(job.archive) == job.input_hashes, f"kill {trial}: an input changed"
    shutil.rmtree(out)
    return stage


def _kill_series(job: Job, n_kills: int, seed: int) -> dict:
    """``n_kills`` kills that landed in a running job (a run that ended before its kill is not counted)."""
    rng = np.random.default_rng(seed)
    stages: dict[str, int] = {}
    trial = landed = 0
    while landed < n_kills:
        assert trial < 3 * n_kills, stages
        stage = kill_and_rerun(job, trial, rng, over_complete=trial % 3 == 2)
        stages[stage] = stages.get(stage, 0) + 1
        landed += stage != MISSED
        trial += 1
    tally("sigkill", kills=landed, runs=trial, files=N_FILES, stages=stages, outputs_lost=0)
    return stages


def test_sigkill_at_4_random_points_then_rerun_equals_uninterrupted(job):
    _kill_series(job, 4, seed=4)


@pytest.mark.slow
def test_sigkill_at_20_random_points_then_rerun_equals_uninterrupted(job):
    stages = _kill_series(job, 20, seed=20)
    assert len(set(stages) - {MISSED}) >= 3, stages  # the kills landed at different stages of the job


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGINT,), (signal.SIGTERM, signal.SIGTERM)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM twice"])
def test_sigterm_and_ctrl_c_stop_cleanly_with_exit_130(job, signals):
    """One signal: the file being written is finished, no other is started. Two: stop at once,
    that file's temporary removed. Either way exit 130, an 'interrupted' summary, only complete
    outputs, and the rerun does the rest."""
    out = job.root / f"signal-{'-'.join(str(int(x)) for x in signals)}"
    r = Running(*job.args(out), cwd=job.root)
    assert r.wait_for("→ run01.glue.nc"), "".join(r.lines)
    for signum in signals:
        r.signal_group(signum)
    rc, stdout, stderr = r.finish()
    assert rc == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr and "finishing the current file, then stopping" in stderr
    s = parse_summary(stdout)
    assert s["status"] == "interrupted" and s["exit_code"] == EXIT_INTERRUPTED
    done = sorted(d["input"] for d in s["processed"])
    assert 2 <= len(done) < N_FILES
    present = outputs(out)
    assert sorted(present) == [n.replace(".nc", ".glue.nc") for n in done]
    assert_same_outputs(present, {n: job.reference[n] for n in present}, "after the signal")
    assert temporaries(out) == []
    p, s2 = run_rrim(*job.args(out), cwd=job.root)  # the lock was released: a rerun completes the job
    assert p.returncode == 0 and sorted(s2["skipped"]) == done
    assert_same_outputs(outputs(out), job.reference, "rerun after the signal")
    assert tree_hashes(job.archive) == job.input_hashes
    tally("signal", signal=" + ".join(signal.Signals(x).name for x in signals), exit_code=rc, outputs_lost=0)
