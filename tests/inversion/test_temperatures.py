"""Measured temperatures at full speed (issue 17, item 3): the physics is built at the nearest point of a
geometric temperature grid, so spectra at 100 ± 0.3 K share one build instead of one each (the throughput
side by side: benchmarks/measured_temperatures.py)."""
from __future__ import annotations

import numpy as np
import xarray as xr

import rrim
from rrim.inversion.engine import Engine
from rrim.inversion.temperatures import ANCHOR_K, GRID_RATIO, physics_temperatures
from rrim.io.schema import ArchiveOptions
from rrim.jobs.dataset import invert_dataset
from rrim.models.loading import load_model
from runtime_helpers import noisy_spectra, write_model


def test_grid_temperatures_are_within_half_a_step_and_keep_the_anchor():
    t = np.geomspace(0.01, 1e5, 200_001)
    r = physics_temperatures(t)
    assert np.max(np.abs(np.log(r / t))) <= 0.5 * np.log(GRID_RATIO) * (1 + 1e-9)  # ≤ 0.5 % off
    np.testing.assert_allclose(physics_temperatures(r), r, rtol=1e-12)  # grid points map to themselves
    assert physics_temperatures([ANCHOR_K, 0.0]).tolist() == [ANCHOR_K, 0.0]
    assert np.unique(physics_temperatures(np.linspace(10.0, 300.0, 100_000))).size <= 345


def test_measured_temperatures_share_the_physics(tmp_path, default_operator):
    """64 spectra at 64 temperatures 100 ± 0.3 K: one physics build (100 K), each spectrum's own temperature
    written, glue identical to inverting them all at 100 K."""
    model = load_model(write_model(tmp_path, default_operator, "input"))
    w = np.linspace(2.0, 400.0, 300)
    _, y = noisy_spectra(rrim.ForwardOperator(w, default_operator.Omega), 64, seed=9)
    temps = 100.0 + np.random.default_rng(1).uniform(-0.3, 0.3, 64)
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), y, {"units": "meV"})},
                    coords={"omega": ("omega", w, {"units": "meV"}), "temperature": ("sample", temps, {"units": "K"})})
    with Engine(model, "cpu", batch_size=16) as engine:
        out = invert_dataset(ds, engine, ArchiveOptions())
        assert set(engine._physics) == {100.0}
    np.testing.assert_array_equal(out["temperature"].values, temps)
    at_100 = ds.assign_coords(temperature=((), 100.0, {"units": "K"}))
    with Engine(model, "cpu", batch_size=16) as engine:
        np.testing.assert_array_equal(out["glue"].values, invert_dataset(at_100, engine, ArchiveOptions())["glue"].values)
