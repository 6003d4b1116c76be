"""Quantities derived from a glue function I²χ(Ω) on an Ω grid (meV)."""
from __future__ import annotations

import numpy as np

from .grids import Grid


def _glue(x, Omega: Grid) -> np.ndarray:
    if not isinstance(Omega, Grid):
        raise ValueError(f"Omega: expected an rrim.Grid (meV), got {type(Omega).__name__}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] != len(Omega):
        raise ValueError(f"x: last axis must have the Ω grid's length {len(Omega)}, got shape {x.shape}")
    return x


def coupling_lambda(x, Omega: Grid) -> np.ndarray:
    """λ = 2∫ I²χ(Ω)/Ω dΩ (dimensionless, trapezoid rule) for x (..., n_Ω) → (...)."""
    x = _glue(x, Omega)
    return 2.0 * (x / Omega.values) @ Omega.weights


def omega_log(x, Omega: Grid) -> np.ndarray:
    """ω_ln = exp[(2/λ)∫ ln Ω · I²χ(Ω)/Ω dΩ] in meV for x (..., n_Ω) → (...); NaN where λ ≤ 0."""
    x = _glue(x, Omega)
    lam = coupling_lambda(x, Omega)
    num = 2.0 * (x * np.log(Omega.values) / Omega.values) @ Omega.weights
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # signed x may give any ratio
        return np.where(lam > 0, np.exp(num / np.where(lam > 0, lam, 1.0)), np.nan)
