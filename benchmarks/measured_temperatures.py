"""Per-spectrum measured temperatures at full speed: throughput of the in-memory job
(rrim.jobs.dataset.invert_dataset, the file job's own invert_rows) with rrim-any-temperature on
spectra at one temperature, at measured temperatures 100 ± 0.3 K (each its own), and on a sweep of
20 set points 10…300 K each ± 0.3 K; side by side with the former path (physics per distinct
temperature) on the measured case; and what building the physics at the nearest point of the
temperature grid (rrim.inversion.temperatures, ≤ 0.5 % away) does to the glue (relative L2 change
against the glue's own error, same spectra).

    python benchmarks/measured_temperatures.py [-n 2048] [--seed 0] [--repeats 3]

prints JSON (spectra/s is the best of the repeats after a warm-up).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def spectra(model, temperatures: np.ndarray, seed: int):
    """(x_true, Dataset of 1/τ in meV on the model's ω grid, σ = 1e-3, each spectrum at its own temperature)."""
    import xarray as xr

    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.synthetic import add_noise

    rng = np.random.default_rng(seed)
    x = realistic_glue(model.info.Omega, temperatures.size, rng)
    base = model.info.base_operator(100.0)
    y = np.stack([base.at_temperature(float(t)).forward(row) for t, row in zip(temperatures, x)])
    y = add_noise(y, 1e-3, rng)
    ds = xr.Dataset({"scattering_rate": (("sample", "omega"), y, {"units": "meV"})},
                    coords={"omega": ("omega", model.info.omega.values, {"units": "meV"}),
                            "temperature": ("sample", temperatures, {"units": "K"})})
    return x, ds


def _rate(engine, ds, repeats: int) -> tuple[float, object]:
    from rrim.io.schema import ArchiveOptions
    from rrim.jobs.dataset import invert_dataset

    best, out = np.inf, None
    for _ in range(repeats):
        engine.close()  # no physics kept from an earlier run
        t0 = time.perf_counter()
        out = invert_dataset(ds, engine, ArchiveOptions())
        best = min(best, time.perf_counter() - t0)
    return ds.sizes["sample"] / best, out


def measure(n: int = 2048, seed: int = 0, repeats: int = 3) -> dict:
    import rrim.jobs.invert as job
    from rrim.inversion.engine import Engine
    from rrim.inversion.temperatures import physics_temperatures
    from rrim.models.loading import load_model

    model = load_model("rrim-any-temperature")
    rng = np.random.default_rng(seed + 1)
    cases = {"one temperature (100 K)": np.full(n, 100.0),
             "measured 100 ± 0.3 K": 100.0 + rng.uniform(-0.3, 0.3, n),
             "sweep: 20 set points 10–300 K, each ± 0.3 K": np.repeat(np.linspace(10.0, 300.0, 20), -(-n // 20))[:n]
             + rng.uniform(-0.3, 0.3, n)}
    result = {}
    with Engine(model, "cpu", batch_size=64) as engine:
        _rate(engine, spectra(model, cases["one temperature (100 K)"][:64], seed)[1], 1)  # warm-up
        for name, temps in cases.items():
            x, ds = spectra(model, temps, seed)
            rate, out = _rate(engine, ds, repeats)
            err = np.linalg.norm(out["glue"].values - x, axis=1) / np.linalg.norm(x, axis=1)
            result[name] = {"spectra_per_second": round(rate, 1), "distinct_temperatures": int(np.unique(temps).size),
                            "physics_built": int(np.unique(physics_temperatures(temps)).size),
                            "median_glue_error": round(float(np.median(err)), 4)}
        one = result["one temperature (100 K)"]["spectra_per_second"]
        for name in list(result)[1:]:
            result[name]["ratio_to_one_temperature"] = round(result[name]["spectra_per_second"] / one, 3)
        # the former path, on the measured case: the physics at every spectrum's own temperature
        x, ds = spectra(model, cases["measured 100 ± 0.3 K"], seed)
        job.physics_temperatures = lambda t: np.asarray(t, dtype=np.float64)
        try:
            rate, exact = _rate(engine, ds, 1)
        finally:
            job.physics_temperatures = physics_temperatures
        _, out = _rate(engine, ds, 1)
        change = np.linalg.norm(out["glue"].values - exact["glue"].values, axis=1) / np.linalg.norm(x, axis=1)
        err = np.linalg.norm(exact["glue"].values - x, axis=1) / np.linalg.norm(x, axis=1)
        result["former path (physics per distinct temperature), measured 100 ± 0.3 K"] = {
            "spectra_per_second": round(rate, 1), "ratio_to_one_temperature": round(rate / one, 3)}
        result["the grid's effect on the glue (measured 100 ± 0.3 K)"] = {
            "median_relative_change": float(f"{np.median(change):.3g}"), "max_relative_change": float(f"{change.max():.3g}"),
            "median_glue_error_exact_temperatures": round(float(np.median(err)), 4)}
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    print(json.dumps(measure(a.n, a.seed, a.repeats), indent=2))
