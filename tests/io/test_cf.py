"""CF-1.12/ACDD-1.3 output (issue 17, item 6): cf_xarray finds the axes, coordinates, the flags' standard name
and the glue's ancillary variables; the input's global attributes are carried; every variable has units and a
long name; the refit on the input's own ω axis, in its units, lies over the measured data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import main
from rrim.cli.common import EXAMPLE_ARCHIVE
from rrim.io.provenance import REFERENCES

cf_xarray = pytest.importorskip("cf_xarray")


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("cf") / "example.glue.nc"
    res = CliRunner().invoke(main, ["invert", "--example", "-o", str(out), "--provider", "cpu", "--uncertainty", "0.9"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def test_cf_xarray_finds_axes_coordinates_and_ancillaries(output):
    with xr.open_dataset(output) as ds, xr.open_dataset(EXAMPLE_ARCHIVE) as inp:
        assert sorted(ds.cf.axes["X"]) == ["Omega", "omega", "omega_input"]
        assert ds["glue"].cf.axes["X"] == ["Omega"] and ds["scattering_rate_fit_input"].cf.axes["X"] == ["omega_input"]
        assert ds.cf.axes["T"] == ["time"] and ds.cf.coordinates["time"] == ["time"]
        assert ds.cf.standard_names["status_flag"] == ["flags"]
        assert ds.cf.get_associated_variable_names("glue")["ancillary_variables"] == ["flags", "glue_lower", "glue_upper"]
        for name in inp["scattering_rate"].dims[:-1]:  # the leading coordinates stay index coordinates
            assert name in ds.indexes
        assert ds.attrs["Conventions"] == "CF-1.12, ACDD-1.3" and ds.attrs["references"] == REFERENCES
        for key, value in inp.attrs.items():  # carried: under its own name, or input_<name> where rrim sets one
            if key != "history":
                got = ds.attrs.get(f"input_{key}", ds.attrs.get(key))
                assert np.array_equal(np.asarray(got), np.asarray(value)), key
        assert ds.attrs["history"].endswith(inp.attrs["history"])
        for name, v in ds.variables.items():
            assert "long_name" in v.attrs, name
            assert "units" in v.attrs or "units" in v.encoding or name == "flags" or v.dtype.kind in "OUS", name


def test_refit_on_the_input_axis_lies_over_the_data_in_its_units(output):
    with xr.open_dataset(output) as ds, xr.open_dataset(EXAMPLE_ARCHIVE) as inp:
        fit = ds["scattering_rate_fit_input"]
        assert fit.attrs["units"] == inp["scattering_rate"].attrs["units"] == ds["omega_input"].attrs["units"]
        np.testing.assert_array_equal(ds["omega_input"].values, inp["omega"].values)
        y = inp["scattering_rate"].transpose(*fit.dims[:-1], "omega").values
        misfit = np.max(np.abs(fit.values - y), axis=-1) / np.max(np.abs(y), axis=-1)
        residual = ds["residual"].values  # the model-grid refit's relative RMS misfit
        assert np.all(misfit < 10 * np.maximum(residual, 1e-3))
        assert float(np.median(misfit)) < 0.01
