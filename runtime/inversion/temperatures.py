"""Which temperature the physics is built at for a measured one.

A(T) and, for a noise-adaptive model, the singular basis of A(T) are built once per distinct
temperature (:meth:`rrim.inversion.engine.Engine.physics`), 10–20 ms each on the shipped grids: an
archive whose every spectrum has its own measured temperature (100 ± 0.3 K read from a
thermometer) would build them once per spectrum, 20–30× slower than one temperature. The physics
is therefore built at the nearest point of a geometric temperature grid, ``ANCHOR_K · GRID_RATIO^k``
(k integer): at most √GRID_RATIO − 1 ≈ 0.5 % from the measured temperature, 100 K exactly on it,
about 340 points over 10–300 K. What this does to the glue is measured side by side with the
throughput in benchmarks/measured_temperatures.py (rrim-any-temperature, σ = 1e-3).
"""
from __future__ import annotations

import numpy as np

#: Ratio of neighbouring temperatures of the grid (a temperature moves by at most √GRID_RATIO − 1 ≈ 0.5 %).
GRID_RATIO = 1.01
#: A temperature of the grid (K): the shipped models' reference temperature, kept exact.
ANCHOR_K = 100.0


def physics_temperatures(temperatures_K) -> np.ndarray:
    """The grid temperatures (K) nearest (in ratio) to ``temperatures_K`` (array; 0 K stays 0 K)."""
    t = np.asarray(temperatures_K, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.round(np.log(np.where(t > 0, t, ANCHOR_K) / ANCHOR_K) / np.log(GRID_RATIO))
    return np.where(t > 0, ANCHOR_K * GRID_RATIO ** k, t)
