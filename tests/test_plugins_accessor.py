"""The xarray accessor: same outputs as the CLI, lazy on dask, multi-file datasets, forward model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim.plugins  # noqa: F401  (registers .rrim)
from rrim.cli import EXAMPLE_ARCHIVE, main
from rrim.plugins import accessor

pytest.importorskip("dask")


@pytest.fixture(scope="module")
def example():
    with xr.open_dataset(EXAMPLE_ARCHIVE) as ds:
        return ds.load()


def test_accessor_equals_cli_output(tmp_path, example):
    out = tmp_path / "cli.nc"
    result = CliRunner().invoke(main, ["invert", "--example", "-o", str(out), "--provider", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    got = example.rrim.invert(provider="cpu")
    with xr.open_dataset(out) as cli:
        for name in ("glue", "scattering_rate_fit", "residual", "flags", "lambda", "omega_log"):
            assert name in got and got[name].dims == cli[name].dims, name
            np.testing.assert_allclose(got[name].values, cli[name].values, rtol=1e-6, atol=1e-6, err_msg=name)
            assert got[name].attrs.get("long_name") == cli[name].attrs.get("long_name")
        for key in ("Conventions", "model_sha256", "model_name", "rrim_version", "execution_provider", "options"):
            assert got.attrs[key] == cli.attrs[key], key
    assert json.loads(got.attrs["options"])["var"] == "scattering_rate"


def test_dask_input_stays_lazy_and_batches_whole_chunks(monkeypatch, example):
    calls = []
    real = accessor.invert_rows

    def counting(rows, *args, **kwargs):
        calls.append(rows.shape[0])
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(accessor, "invert_rows", counting)
    lazy = example.chunk({"sample": 2}).rrim.invert(provider="cpu")
    assert calls == [] and hasattr(lazy.glue.data, "dask")  # nothing ran yet
    eager = example.rrim.invert(provider="cpu")
    calls.clear()
    np.testing.assert_array_equal(lazy.glue.values, eager.glue.values)
    assert sorted(calls) == [12, 12]  # one call per chunk of 2 × 6 spectra, never per spectrum


def test_open_mfdataset_over_several_files(tmp_path, example):
    paths = []
    for i in range(2):
        part = example.isel(sample=slice(2 * i, 2 * i + 2))
        part.to_netcdf(tmp_path / f"part{i}.nc")
        paths.append(tmp_path / f"part{i}.nc")
    with xr.open_mfdataset(paths, combine="nested", concat_dim="sample", data_vars="minimal", coords="minimal",
                           compat="override") as multi:
        got = multi.rrim.invert(provider="cpu")
        assert hasattr(got.glue.data, "dask")
        np.testing.assert_allclose(got.glue.values, example.rrim.invert(provider="cpu").glue.values, rtol=1e-6, atol=1e-7)


def test_forward_reproduces_noiseless_spectra(example):
    glue = example["glue_true"].rename({d: "Omega" for d in example["glue_true"].dims if d.lower() == "omega"})
    rate = glue.to_dataset(name="glue").rrim.forward()
    assert rate.dims[-1] == "omega" and rate.attrs["units"] == "meV"
    measured = example.rrim.invert(provider="cpu")  # refit grid = model grid; compare against the input interpolated
    y = example["scattering_rate"].interp(omega=rate.omega * 8.0655439).values / 8.0655439  # cm⁻¹ → meV
    rel = np.linalg.norm(rate.values - y, axis=-1) / np.linalg.norm(y, axis=-1)
    assert np.median(rel) < 5e-3  # noise 1e-3 of max and linear interpolation
    assert measured.glue.shape[-1] == rate.shape[-1]
