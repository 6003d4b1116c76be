"""Concurrent ``rrim reprocess`` jobs on one archive and output folder (one named through a
symlink): no file is inverted twice, each input has exactly one output, equal to a lone run's;
a job waiting for the lock stops cleanly on SIGTERM."""
from __future__ import annotations

import signal

import pytest

from reliability_support import (Running, assert_same_outputs, make_job, outputs, parse_summary, run_rrim, tally,
                                 temporaries, tree_hashes)
from runtime_helpers import write_model

N_FILES = 16
EXIT_BUSY, EXIT_INTERRUPTED = 5, 130


@pytest.fixture(scope="module")
def job(tmp_path_factory, small_operator):
    root = tmp_path_factory.mktemp("concurrency")
    model = write_model(root, small_operator, "baked")
    archive = root / "archive"
    make_job(archive, small_operator, N_FILES, 24)
    p, _ = run_rrim(*_args(archive, root / "reference", model), cwd=root)
    assert p.returncode == 0, p.stderr
    return {"root": root, "archive": archive, "model": model, "reference": outputs(root / "reference"),
            "inputs": sorted(p.name for p in archive.iterdir())}


def _args(archive, out, model, *extra):
    return ("reprocess", archive, "-o", out, "--model", model, "--provider", "cpu", *extra)


def _start_three(job, tmp_path, *extra):
    out = tmp_path / "out"
    out.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(out)  # the same folder under another name: the same lock
    runs = [Running(*_args(job["archive"], o, job["model"], *extra), cwd=tmp_path) for o in (out, out, alias)]
    results = [r.finish(timeout=300) for r in runs]
    return out, [(rc, parse_summary(stdout), stderr) for rc, stdout, stderr in results]


def _check_one_output_per_input(job, out, processed: list[str]) -> None:
    assert sorted(processed) == job["inputs"], f"double or missing work: {sorted(processed)}"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == [n.replace(".nc", ".glue.nc") for n in job["inputs"]] and temporaries(out) == []
    assert_same_outputs(outputs(out), job["reference"])


def test_three_jobs_waiting_for_the_lock_share_the_work_once(job, tmp_path):
    out, results = _start_three(job, tmp_path, "--lock-timeout", "300")
    processed = []
    for rc, s, stderr in results:
        assert rc == 0 and s["status"] == "ok" and "Traceback" not in stderr, stderr
        assert sorted([d["input"] for d in s["processed"]] + s["skipped"]) == job["inputs"]
        processed += [d["input"] for d in s["processed"]]
    _check_one_output_per_input(job, out, processed)
    assert sorted(len(s["processed"]) for _, s, _ in results) == [0, 0, N_FILES]  # the lock serializes whole runs
    tally("concurrency", jobs=3, mode="--lock-timeout (wait)", files=N_FILES, inverted=len(processed), outputs_lost=0)


def test_three_jobs_without_waiting_one_works_the_others_say_busy(job, tmp_path):
    out, results = _start_three(job, tmp_path)
    processed = []
    for rc, s, stderr in results:
        assert "Traceback" not in stderr
        if rc == EXIT_BUSY:
            assert s["status"] == "busy" and ".rrim-reprocess.lock" in stderr
        else:  # it ran, or started after another had finished and found every output current
            assert rc == 0 and sorted([d["input"] for d in s["processed"]] + s["skipped"]) == job["inputs"]
            processed += [d["input"] for d in s["processed"]]
    assert any(rc == 0 for rc, _, _ in results)
    _check_one_output_per_input(job, out, processed)
    tally("concurrency", jobs=3, mode="no wait (exit 5 busy)", files=N_FILES, inverted=len(processed), outputs_lost=0)


def test_sigterm_while_waiting_for_the_lock(job, tmp_path):
    import filelock

    out = tmp_path / "out"
    out.mkdir()
    with filelock.FileLock(str(out / ".rrim-reprocess.lock")):
        r = Running(*_args(job["archive"], out, job["model"], "--lock-timeout", "300"), cwd=tmp_path)
        assert r.wait_for("waiting up to 300 s for the output folder's lock")
        r.signal_group(signal.SIGTERM)
        rc, stdout, stderr = r.finish()
    assert rc == EXIT_INTERRUPTED and "Traceback" not in stderr, stderr
    assert parse_summary(stdout)["status"] == "interrupted" and "interrupted" in stderr
    assert [p.name for p in out.iterdir()] == [".rrim-reprocess.lock"]
    tally("signal", signal="SIGTERM while waiting for the lock", exit_code=rc, outputs_lost=0)
