"""The facility-style example (issue 17, item 7): it looks like lab data, the committed seeded script makes
it, and ``rrim invert`` inverts every scan of it with no option."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import main
from rrim.inversion.flags import FLAG_TEMPERATURE
from rrim.inversion.temperatures import physics_temperatures
from rrim.models.loading import DATA_DIR
from runtime_helpers import assert_same_dataset

ROOT = Path(__file__).resolve().parents[2]
FACILITY = DATA_DIR / "examples" / "facility_archive.nc"


def test_it_looks_like_lab_data_and_the_script_makes_it():
    spec = importlib.util.spec_from_file_location("make_facility_example", ROOT / "scripts" / "make_facility_example.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with xr.open_dataset(FACILITY, mask_and_scale=False) as raw:
        assert raw["scattering_rate"].dtype == np.float32 and raw["scattering_rate"].encoding["zlib"]
    with xr.open_dataset(FACILITY) as ds:
        assert ds["omega"].attrs["units"] == ds["scattering_rate"].attrs["units"] == "cm-1"
        assert len(np.unique(np.round(np.diff(ds["omega"].values), 3))) > 1  # two detectors' spacings
        assert 40.0 <= ds["omega"].values.min() and ds["omega"].values.max() <= 3200.0
        nan = np.isnan(ds["scattering_rate"].values)
        assert nan.all(axis=0).sum() >= 10 and not nan.all(axis=1).any()  # the CO₂ band and dead channels
        t = ds["temperature"].values
        assert t.size == 21 and np.unique(t).size == 21 and not np.array_equal(t, np.round(t))
        assert {"institution", "instrument", "proposal"} <= set(ds.attrs)
        made = script.make_facility_example()
        for name in ("scattering_rate", "glue_true", "temperature", "omega"):
            np.testing.assert_array_equal(made[name].values, ds[name].values, err_msg=name)


@pytest.fixture(scope="module")
def inverted(tmp_path_factory):
    out = tmp_path_factory.mktemp("facility") / "out.nc"
    res = CliRunner().invoke(main, ["invert", str(FACILITY), "-o", str(out), "--provider", "cpu"], catch_exceptions=False)
    return res, out


def test_rrim_invert_with_no_option_inverts_every_scan(inverted):
    res, out = inverted
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["status"] == "ok" and s["skipped"] == 0
    with xr.open_dataset(out) as o, xr.open_dataset(FACILITY) as ds:
        assert np.isfinite(o["glue"].values).all()
        # the default model is trained at 100 K: the other scans say so, nothing else is flagged
        off = physics_temperatures(ds["temperature"].values) != 100.0
        np.testing.assert_array_equal(o["flags"].values, np.where(off, FLAG_TEMPERATURE, 0))
        err = np.linalg.norm(o["glue"].values - ds["glue_true"].values, axis=1) / np.linalg.norm(ds["glue_true"].values, axis=1)
        assert np.median(err) < 0.10  # measured 0.055
        assert o["scattering_rate_fit_input"].attrs["units"] == "cm-1" and o.attrs["institution"] == ds.attrs["institution"]


def test_the_any_temperature_model_inverts_the_sweep_unflagged(tmp_path):
    out = tmp_path / "any.nc"
    res = CliRunner().invoke(main, ["invert", str(FACILITY), "-o", str(out), "--provider", "cpu",
                                    "--model", "rrim-any-temperature"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with xr.open_dataset(out) as o, xr.open_dataset(FACILITY) as ds:
        assert (o["flags"].values == 0).all()
        err = np.linalg.norm(o["glue"].values - ds["glue_true"].values, axis=1) / np.linalg.norm(ds["glue_true"].values, axis=1)
        assert np.median(err) < 0.15  # measured 0.089


def test_the_accessor_gives_the_command_line_output(inverted):
    import rrim.plugins  # noqa: F401  (registers the accessor)

    _, out = inverted
    with xr.open_dataset(FACILITY) as ds, xr.open_dataset(out) as cli:
        assert_same_dataset(cli, ds.rrim.invert(provider="cpu"), "facility example: cli vs accessor")
