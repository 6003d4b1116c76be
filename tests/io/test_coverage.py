"""Measured coverage without invented data (issue 17, items 1–2): FTIR-range archives with NaN channels
and gaps invert with no option on a mask-aware model, spectra outside its trained coverage are skipped
with a warning and their own flag, a file of mostly skipped spectra is not 'ok', and an ω axis too
sparse for the model's grid is refused."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from rrim.cli import main
from rrim.cli.common import EXIT_MOSTLY_SKIPPED, EXIT_USAGE
from rrim.inversion.engine import Engine
from rrim.inversion.flags import FLAG_COVERAGE, FLAG_CROPPED, FLAG_EXTRAPOLATED, FLAG_NONFINITE
from rrim.io.paths import ArchiveError
from rrim.io.omega_axis import GAP_STEPS
from rrim.io.schema import ArchiveOptions
from rrim.jobs.dataset import invert_dataset
from rrim.models.loading import load_model
from runtime_helpers import write_model

#: What coverage (not the model's quality judgement) sets.
COVERAGE_FLAGS = FLAG_COVERAGE | FLAG_CROPPED | FLAG_EXTRAPOLATED | FLAG_NONFINITE
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "coverage_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("coverage_accuracy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def default():
    return load_model("rrim-default")


@pytest.fixture(scope="module")
def ftir(default):
    """(x_true, Dataset in cm⁻¹ on 40–3200 cm⁻¹, ω cm⁻¹): 12 spectra."""
    return _bench().ftir_archive(12, 3, default)


def _invert(ds, model, **opts):
    with Engine(model, "cpu") as engine:
        return invert_dataset(ds, engine, ArchiveOptions(**opts))


def test_ftir_range_with_nan_channels_and_a_band_inverts_as_well_as_the_former_crop_path(default):
    """No option, no coverage flag, every spectrum inverted; the whole range no less accurate than holding edge values
    (the former --crop path; it dropped every spectrum with a NaN), the holed ones within 25 % of it."""
    r = _bench().measure("rrim-default", n=32, seed=5)
    crop = r.pop("former --crop (held edges)")["median_relative_l2"]
    assert r["whole"]["median_relative_l2"] <= crop
    for case, v in r.items():
        assert not {"nonfinite_input", "omega_cropped", "omega_extrapolated", "coverage_untrained"} & set(v["flags"]), case
        assert v["median_relative_l2"] <= 1.25 * r["whole"]["median_relative_l2"], case


def test_nan_channels_mask_only_their_spectrum(ftir, default):
    """5 NaN channels in one spectrum: the other spectra come out exactly as without them; the holed one
    is inverted without a coverage flag."""
    x, ds, w = ftir
    whole = _invert(ds, default)
    holed = ds.copy(deep=True)
    dead = [40, 41, 200, 350, 500]
    holed["scattering_rate"][2, dead] = np.nan
    out = _invert(holed, default)
    keep = [i for i in range(12) if i != 2]
    np.testing.assert_array_equal(out.glue.values[keep], whole.glue.values[keep])
    assert not (out.flags.values & COVERAGE_FLAGS).any() and np.isfinite(out.glue.values[2]).all()
    assert not np.array_equal(out.glue.values[2], whole.glue.values[2])  # it was masked, not filled from the data


def test_a_spectrum_outside_the_trained_coverage_is_skipped_with_its_flag(ftir, default):
    x, ds, w = ftir
    short = ds.copy(deep=True)
    short["scattering_rate"][1, w > 1200.0] = np.nan  # ends at 149 meV < 200 meV
    short["scattering_rate"][3, :] = np.nan  # nothing measured: non-finite
    out = _invert(short, default)
    assert out.flags.values[1] == FLAG_COVERAGE and np.isnan(out.glue.values[1]).all()
    assert out.flags.values[3] == FLAG_NONFINITE
    assert not (np.delete(out.flags.values, [1, 3]) & COVERAGE_FLAGS).any()


def test_a_file_of_mostly_skipped_spectra_is_not_ok(ftir, tmp_path):
    x, ds, w = ftir
    bad = ds.isel(sample=slice(0, 4)).copy(deep=True)
    bad["scattering_rate"][:3, w > 1200.0] = np.nan
    bad.to_netcdf(tmp_path / "short.nc")
    res = CliRunner().invoke(main, ["invert", str(tmp_path / "short.nc"), "-o", str(tmp_path / "o.nc"),
                                    "--provider", "cpu", "--batch-size", "16"], catch_exceptions=False)
    assert res.exit_code == EXIT_MOSTLY_SKIPPED
    s = json.loads(res.stdout)
    assert s["status"] == "mostly_skipped" and s["skipped"] == 3 and s["flag_counts"]["coverage_untrained"] == 3
    assert "3 of 4 spectra skipped: 3 because their measured ω coverage" in res.stderr and "200 meV" in res.stderr
    with xr.open_dataset(tmp_path / "o.nc") as out:
        assert np.isfinite(out.glue.values[3]).all()
    bad.isel(sample=slice(2, 4)).to_netcdf(tmp_path / "half.nc")  # 1 of 2 skipped: ok, with the warning
    res = CliRunner().invoke(main, ["invert", str(tmp_path / "half.nc"), "-o", str(tmp_path / "h.nc"),
                                    "--provider", "cpu", "--batch-size", "16"], catch_exceptions=False)
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "ok" and "1 of 2 spectra skipped" in res.stderr


def test_models_without_the_mask_skip_nan_spectra_as_before(tmp_path, default_operator):
    model = load_model(write_model(tmp_path, default_operator, "input"))
    w = np.linspace(2.0, 400.0, 300)
    y = np.tile(np.linspace(1.0, 50.0, 300), (3, 1))
    y[1, 17] = np.nan
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), y, {"units": "meV"})},
                    coords={"omega": ("omega", w, {"units": "meV"})}, attrs={"temperature_K": 100.0})
    out = _invert(ds, model)
    assert list(out.flags.values & FLAG_NONFINITE) == [0, FLAG_NONFINITE, 0]


@pytest.mark.parametrize("mask_aware", [True, False])
def test_an_omega_axis_too_sparse_for_the_model_grid_is_refused(tmp_path, default_operator, default, mask_aware):
    """2 points spanning 2–400 meV (glue 65–77 % off before) and 5 points: refused, the rule stated; the
    model grid's step is 2 meV, so channels 3.98 meV apart pass and 5.04 meV apart leave points unobserved."""
    model = default if mask_aware else load_model(write_model(tmp_path, default_operator, "input"))
    for n in (2, 5, 80):  # 80 points: 5.04 meV apart
        w = np.linspace(2.0, 400.0, n)
        ds = xr.Dataset({"scattering_rate": (("sample", "omega"), np.ones((1, n)), {"units": "meV"})},
                        coords={"omega": ("omega", w, {"units": "meV"})}, attrs={"temperature_K": 100.0})
        with pytest.raises(ArchiveError, match=f"'omega' is too sparse for the model's ω grid: .* wider than "
                                               f"{GAP_STEPS:g} grid steps"):
            _invert(ds, model)
    w = np.linspace(2.0, 400.0, 101)  # 3.98 meV apart: every model point within 2 steps of its channels
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), np.linspace(1, 50, 101)[None], {"units": "meV"})},
                    coords={"omega": ("omega", w, {"units": "meV"})}, attrs={"temperature_K": 100.0})
    assert np.isfinite(_invert(ds, model).glue.values).all()


def test_the_cli_refuses_a_sparse_axis_with_the_usage_code(tmp_path):
    w = np.array([2.0, 400.0])
    xr.Dataset({"scattering_rate": (("sample", "omega"), np.ones((1, 2)), {"units": "meV"})},
               coords={"omega": ("omega", w, {"units": "meV"})}, attrs={"temperature_K": 100.0}).to_netcdf(tmp_path / "a.nc")
    res = CliRunner().invoke(main, ["invert", str(tmp_path / "a.nc"), "-o", str(tmp_path / "o.nc"), "--provider", "cpu"],
                             catch_exceptions=False)
    assert res.exit_code == EXIT_USAGE and "too sparse" in json.loads(res.stdout)["error"]
