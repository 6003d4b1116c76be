"""Units through pint (issue 17, item 5): every spelling pint reads, energies as meV, cm⁻¹, THz or s⁻¹,
temperatures in K, mK or °C, command-line and accessor overrides of the file's units, and a temperature
without units refused unless its units are given."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import rrim
import rrim.plugins  # noqa: F401  (registers the accessor)
from rrim.cli import main
from rrim.io.paths import ArchiveError
from rrim.physics.units import CM1_PER_MEV, MEV_PER_THZ, energy_factor, to_kelvin
from runtime_helpers import noisy_spectra, write_model

W = np.linspace(2.0, 400.0, 300)


@pytest.fixture(scope="module")
def model(tmp_path_factory, default_operator):
    return write_model(tmp_path_factory.mktemp("units-model"), default_operator, "input")


@pytest.fixture(scope="module")
def rates(default_operator):
    return noisy_spectra(rrim.ForwardOperator(W, default_operator.Omega), 3, seed=4)[1]


def _ds(w, y, w_units, y_units, temperature=100.0, t_units="K"):
    t_attrs = {} if t_units is None else {"units": t_units}
    return xr.Dataset({"scattering_rate": (("sample", "omega"), y, {"units": y_units})},
                      coords={"omega": ("omega", w, {"units": w_units}), "temperature": ((), temperature, t_attrs)})


def _glue(ds, model, **kw):
    return ds.rrim.invert(model=str(model), provider="cpu", batch_size=16, **kw)


@pytest.mark.parametrize("spelling", ["cm-1", "cm^-1", "cm**-1", "1/cm", "1 / cm", "cm^{-1}", "cm**(-1)", "cm⁻¹"])
def test_every_wavenumber_spelling_converts_exactly_as_cm_1(spelling):
    assert energy_factor(spelling) == 1.0 / CM1_PER_MEV  # bit for bit the factor rrim always used


def test_energies_as_wavenumbers_frequencies_and_rates_give_the_same_glue(model, rates):
    ref = _glue(_ds(W, rates, "meV", "meV"), model)
    for w_units, w_factor, y_units, y_factor in (("cm-1", CM1_PER_MEV, "1/cm", CM1_PER_MEV),
                                                 ("THz", 1 / MEV_PER_THZ, "s-1", 1e12 / MEV_PER_THZ),
                                                 ("eV", 1e-3, "meV", 1.0)):
        got = _glue(_ds(W * w_factor, rates * y_factor, w_units, y_units), model)
        np.testing.assert_allclose(got.glue.values, ref.glue.values, rtol=1e-4, atol=1e-5 * float(ref.glue.max()))
        assert got.scattering_rate_fit_input.attrs["units"] == y_units


def test_temperatures_in_celsius_and_millikelvin_are_converted(model, rates):
    assert to_kelvin(-173.15, "degC") == pytest.approx(100.0) and to_kelvin(1e5, "mK") == pytest.approx(100.0)
    ref = _glue(_ds(W, rates, "meV", "meV"), model)
    for value, unit in ((-173.15, "degC"), (-173.15, "°C"), (1e5, "mK"), (100.0, "kelvin")):
        got = _glue(_ds(W, rates, "meV", "meV", value, unit), model)
        np.testing.assert_allclose(got.temperature.values, 100.0, rtol=1e-12)
        np.testing.assert_allclose(got.glue.values, ref.glue.values, rtol=1e-6, atol=1e-7)


def test_a_temperature_without_units_is_refused_unless_its_units_are_given(model, rates, tmp_path):
    ds = _ds(W, rates, "meV", "meV", 100.0, None)
    with pytest.raises(ArchiveError, match="variable 'temperature' has no units.*temperature_units="):
        _glue(ds, model)
    ref = _glue(_ds(W, rates, "meV", "meV"), model)
    np.testing.assert_array_equal(_glue(ds, model, temperature_units="K").glue.values, ref.glue.values)
    ds.to_netcdf(tmp_path / "t.nc")
    args = ["invert", str(tmp_path / "t.nc"), "--model", str(model), "--provider", "cpu", "--batch-size", "16"]
    res = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "a.nc")], catch_exceptions=False)
    assert res.exit_code == 2 and "--temperature-units" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "b.nc"), "--temperature-units", "K"], catch_exceptions=False)
    assert res.exit_code == 0
    with xr.open_dataset(tmp_path / "b.nc") as out:
        np.testing.assert_array_equal(out.glue.values, ref.glue.values)
        assert json.loads(out.attrs["options"])["temperature_units"] == "K"


def test_command_line_and_accessor_units_override_the_file(model, rates, tmp_path):
    """A file whose ω is in cm⁻¹ and rates in THz but labelled meV: the overrides read it right, both ways."""
    ref = _glue(_ds(W, rates, "meV", "meV"), model)
    wrong = _ds(W * CM1_PER_MEV, rates / MEV_PER_THZ, "meV", "meV", -173.15, "K")
    kw = dict(omega_units="cm-1", rate_units="THz", temperature_units="degC")
    np.testing.assert_allclose(_glue(wrong, model, **kw).glue.values, ref.glue.values, rtol=1e-4,
                               atol=1e-5 * float(ref.glue.max()))
    wrong.to_netcdf(tmp_path / "w.nc")
    res = CliRunner().invoke(main, ["invert", str(tmp_path / "w.nc"), "-o", str(tmp_path / "o.nc"), "--model", str(model),
                                    "--provider", "cpu", "--batch-size", "16", "--omega-units", "cm-1",
                                    "--rate-units", "THz", "--temperature-units", "degC"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    with xr.open_dataset(tmp_path / "o.nc") as out:
        np.testing.assert_array_equal(out.glue.values, _glue(wrong, model, **kw).glue.values)
        assert out.omega_input.attrs["units"] == "cm-1" and out.scattering_rate_fit_input.attrs["units"] == "THz"
    with pytest.raises(ArchiveError, match="omega_units=.*'nm'.*length"):
        _glue(wrong, model, omega_units="nm")
