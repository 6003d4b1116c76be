"""Unattended operation: timestamped log lines (text or JSON), -v/-q anywhere, progress off a terminal,
reprocess's run record (hashes by file stamp, known failures, --min-age), --dry-run, `rrim check`,
options from RRIM_ variables (the table in docs/OPERATIONS.md), validate-model."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import environment_table, main
from rrim.cli.common import EXAMPLE_ARCHIVE
from rrim.cli.logs import Progress
from rrim.jobs import invert, reprocess
from rrim.models.loading import MODELS_DIR

DOCS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
FAST = ["--provider", "cpu", "--batch-size", "32"]


def run(*args, env=None):
    result = CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def log_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line and not line.startswith(" ")]


def test_every_log_line_has_a_timestamp_and_a_level_and_v_may_follow_the_command(tmp_path):
    res, s = run("invert", "--example", "-o", tmp_path / "a.nc", *FAST, "-v")
    assert res.exit_code == 0 and s["status"] == "ok"
    lines = log_lines(res)
    assert lines and all(STAMP.match(line) for line in lines), lines
    assert any("DEBUG" in line for line in lines)  # -v after the command: rrim's debug lines
    res, _ = run("-q", "invert", "--example", "-o", tmp_path / "b.nc", *FAST)
    assert res.exit_code == 0 and res.stderr == ""


def test_json_lines_from_the_option_or_the_environment(tmp_path):
    for args, env in ((["--log-format", "json"], None), ([], {"RRIM_LOG_FORMAT": "json"})):
        res, _ = run("invert", "--example", "-o", tmp_path / "a.nc", *FAST, *args, env=env)
        records = [json.loads(line) for line in res.stderr.splitlines()]
        assert res.exit_code == 0 and records
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        progress = [r for r in records if "spectra_per_second" in r]
        assert progress and progress[-1]["spectra"] == progress[-1]["spectra_total"] == 24


def test_progress_off_a_terminal_is_a_log_line_every_interval(caplog):
    now = [0.0]
    p = Progress("reprocess", every=30, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="rrim"):
        p.files(0, 4, 0)
        for done in range(1, 5):
            now[0] += 10
            p(done * 100, 400)  # spectra of the file being inverted
        p.files(1, 4, 400)
        now[0] = 120
        p.files(2, 4, 800)
    fields = [r.fields for r in caplog.records]
    assert len(fields) == 2  # at 30 s (mid-file) and at 120 s; not at every call
    assert fields[0]["spectra"] == 300 and fields[0]["spectra_per_second"] == 10.0 and fields[0]["eta_seconds"] is None
    assert fields[1] == {"elapsed_seconds": 120.0, "spectra": 800, "spectra_per_second": 6.7, "files_done": 2,
                         "files_total": 4, "eta_seconds": 120.0}
    assert "2/4 files, 6.7 spectra/s, ETA 120 s" in caplog.records[-1].getMessage()


@pytest.fixture
def folder(tmp_path):
    """An archive folder as a night finds it: two good files, a truncated one, one still being written
    (modified just now) and a FIFO."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.nc", "b.nc"):
        shutil.copy(EXAMPLE_ARCHIVE, src / name)
    (src / "truncated.nc").write_bytes(EXAMPLE_ARCHIVE.read_bytes()[:30_000])
    old = os.stat(src / "a.nc").st_mtime - 3600
    for p in src.iterdir():
        os.utime(p, (old, old))
    shutil.copy(EXAMPLE_ARCHIVE, src / "young.nc")
    os.mkfifo(src / "pipe.nc")
    return src


def _count_hashes(monkeypatch) -> list:
    hashed = []
    for module in (reprocess, invert):
        monkeypatch.setattr(module, "file_sha256", lambda p, f=module.file_sha256: hashed.append(Path(p).name) or f(p))
    return hashed


def test_unattended_runs_defer_young_files_and_fail_a_broken_file_once(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    hashed = _count_hashes(monkeypatch)
    res, s = run("reprocess", folder, "-o", out, "--min-age", 600, *FAST)
    assert res.exit_code == 1 and s["status"] == "failed"
    assert sorted(f["input"] for f in s["failed"]) == ["pipe.nc", "truncated.nc"] and s["deferred"] == ["young.nc"]
    assert sorted(d["input"] for d in s["processed"]) == ["a.nc", "b.nc"]
    assert s["totals"] == {"files": 5, "processed": 2, "skipped": 0, "deferred": 1, "failed": 2, "still_failing": 0,
                           "mostly_skipped": 0, "spectra": 48, "hashed": 3}
    lines = log_lines(res)
    assert all(STAMP.match(line) for line in lines), lines
    assert any("ERROR rrim: truncated.nc: " in line and "not a readable NetCDF file" in line for line in lines)
    assert any("young.nc: modified" in line and "--min-age 600" in line for line in lines)
    assert sorted(hashed) == ["a.nc", "b.nc", "truncated.nc"]  # once each: the job reuses the digest

    hashed.clear()
    res, s = run("reprocess", folder, "-o", out, "--min-age", 600, *FAST)
    assert res.exit_code == 0 and s["status"] == "ok" and s["failed"] == []
    assert sorted(f["input"] for f in s["still_failing"]) == ["pipe.nc", "truncated.nc"]
    assert all(f["runs"] == 2 for f in s["still_failing"]) and sorted(s["skipped"]) == ["a.nc", "b.nc"]
    assert hashed == [] and s["totals"]["hashed"] == 0  # nothing unchanged is read again
    assert any("WARNING rrim: truncated.nc: still failing, unchanged since" in line for line in log_lines(res))

    shutil.copy(EXAMPLE_ARCHIVE, folder / "truncated.nc")  # the transfer completed: new bytes, inverted
    res, s = run("reprocess", folder, "-o", out, *FAST)
    assert res.exit_code == 0 and sorted(d["input"] for d in s["processed"]) == ["truncated.nc", "young.nc"]
    assert [f["input"] for f in s["still_failing"]] == ["pipe.nc"] and sorted(hashed) == ["truncated.nc", "young.nc"]
    record = json.loads((out / reprocess.STATE_NAME).read_text())["files"]
    assert "failure" not in record["truncated.nc"] and record["pipe.nc"]["failure"]["runs"] == 3


def test_a_failure_with_other_options_is_a_new_failure(folder, tmp_path):
    out = tmp_path / "out"
    run("reprocess", folder, "-o", out, "--min-age", 600, *FAST)
    res, s = run("reprocess", folder, "-o", out, "--min-age", 600, "--smoothing", 5, *FAST)
    assert res.exit_code == 1 and sorted(f["input"] for f in s["failed"]) == ["pipe.nc", "truncated.nc"]


def test_an_unreadable_run_record_means_hashing_again(folder, tmp_path):
    out = tmp_path / "out"
    run("reprocess", folder, "-o", out, "--min-age", 600, *FAST)
    (out / reprocess.STATE_NAME).write_text("{not json")
    res, s = run("reprocess", folder, "-o", out, "--min-age", 600, *FAST)
    assert res.exit_code == 1 and s["totals"]["hashed"] == 3 and "hashed again" in res.stderr


def _example() -> xr.Dataset:
    with xr.open_dataset(EXAMPLE_ARCHIVE) as ds:  # closed at once: an HDF5 handle left to the garbage collector
        return ds.load()                          # could be finalized while a job's thread reads another file


def test_dry_run_opens_and_validates_every_file_and_writes_nothing(folder, tmp_path):
    ds = _example()
    ds.rename({"scattering_rate": "rate"}).to_netcdf(folder / "renamed.nc")
    out = tmp_path / "out"
    res, s = run("reprocess", folder, "-o", out, "--dry-run", *FAST)
    assert s["status"] == "dry-run" and sorted(s["would_process"]) == ["a.nc", "b.nc", "young.nc"]
    failed = {f["input"]: f["error"] for f in s["failed"]}
    assert set(failed) == {"pipe.nc", "renamed.nc", "truncated.nc"} and "no variable 'scattering_rate'" in failed["renamed.nc"]
    assert res.exit_code == 1 and not out.exists()


def test_check_reports_units_ranges_coverage_nan_and_temperatures(tmp_path):
    res, s = run("check", EXAMPLE_ARCHIVE)
    assert res.exit_code == 0 and s["status"] == "ok" and s["n_spectra"] == 24 and s["nonfinite_spectra"] == 0
    assert s["units"] == {"variable": "cm-1", "omega": "cm-1"} and s["model_omega_coverage"] == 1.0
    assert s["temperature_K"]["min"] == s["temperature_K"]["max"] == 100.0 and s["warnings"] == []
    ds = _example()
    rate = ds.scattering_rate.values.copy()
    rate[0, :2, 5] = np.nan
    ds["scattering_rate"].values = rate
    ds.isel(omega=slice(0, 200)).assign_coords(temperature=((), 400.0, {"units": "K"})).to_netcdf(tmp_path / "odd.nc")
    res, s = run("check", tmp_path / "odd.nc")
    assert res.exit_code == 0 and s["nonfinite_spectra"] == 2 and s["nonfinite_values"] == 2
    assert 0.7 < s["model_omega_coverage"] < 0.9 and s["temperature_K"]["outside_model_range"] == 1
    assert len(s["warnings"]) == 3 and res.stderr.count("WARNING") == 3
    res, s = run("check", tmp_path / "odd.nc", "--var", "nope")
    assert res.exit_code == 2 and "no variable 'nope'" in s["error"]


def test_options_come_from_rrim_variables_and_the_table_is_documented(tmp_path):
    res, s = run("invert", "--example", "-o", tmp_path / "a.nc", *FAST, env={"RRIM_MODEL": "no-such-model"})
    assert res.exit_code == 4 and "no-such-model" in s["error"]
    res, s = run("invert", "--example", "-o", tmp_path / "a.nc", *FAST,
                 env={"RRIM_MODEL": "no-such-model", "RRIM_INVERT_MODEL": "rrim-lean"})  # the command's own first
    assert res.exit_code == 0 and s["model"] == "rrim-lean"
    res, s = run("invert", "--example", "-o", tmp_path / "a.nc", *FAST, "--model", "rrim-default",
                 env={"RRIM_MODEL": "no-such-model"})  # the command line wins
    assert res.exit_code == 0 and s["model"] == "rrim-default"
    assert "RRIM_REPROCESS_MIN_AGE" in environment_table() and "RRIM_PROVIDER" in environment_table()
    generated = set(re.findall(r"RRIM_\w+", environment_table()))
    assert not generated & {"RRIM_MODEL_PATH", "RRIM_CACHE_DIR", "RRIM_IMAGE_FLAVOUR"}  # variables with other meanings
    assert environment_table() in DOCS.read_text(), \
        "docs/OPERATIONS.md: paste python -c 'from rrim.cli import environment_table; print(environment_table())'"


def test_validate_model_accepts_a_shipped_model_and_refuses_a_foreign_file(tmp_path):
    res, s = run("validate-model", MODELS_DIR / "rrim-lean.onnx")
    assert res.exit_code == 0 and s["valid"] and [c["check"] for c in s["checks"]] == \
        ["contract", "golden", "inversion", "calibration"]
    assert all(c["passed"] for c in s["checks"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    res, s = run("validate-model", bad)
    assert res.exit_code == 4 and str(bad) in s["error"]
    own = tmp_path / "own.onnx"
    shutil.copy(MODELS_DIR / "rrim-lean.onnx", own)  # no golden, no calibration: valid, with a warning
    res, s = run("validate-model", own)
    assert res.exit_code == 0 and s["valid"] and "out_of_distribution flag is off" in res.stderr
