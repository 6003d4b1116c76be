"""`rrim reprocess --dask-workers 2`: a local cluster of 2 worker processes gives the serial outputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE

pytest.importorskip("dask.distributed")


def _reprocess(*args) -> dict:
    result = CliRunner().invoke(main, ["reprocess", *map(str, args), "--provider", "cpu"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    # Dask's loggers sit under rrim's level (warnings only) and no dashboard is served on :8787
    assert "distributed." not in result.stderr and ":8787" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_local_cluster_matches_serial_and_reports_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(EXAMPLE_ARCHIVE, src / f"run{i}.nc")
    (src / "broken.nc").write_bytes(b"not a netcdf file")
    serial = _reprocess(src, "-o", tmp_path / "serial")
    dask = _reprocess(src, "-o", tmp_path / "dask", "--dask-workers", "2")
    assert sorted(d["input"] for d in dask["processed"]) == ["run0.nc", "run1.nc", "run2.nc"]
    assert [f["input"] for f in dask["failed"]] == ["broken.nc"] == [f["input"] for f in serial["failed"]]
    for i in range(3):
        with xr.open_dataset(tmp_path / "serial" / f"run{i}.glue.nc") as a, \
                xr.open_dataset(tmp_path / "dask" / f"run{i}.glue.nc") as b:
            np.testing.assert_array_equal(a.glue.values, b.glue.values)
            assert a.attrs["input_sha256"] == b.attrs["input_sha256"] and a.attrs["model_sha256"] == b.attrs["model_sha256"]
    again = _reprocess(src, "-o", tmp_path / "dask", "--dask-workers", "2")
    assert again["processed"] == [] and len(again["skipped"]) == 3  # idempotent: nothing redone
