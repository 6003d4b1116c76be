"""Synthetic glue functions and spectra (docs/ARCHITECTURE.md §2): seeding, shapes of the glue, noise statistics,
splits, NetCDF round trip and the out-of-distribution / realistic shapes."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

import rrim
from rrim.physics.glue_families import ood_shapes, realistic_glue, spin_fluctuation
from rrim.physics.synthetic import (DATASET_SIZES, NOISE_LEVELS, DatasetSettings, GlueSettings, MixtureParameters,
                                    SyntheticDataset, add_noise, gaussian_mixture, low_energy_factor, make_dataset,
                                    read_dataset, split_indices, to_xarray, write_dataset)


@pytest.fixture(scope="module")
def op():
    """A small operator (60 ω × 50 Ω points, 2…400 meV, 100 K)."""
    return rrim.ForwardOperator(np.linspace(2, 400, 60), np.linspace(2, 400, 50), temperature=100.0)


# --- seeding -----------------------------------------------------------------------------------

def test_same_seed_same_data_different_seed_different(op):
    s = DatasetSettings(n=50, sigma=1e-2, seed=11)
    a, b = make_dataset(op, s), make_dataset(op, s)
    for name in ("x", "y_clean", "y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for k in a.splits:
        np.testing.assert_array_equal(a.splits[k], b.splits[k])
    c = make_dataset(op, DatasetSettings(n=50, sigma=1e-2, seed=12))
    assert not np.allclose(a.x, c.x) and not np.allclose(a.y, c.y)
    assert any(not np.array_equal(a.splits[k], c.splits[k]) for k in a.splits)


def test_changing_sigma_keeps_glue_and_split(op):
    a = make_dataset(op, DatasetSettings(n=40, sigma=1e-4, seed=3))
    b = make_dataset(op, DatasetSettings(n=40, sigma=1e-1, seed=3))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y_clean, b.y_clean)
    for k in a.splits:
        np.testing.assert_array_equal(a.splits[k], b.splits[k])
    # the same standard-normal draws, scaled by σ: noise(σ = 0.1) = 1000 · noise(σ = 1e-4)
    np.testing.assert_allclose(b.y - b.y_clean, 1e3 * (a.y - a.y_clean), rtol=1e-6)


# --- glue functions ----------------------------------------------------------------------------

def test_mixture_parameters_within_settings(rng):
    s = GlueSettings()
    p = MixtureParameters.draw(2000, rng, s)
    assert p.n_components.shape == (2000,) and p.centre.shape == (2000, 4)
    assert set(np.unique(p.n_components)) == {1, 2, 3, 4}  # all counts occur, none outside 1…4
    active = np.arange(4)[None, :] < p.n_components[:, None]
    assert np.all(p.amplitude[~active] == 0)
    assert np.all((p.amplitude[active] >= 0.1) & (p.amplitude[active] <= 1.0))
    assert np.all((p.centre >= 10.0) & (p.centre <= 350.0))
    assert np.all((p.width >= 5.0) & (p.width <= 100.0))


def test_gaussian_mixture_is_the_drawn_mixture(op):
    x = gaussian_mixture(op.Omega, 20, np.random.default_rng(5))
    p = MixtureParameters.draw(20, np.random.default_rng(5))
    W = op.Omega.values
    by_hand = np.array([sum(p.amplitude[i, k] * np.exp(-0.5 * ((W - p.centre[i, k]) / p.width[i, k]) ** 2)
                            for k in range(p.n_components[i])) for i in range(20)])
    np.testing.assert_allclose(x, by_hand * (1 - np.exp(-(W / 5.0) ** 2)), rtol=1e-12, atol=1e-300)


def test_single_narrow_components_peak_inside_the_centre_range():
    Omega = rrim.boson_grid(np.linspace(1.0, 400.0, 3991))
    s = GlueSettings(n_components=(1, 1), centre=(100.0, 200.0), width=(2.0, 3.0), amplitude=(0.5, 0.5))
    x = gaussian_mixture(Omega, 200, np.random.default_rng(1), s)
    peaks = Omega.values[np.argmax(x, axis=1)]
    assert np.all((peaks >= 100.0 - 0.1) & (peaks <= 200.0 + 0.1))
    np.testing.assert_allclose(x.max(axis=1), 0.5, rtol=1e-3)


def test_glue_is_non_negative_and_suppressed_at_low_energy():
    Omega = rrim.boson_grid(np.linspace(0.05, 400.0, 800))
    x = gaussian_mixture(Omega, 500, np.random.default_rng(2))
    assert np.all(x >= 0) and np.all(np.isfinite(x))
    # at most four components of amplitude ≤ 1, times the factor 1 − exp(−(Ω/5 meV)²)
    envelope = 4.0 * low_energy_factor(Omega, 5.0)
    assert np.all(x <= envelope * (1 + 1e-12))
    assert x[:, 0].max() <= 4.0 * 1e-4  # Ω = 0.05 meV: factor (0.05/5)² = 1e-4
    np.testing.assert_array_equal(low_energy_factor(Omega, 0.0), 1.0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_components=(0, 2)), "n_components"),
    (dict(n_components=(1.5, 2)), "n_components"),
    (dict(centre=(300.0, 100.0)), "centre"),
    (dict(width=(0.0, 10.0)), "width"),
    (dict(amplitude=(-1.0, 1.0)), "amplitude"),
    (dict(amplitude=3.0), "amplitude"),
    (dict(low_energy_cutoff=-1.0), "low_energy_cutoff"),
])
def test_bad_glue_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GlueSettings(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n=0), "n"), (dict(n=2.5), "n"), (dict(sigma=-1e-3), "sigma"), (dict(sigma=float("nan")), "sigma"),
    (dict(seed=-1), "seed"), (dict(split=(0.5, 0.5, 0.5)), "split"), (dict(split=(1.0, 0.0)), "split"),
])
def test_bad_dataset_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DatasetSettings(**kwargs)


# --- spectra and noise -------------------------------------------------------------------------

def test_spectra_are_A_x(op):
    d = make_dataset(op, DatasetSettings(n=30, sigma=0.0, seed=4))
    np.testing.assert_allclose(d.y_clean, d.x @ op.matrix.T, rtol=1e-12)
    np.testing.assert_array_equal(d.y, d.y_clean)
    assert d.x.shape == (30, 50) and d.y.shape == (30, 60)


@pytest.mark.parametrize("sigma", [1e-5, 1e-3, 1e-1])
def test_noise_level_is_sigma_times_max_y(op, sigma):
    """(y − y_clean)/(σ·max y_clean) ~ N(0, 1): mean and std within 5 standard errors."""
    d = make_dataset(op, DatasetSettings(n=400, sigma=sigma, seed=8))
    eps = (d.y - d.y_clean) / (sigma * d.y_clean.max(axis=1, keepdims=True))
    m = eps.size
    assert abs(eps.mean()) < 5 / np.sqrt(m)
    assert abs(eps.std() - 1) < 5 / np.sqrt(2 * m)
    # per spectrum, not a global scale: each row's noise scales with its own maximum
    per_row = eps.std(axis=1)
    assert abs(np.median(per_row) - 1) < 0.05


def test_add_noise(rng):
    y = np.array([[1.0, 2.0, 4.0], [10.0, 20.0, 40.0]])
    np.testing.assert_array_equal(add_noise(y, 0.0, rng), y)
    noisy = add_noise(y, 0.5, np.random.default_rng(1))
    np.testing.assert_allclose((noisy - y) / np.array([[2.0], [20.0]]), np.random.default_rng(1).standard_normal(y.shape))
    with pytest.raises(ValueError, match="sigma"):
        add_noise(y, -0.1, rng)


# --- splits ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, fractions, sizes", [
    (1000, (0.8, 0.1, 0.1), (800, 100, 100)),
    (100, (0.8, 0.1, 0.1), (80, 10, 10)),
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (3, (0.5, 0.5, 0.0), (2, 1, 0)),  # rounded cumulative cuts: sizes add up to n, 0 stays 0
    (7, (0.0, 0.0, 1.0), (0, 0, 7)),
])
def test_splits_disjoint_covering_sized(n, fractions, sizes, rng):
    s = split_indices(n, fractions, rng)
    assert tuple(len(s[k]) for k in ("train", "val", "test")) == sizes
    allidx = np.concatenate([s["train"], s["val"], s["test"]])
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))
    for k in s:
        assert np.all(np.diff(s[k]) > 0)


def test_subset(op):
    d = make_dataset(op, DatasetSettings(n=100, sigma=1e-3, seed=2))
    x, y = d.subset("val")
    assert x.shape == (10, 50) and y.shape == (10, 60)
    np.testing.assert_array_equal(x, d.x[d.splits["val"]])
    np.testing.assert_array_equal(y, d.y[d.splits["val"]])
    with pytest.raises(ValueError, match="split.*'validation'"):
        d.subset("validation")


# --- NetCDF ------------------------------------------------------------------------------------

def test_netcdf_round_trip_keeps_every_setting(op, tmp_path):
    settings = DatasetSettings(n=25, sigma=1e-2, seed=9, split=(0.6, 0.2, 0.2),
                               glue=GlueSettings(n_components=(2, 3), centre=(20.0, 300.0), width=(10.0, 50.0),
                                                 amplitude=(0.2, 0.9), low_energy_cutoff=4.0))
    d = make_dataset(op, settings)
    path = write_dataset(d, tmp_path / "train.nc")
    assert path == tmp_path / "train.nc" and sorted(p.name for p in tmp_path.iterdir()) == ["train.nc"]
    back = read_dataset(path)
    assert isinstance(back, SyntheticDataset)
    assert back.settings == settings
    assert back.operator.describe() == op.describe()
    np.testing.assert_array_equal(back.operator.matrix, op.matrix)
    for name in ("x", "y_clean", "y"):
        np.testing.assert_array_equal(getattr(back, name), getattr(d, name))
    for k in d.splits:
        np.testing.assert_array_equal(back.splits[k], d.splits[k])

    import xarray as xr

    with xr.open_dataset(path, engine="netcdf4") as f:
        attrs = dict(f.attrs)
        assert f["omega"].attrs["units"] == "meV" and f["Omega"].attrs["units"] == "meV"
        assert f["scattering_rate"].attrs["units"] == "meV"
        assert float(f["temperature"]) == 100.0 and f["temperature"].attrs["units"] == "K"
    assert json.loads(attrs["settings_json"]) == json.loads(json.dumps(asdict(settings)))
    assert json.loads(attrs["operator_json"]) == op.describe()
    # and readable one by one in the header
    assert attrs["sigma"] == 1e-2 and attrs["seed"] == 9 and attrs["n"] == 25
    np.testing.assert_array_equal(attrs["split"], [0.6, 0.2, 0.2])
    np.testing.assert_array_equal(attrs["glue_centre"], [20.0, 300.0])
    np.testing.assert_array_equal(attrs["glue_n_components"], [2, 3])
    assert attrs["glue_low_energy_cutoff"] == 4.0
    assert attrs["kernel"] == "shulga" and attrs["temperature_K"] == 100.0 and attrs["scale_meV"] == 300.0


def test_reading_a_foreign_file_names_it(op, tmp_path):
    path = tmp_path / "other.nc"
    ds = to_xarray(make_dataset(op, DatasetSettings(n=3)))
    ds.attrs.pop("settings_json")
    ds.to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="other.nc.*settings_json"):
        read_dataset(path)


# --- out-of-distribution and realistic shapes --------------------------------------------------

def test_ood_shapes_are_named_finite_non_negative(op):
    shapes = ood_shapes(op.Omega)
    names = set(shapes)
    assert {"wide_gaussian", "trapezoid", "triangle", "spin_fluctuation", "spin_fluctuation_mode"} <= names
    squares = [k for k in names if k.startswith("square")]
    assert len(squares) >= 2 and len([k for k in names if k.startswith("trapezoid")]) >= 2
    assert len([k for k in names if k.startswith("triangle")]) >= 2
    for name, x in shapes.items():
        assert x.shape == (len(op.Omega),), name
        assert np.all(np.isfinite(x)) and np.all(x >= 0) and x.max() > 0, name
    # squares of several heights and widths
    fine = rrim.boson_grid(np.linspace(0.5, 400.0, 7991))
    fine_shapes = ood_shapes(fine)
    heights = {round(fine_shapes[k].max(), 6) for k in squares}
    widths = {round(fine.weights @ (fine_shapes[k] > 0), 0) for k in squares}
    assert len(heights) >= 2 and len(widths) >= 2
    # the wide Gaussian is wide: its half maximum spans more than 150 meV
    wg = fine_shapes["wide_gaussian"]
    assert wg.max() > 0 and (wg > wg.max() / 2).sum() * 0.05 > 150
    # the sharp mode sits near 40 meV
    mode = fine_shapes["spin_fluctuation_mode"] - fine_shapes["spin_fluctuation"] * (0.4 / 0.5)
    assert 35.0 <= fine.values[np.argmax(mode)] <= 45.0


def test_spin_fluctuation_form():
    """a·2Ω_sfΩ/(Ω² + Ω_sf²) peaks at Ω = Ω_sf with height a, → 0 linearly at Ω → 0, cut off at high Ω."""
    Omega = rrim.boson_grid(np.linspace(0.1, 500.0, 5000))
    x = spin_fluctuation(Omega, amplitude=0.5, omega_sf=30.0, cutoff=300.0)
    np.testing.assert_allclose(x.max(), 0.5, rtol=1e-4)
    assert abs(Omega.values[np.argmax(x)] - 30.0) < 0.2
    assert x[0] < 0.5 * 2 * 0.1 / 30.0 * 1.001 and x[-1] < 1e-6


def test_realistic_glue(op):
    a = realistic_glue(op.Omega, 40, np.random.default_rng(4))
    b = realistic_glue(op.Omega, 40, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (40, 50) and np.all(np.isfinite(a)) and np.all(a >= 0)
    assert not np.allclose(a, realistic_glue(op.Omega, 40, np.random.default_rng(5)))
    # suppressed at Ω → 0 (∝ Ω) and finite spectra
    assert np.all(a[:, 0] < a.max(axis=1))
    assert np.all(np.isfinite(op.forward(a)))


def test_realistic_glue_draws_match_its_settings():
    """Ω_sf in 15–60 meV (the MMP peak), and about half carry a sharp mode at 35–45 meV."""
    Omega = rrim.boson_grid(np.linspace(0.5, 400.0, 800))
    x = realistic_glue(Omega, 400, np.random.default_rng(6))
    assert x.shape == (400, 800)
    assert np.all(x[:, 0] < 0.8 * 2 * 0.5 / 15.0 * 1.01)  # a·2Ω/Ω_sf at most at Ω = 0.5 meV
    # a mode (height ≥ 0.3, width ≤ 6 meV) bends x by −x'' ≥ 0.3/36 at its centre; the MMP term by
    # at most a/Ω_sf² ≤ 0.8/15² = 0.0036: the curvature in 30–50 meV tells which glue has a mode
    h = Omega.values[1] - Omega.values[0]
    curvature = -(x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]) / h**2
    window = (Omega.values[1:-1] > 30) & (Omega.values[1:-1] < 50)
    with_mode = curvature[:, window].max(axis=1) > 0.006
    assert abs(with_mode.mean() - 0.5) < 5 * 0.5 / np.sqrt(400)


def test_settings_from_dict_round_trip_and_unknown_keys():
    s = DatasetSettings(n=7, sigma=1e-3, seed=2, glue=GlueSettings(width=(6.0, 7.0)))
    assert DatasetSettings.from_dict(json.loads(json.dumps(asdict(s)))) == s
    with pytest.raises(ValueError, match="settings.*'noise'"):
        DatasetSettings.from_dict({**asdict(s), "noise": 1})
    with pytest.raises(ValueError, match="glue.*'centres'"):
        DatasetSettings.from_dict({**asdict(s), "glue": {"centres": [1, 2]}})


def test_paper_grid_of_noise_levels_and_sizes():
    assert NOISE_LEVELS == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1) and DATASET_SIZES == (100, 1000, 10000, 100000)
    assert DatasetSettings().split == (0.8, 0.1, 0.1)
    assert GlueSettings() == GlueSettings(n_components=(1, 4), centre=(10.0, 350.0), width=(5.0, 100.0),
                                          amplitude=(0.1, 1.0), low_energy_cutoff=5.0)
