"""Quantities derived from a glue function I²χ(Ω) on an Ω grid (meV): a Grid or a plain array
(strictly monotonic, > 0, meV; integrals by the trapezoid rule over its range)."""
from __future__ import annotations

import numpy as np

from rrim.physics.grids import Grid


def _grid(Omega) -> Grid:
    if not isinstance(Omega, Grid):
        try:
            Omega = Grid(Omega, name="Omega")
        except (TypeError, ValueError) as e:
            raise ValueError(f"Omega: expected an rrim.Grid or an array of energies in meV ({e})") from None
    if Omega.values.min() <= 0:
        raise ValueError("Omega: energies must be > 0 meV (λ and ω_ln weigh the glue by 1/Ω)")
    return Omega


def _glue(x, Omega: Grid) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != len(Omega):
        raise ValueError(f"x: last axis must have the Ω grid's length {len(Omega)}, got shape {x.shape}")
    return x


def coupling_lambda(x, Omega) -> np.ndarray:
    """λ = 2∫ I²χ(Ω)/Ω dΩ (dimensionless, trapezoid rule) for x (..., n_Ω) → (...); Omega a Grid or array (meV)."""
    Omega = _grid(Omega)
    x = _glue(x, Omega)
    return 2.0 * (x / Omega.values) @ Omega.weights


def omega_log(x, Omega) -> np.ndarray:
    """ω_ln = exp[(2/λ)∫ ln Ω · I²χ(Ω)/Ω dΩ] in meV for x (..., n_Ω) → (...); NaN where λ ≤ 0."""
    Omega = _grid(Omega)
    x = _glue(x, Omega)
    lam = coupling_lambda(x, Omega)
    num = 2.0 * (x * np.log(Omega.values) / Omega.values) @ Omega.weights
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # signed x may give any ratio
        return np.where(lam > 0, np.exp(num / np.where(lam > 0, lam, 1.0)), np.nan)
