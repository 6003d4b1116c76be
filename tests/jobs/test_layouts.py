"""Layouts (issue 17, item 4): for every layout of the catalogue, ``rrim invert``, ``rrim reprocess`` and the
accessor give the same output — the same data variables, coordinates (index coordinates stay index
coordinates: a ``temperature`` dimension too), values and attributes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim.plugins  # noqa: F401  (registers the accessor)
from rrim.cli import main
from runtime_helpers import assert_same_dataset, noisy_spectra, write_model

import rrim

W = np.linspace(2.0, 400.0, 300)


def _rates(op, n, seed=0):
    return noisy_spectra(rrim.ForwardOperator(W, op.Omega), n, seed=seed)[1]


def _layouts(op) -> dict:
    """name → Dataset (1/τ in meV on W, temperatures in K)."""
    y = _rates(op, 12)
    w = ("omega", W, {"units": "meV", "long_name": "photon energy"})
    rate = {"units": "meV", "long_name": "optical scattering rate"}
    t3 = ("temperature", [50.0, 100.0, 150.0], {"units": "K", "long_name": "set temperature"})
    return {
        "sample_attr_temperature": xr.Dataset(
            {"scattering_rate": (("sample", "omega"), y[:4], rate)}, coords={"omega": w}, attrs={"temperature_K": 100.0}),
        "temperature_dimension": xr.Dataset(
            {"scattering_rate": (("temperature", "omega"), y[:3], rate)}, coords={"omega": w, "temperature": t3}),
        "sample_by_temperature": xr.Dataset(
            {"scattering_rate": (("sample", "temperature", "omega"), y[:6].reshape(2, 3, -1), rate)},
            coords={"omega": w, "temperature": t3, "sample": ("sample", ["a", "b"])}),
        "measured_temperature_coordinate": xr.Dataset(
            {"scattering_rate": (("sample", "omega"), y[:5], rate)},
            coords={"omega": w, "temperature": ("sample", 100.0 + np.linspace(-0.3, 0.3, 5), {"units": "K"}),
                    "run": ("sample", np.arange(5, dtype="i4"), {"long_name": "run number"})}),
        "temperature_data_variable": xr.Dataset(
            {"scattering_rate": (("sample", "omega"), y[:3], rate),
             "temperature": ("sample", [80.0, 90.0, 90.0], {"units": "K"})}, coords={"omega": w}),
        "omega_first": xr.Dataset(
            {"scattering_rate": (("omega", "sample"), y[:3].T, rate)}, coords={"omega": w},
            attrs={"temperature_K": 100.0}),
        "single_spectrum": xr.Dataset(
            {"scattering_rate": (("omega",), y[0], rate)}, coords={"omega": w, "temperature": ((), 120.0, {"units": "K"})}),
        "two_leading_dims_with_labels": xr.Dataset(
            {"scattering_rate": (("run", "sample", "omega"), y[:6].reshape(3, 2, -1), rate)},
            coords={"omega": w, "run": ("run", np.array([3, 5, 8], dtype="i8")), "sample": ("sample", ["x", "y"]),
                    "position": (("run", "sample"), np.arange(6.0).reshape(3, 2), {"units": "mm"})},
            attrs={"temperature_K": 100.0}),
    }


@pytest.fixture(scope="module")
def model(tmp_path_factory, default_operator):
    return write_model(tmp_path_factory.mktemp("layout-model"), default_operator, "input")


@pytest.mark.parametrize("layout", list(_layouts(rrim.ForwardOperator())))
def test_cli_reprocess_and_accessor_agree_on_every_layout(tmp_path, model, default_operator, layout):
    ds = _layouts(default_operator)[layout]
    folder = tmp_path / "in"
    folder.mkdir()
    ds.to_netcdf(folder / "a.nc")
    args = ["--model", str(model), "--provider", "cpu", "--batch-size", "16"]
    res = CliRunner().invoke(main, ["invert", str(folder / "a.nc"), "-o", str(tmp_path / "cli.nc"), *args],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["reprocess", str(folder), "-o", str(tmp_path / "re"), *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with xr.open_dataset(folder / "a.nc") as inp:
        mem = inp.rrim.invert(model=str(model), provider="cpu", batch_size=16)
    with xr.open_dataset(tmp_path / "cli.nc") as cli, xr.open_dataset(tmp_path / "re" / "a.glue.nc") as re:
        assert_same_dataset(cli, re, f"{layout}: cli vs reprocess")
        assert_same_dataset(cli, mem, f"{layout}: cli vs accessor")
        lead = [d for d in ds["scattering_rate"].dims if d != "omega"]
        assert list(cli["glue"].dims) == lead + ["Omega"]
        for d in lead:  # every leading dimension with a coordinate keeps it as its index
            if d in ds.coords:
                assert d in cli.indexes and np.array_equal(cli[d].values, ds[d].values)
        if "temperature" in ds.dims:
            assert float(cli.sel(temperature=100.0)["inversion_temperature"].max()) == 100.0
