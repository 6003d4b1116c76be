"""Disk and permission faults under ``rrim reprocess``: a file-size limit (RLIMIT_FSIZE, so writes
fail with EFBIG), a real full filesystem (a small tmpfs, where mounting is allowed), a read-only
filesystem and an output folder that cannot exist. Each gives a clear error naming the file and
the reason, leaves no partial output, keeps earlier outputs intact, and a later run completes.
"""
from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from reliability_support import assert_same_outputs, make_job, outputs, run_rrim, tally, temporaries, tree_hashes
from runtime_helpers import write_model

N_FILES = 8


@pytest.fixture(scope="module")
def job(tmp_path_factory, small_operator):
    """8 small archives plus one of 3000 spectra (an output of ~1 MB), and an unconstrained run's outputs."""
    root = tmp_path_factory.mktemp("disk")
    model = write_model(root, small_operator, "baked")
    archive = root / "archive"
    make_job(archive, small_operator, N_FILES, 24)
    big = make_job(root / "big", small_operator, 1, 3000, seed=9)[0]
    big.rename(archive / "run03b.nc")
    ref = root / "reference"
    p, s = run_rrim(*_args(archive, ref, model), cwd=root)
    assert p.returncode == 0 and len(s["processed"]) == N_FILES + 1, p.stderr
    return {"root": root, "archive": archive, "model": model, "reference": outputs(ref),
            "hashes": tree_hashes(archive)}


def _args(archive, out, model, *extra):
    return ("reprocess", archive, "-o", out, "--model", model, "--provider", "cpu", *extra)


def _file_size_limit(n_bytes: int):
    """preexec_fn: files of at most ``n_bytes``; SIGXFSZ ignored so that a write beyond fails with EFBIG."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return apply


def _assert_clear_write_failures(summary: dict, names: list[str], cause: str) -> None:
    failed = {f["input"]: f for f in summary["failed"]}
    assert sorted(failed) == sorted(names), summary["failed"]
    for name, f in failed.items():
        assert f["exit_code"] == 2
        assert name.replace(".nc", ".glue.nc") in f["error"] and "writing the output failed" in f["error"]
        assert cause in f["error"] and "earlier output is untouched" in f["error"], f["error"]


def test_file_size_limit_fails_one_file_clearly_others_go_on_and_rerun_completes(job, tmp_path):
    out = tmp_path / "out"
    p, s = run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path, preexec_fn=_file_size_limit(200_000))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    _assert_clear_write_failures(s, ["run03b.nc"], "at most 200000 bytes (ulimit -f)")
    assert len(s["processed"]) == N_FILES and temporaries(out) == []
    assert_same_outputs(outputs(out), {k: v for k, v in job["reference"].items() if k != "run03b.glue.nc"})
    p, s = run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path)  # the limit lifted
    assert p.returncode == 0 and [d["input"] for d in s["processed"]] == ["run03b.nc"]
    assert_same_outputs(outputs(out), job["reference"]) and temporaries(out) == []
    assert tree_hashes(job["archive"]) == job["hashes"]
    tally("disk", fault="file-size limit (RLIMIT_FSIZE, EFBIG)", files_failed=1, outputs_lost=0)


def test_file_size_limit_during_force_keeps_every_earlier_output(job, tmp_path):
    out = tmp_path / "out"
    assert run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path)[0].returncode == 0
    before = _outputs(tree_hashes(out))
    p, s = run_rrim(*_args(job["archive"], out, job["model"], "--force"), cwd=tmp_path,
                    preexec_fn=_file_size_limit(8_000))  # smaller than any output
    assert p.returncode == 1 and s["processed"] == [] and "Traceback" not in p.stderr
    _assert_clear_write_failures(s, sorted(job["hashes"]), "(ulimit -f)")
    assert _outputs(tree_hashes(out)) == before and temporaries(out) == []
    tally("disk", fault="file-size limit during --force over earlier outputs", files_failed=len(s["failed"]),
          outputs_lost=0)


def _outputs(hashes: dict) -> dict:
    """The outputs' hashes, without the run record reprocess keeps beside them (it records the failures)."""
    from rrim.jobs.reprocess import STATE_NAME

    return {k: v for k, v in hashes.items() if k != STATE_NAME}


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    """A fresh tmpfs of ``size`` at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _remount(path: Path, options: str) -> None:
    r = subprocess.run(["mount", "-o", f"remount,{options}", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_full_filesystem_then_read_only_then_room_again(job, tmp_path):
    with _tmpfs(tmp_path / "small", "160k") as fs:
        out = fs / "out"
        p, s = run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path)
        assert p.returncode == 1 and s["failed"] and s["processed"] and "Traceback" not in p.stderr
        _assert_clear_write_failures(s, [f["input"] for f in s["failed"]], "bytes free on its filesystem")
        assert temporaries(out) == []
        written = outputs(out)  # complete and right, each
        assert_same_outputs(written, {k: job["reference"][k] for k in written})
        before = tree_hashes(out)

        p, s = run_rrim(*_args(job["archive"], out, job["model"], "--force"), cwd=tmp_path)  # still full
        assert p.returncode == 1 and "Traceback" not in p.stderr and temporaries(out) == []
        # every earlier output is still there and right (redone or untouched)
        assert_same_outputs(outputs(out), {k: job["reference"][k] for k in before if k.endswith(".glue.nc")})

        _remount(fs, "ro")
        p, s = run_rrim(*_args(job["archive"], out, job["model"], "--force"), cwd=tmp_path)
        assert p.returncode == 2 and "Read-only file system" in s["error"] and "lock file" in s["error"]
        assert str(out) in s["error"] and "Traceback" not in p.stderr
        p, s = run_rrim("invert", job["archive"] / "run00.nc", "-o", out / "x.nc", "--model", job["model"],
                        cwd=tmp_path)
        assert p.returncode == 2 and str(out) in s["error"] and "not writable" in s["error"]
        assert_same_outputs(outputs(out), {k: job["reference"][k] for k in before if k.endswith(".glue.nc")})

        _remount(fs, "rw,size=4m")
        p, s = run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path)
        assert p.returncode == 0 and s["failed"] == [] and temporaries(out) == []
        assert_same_outputs(outputs(out), job["reference"])
    assert tree_hashes(job["archive"]) == job["hashes"]
    tally("disk", fault="full filesystem (160 KiB tmpfs, ENOSPC), then read-only (EROFS)", outputs_lost=0)


def test_output_folder_that_cannot_exist(job, tmp_path):
    """A regular file where a folder should be: refused for root too, nothing created anywhere."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    for out in (blocker / "out", blocker / "deeper" / "out"):
        p, s = run_rrim(*_args(job["archive"], out, job["model"]), cwd=tmp_path)
        assert p.returncode == 2 and str(out) in s["error"] and "Traceback" not in p.stderr, p.stderr
        assert "parent folder" in s["error"]
    p, s = run_rrim("invert", job["archive"] / "run00.nc", "-o", blocker / "x.nc", "--model", job["model"],
                    cwd=tmp_path)
    assert p.returncode == 2 and "x.nc" in s["error"] and "not-a-folder" in s["error"]
    assert blocker.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]
    tally("disk", fault="output folder under a regular file", outputs_lost=0)
