"""Units (meV, cm⁻¹, K) at the edges and energy grids (meV) with trapezoid weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

import rrim
from rrim.physics.grids import Grid, trapezoid_weights
from rrim.physics.units import from_mev, mev_to_kelvin

EPS = np.finfo(np.float64).eps


# --- units -------------------------------------------------------------------------------------

def test_constants():
    assert rrim.K_B_MEV_PER_K == 0.08617333262  # exact SI k_B/e in meV/K
    assert rrim.CM1_PER_MEV == 8.0655439


@pytest.mark.parametrize("unit", ["cm-1", "cm^-1", "cm⁻¹", "1/cm"])
def test_wavenumbers_to_mev_and_back(unit):
    assert rrim.to_mev(8.0655439, unit) == pytest.approx(1.0, rel=EPS)
    v = np.array([1.0, 100.0, 3226.2])
    np.testing.assert_allclose(rrim.to_mev(v, unit), v / 8.0655439, rtol=EPS)
    np.testing.assert_allclose(from_mev(rrim.to_mev(v, unit), unit), v, rtol=2 * EPS)
    np.testing.assert_array_equal(rrim.to_mev(v, "meV"), v)


def test_kelvin_to_mev():
    assert rrim.kelvin_to_mev(100.0) == pytest.approx(8.617333262, rel=EPS)
    assert rrim.kelvin_to_mev(0.0) == 0.0
    np.testing.assert_allclose(rrim.kelvin_to_mev([1.0, 300.0]), [0.08617333262, 25.851999786], rtol=EPS)
    assert mev_to_kelvin(rrim.kelvin_to_mev(77.0)) == pytest.approx(77.0, rel=EPS)


@pytest.mark.parametrize("unit", ["K", "nm", "meV/s", "", None, 3])  # eV and THz are energies (pint)
def test_unknown_energy_unit_names_the_argument(unit):
    with pytest.raises(ValueError, match="omega.*unit"):
        rrim.omega_grid([1.0, 2.0], unit=unit)
    with pytest.raises(ValueError, match="Omega.*unit"):
        rrim.boson_grid([1.0, 2.0], unit=unit)
    with pytest.raises(ValueError, match="rates.*unit"):
        rrim.to_mev([1.0], unit, name="rates")


@pytest.mark.parametrize("t", [-1.0, -1e-300, float("nan"), float("inf"), [1.0, -2.0]])
def test_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        rrim.kelvin_to_mev(t)


@pytest.mark.parametrize("t", [-1.0, float("nan"), float("inf")])
def test_bad_temperature_in_operator(t):
    with pytest.raises(ValueError, match="temperature"):
        rrim.ForwardOperator(temperature=t)


# --- grids -------------------------------------------------------------------------------------

def test_default_grids():
    for g in (rrim.default_omega_grid(), rrim.default_boson_grid()):
        assert len(g) == 200 and g.values[0] == 2.0 and g.values[-1] == 400.0
        np.testing.assert_allclose(np.diff(g.values), 2.0, rtol=1e-12)
    assert rrim.default_boson_grid().name == "Omega" and rrim.default_omega_grid().name == "omega"


@pytest.mark.parametrize("values", [np.linspace(2.0, 400.0, 200), np.geomspace(0.1, 500.0, 77), [1.0, 1.5, 4.0]])
def test_trapezoid_weights(values):
    """Σw = span; linear functions are integrated exactly; weights are positive."""
    g = rrim.boson_grid(values)
    v = g.values
    assert np.all(g.weights > 0)
    np.testing.assert_allclose(g.weights.sum(), v[-1] - v[0], rtol=4 * EPS)
    np.testing.assert_allclose(g.weights @ (3.0 * v - 2.0), 1.5 * (v[-1] ** 2 - v[0] ** 2) - 2.0 * (v[-1] - v[0]),
                               rtol=len(v) * EPS)
    np.testing.assert_array_equal(trapezoid_weights(v), g.weights)


def test_trapezoid_converges_at_order_two():
    errs = []
    for n in (51, 101, 201, 401):
        g = rrim.uniform_grid(0.5, 3.0, n)
        errs.append(abs(g.weights @ np.sin(g.values) - (np.cos(0.5) - np.cos(3.0))))
    np.testing.assert_allclose(np.log2(np.array(errs[:-1]) / errs[1:]), 2.0, atol=0.02)


def test_grid_is_immutable_and_float64():
    g = rrim.boson_grid([1, 2, 3])
    assert g.values.dtype == np.float64
    assert not g.values.flags.writeable and not g.weights.flags.writeable
    src = np.array([1.0, 2.0, 3.0])
    g2 = rrim.boson_grid(src)
    src[0] = 0.0
    assert g2.values[0] == 1.0  # copied, not a view
    with pytest.raises(Exception):
        g.values = np.ones(3)


def test_grids_in_wavenumbers_are_stored_in_mev():
    g = rrim.omega_grid([80.655439, 806.55439], unit="cm-1")
    np.testing.assert_allclose(g.values, [10.0, 100.0], rtol=2 * EPS)
    u = rrim.uniform_grid(80.655439, 806.55439, 10, unit="cm-1", name="omega")
    np.testing.assert_allclose(u.values[[0, -1]], [10.0, 100.0], rtol=2 * EPS)


def test_equality_and_hash():
    a, b = rrim.boson_grid([1.0, 2.0, 3.0]), rrim.boson_grid(np.array([1, 2, 3]))
    assert a == b and hash(a) == hash(b)
    assert a != rrim.boson_grid([1.0, 2.0, 3.5]) and a != [1.0, 2.0, 3.0]


@pytest.mark.parametrize("values", [
    np.linspace(2.0, 400.0, 200),
    np.geomspace(0.5, 400.0, 41),
    np.arange(1.0, 300.0, 7.3),  # evenly spaced by eye, but not bit-identical to linspace
    np.linspace(2.0, 400.0, 200) * (1 + 1e-14 * np.sin(np.arange(200))),
])
def test_describe_round_trip_is_exact(values):
    g = rrim.boson_grid(values)
    desc = json.loads(json.dumps(g.describe()))
    back = Grid.from_description(desc, name="Omega")
    np.testing.assert_array_equal(back.values, g.values)
    assert back == g and back.name == "Omega"


def test_uniform_grids_are_described_compactly():
    assert rrim.default_boson_grid().describe() == {"kind": "uniform", "start": 2.0, "stop": 400.0, "n": 200, "unit": "meV"}
    assert rrim.boson_grid(np.geomspace(1, 10, 5)).describe()["kind"] == "values"


@pytest.mark.parametrize("desc, match", [
    ({"kind": "log", "start": 1, "stop": 2, "n": 3}, "Omega.*kind"),
    ({"kind": "uniform", "start": 1, "stop": 2}, "Omega.*'n'"),
    ({"kind": "values"}, "Omega.*'values'"),
    ({"kind": "values", "values": [1, 2], "unit": "K"}, "Omega.*unit"),
    ([1, 2, 3], "Omega.*dict"),
])
def test_bad_grid_descriptions(desc, match):
    with pytest.raises(ValueError, match=match):
        Grid.from_description(desc, name="Omega")


@pytest.mark.parametrize("factory, name", [(rrim.boson_grid, "Omega"), (rrim.omega_grid, "omega")])
@pytest.mark.parametrize("values, reason", [
    ([0.0, 1.0, 2.0], "strictly positive"),
    ([-2.0, -1.0, 1.0], "strictly positive"),
    ([1.0, 3.0, 2.0], "strictly increasing"),
    ([1.0, 1.0, 2.0], "strictly increasing"),
    ([1.0, np.nan, 2.0], "NaN"),
    ([1.0, 2.0, np.inf], "NaN or inf"),
    ([1.0], "at least 2 points"),
    ([[1.0, 2.0], [3.0, 4.0]], "1-D"),
])
def test_bad_grids_name_the_argument_and_reason(factory, name, values, reason):
    with pytest.raises(ValueError, match=f"{name}.*{reason}"):
        factory(values)


def test_Omega_zero_is_refused_by_the_operator_too():
    with pytest.raises(ValueError, match="Omega.*Ω = 0"):
        rrim.ForwardOperator(Omega=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="Omega"):
        rrim.ForwardOperator(Omega=Grid([0.0, 1.0, 2.0], name="Omega"))


def test_uniform_grid_needs_integer_points():
    with pytest.raises(ValueError, match="omega.*number of points"):
        rrim.uniform_grid(1.0, 2.0, 2.5, name="omega")
    with pytest.raises(ValueError, match="omega.*number of points"):
        rrim.uniform_grid(1.0, 2.0, 1, name="omega")
