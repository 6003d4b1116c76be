"""Unit conversions at the edges of rrim; everything inside is meV.

Energies (ω, Ω, 1/τ) are accepted in meV or cm⁻¹, temperatures in K (or meV as an
energy k_B·T). Conversions are exact multiplications, documented constants below.
"""
from __future__ import annotations

import numpy as np

#: Boltzmann constant in meV/K: the exact SI value k_B/e (0.08617333 in docs/ARCHITECTURE.md §1 is it rounded; the
#: closed-form kernel table of docs/ARCHITECTURE.md §1 was computed with this one, to 1e-12).
K_B_MEV_PER_K = 0.08617333262
#: 1 meV expressed in cm⁻¹.
CM1_PER_MEV = 8.0655439

_ENERGY_FACTORS = {  # multiply a value in this unit by the factor to get meV
    "meV": 1.0,
    "mev": 1.0,
    "cm-1": 1.0 / CM1_PER_MEV,
    "cm^-1": 1.0 / CM1_PER_MEV,
    "cm**-1": 1.0 / CM1_PER_MEV,
    "cm⁻¹": 1.0 / CM1_PER_MEV,
    "1/cm": 1.0 / CM1_PER_MEV,
}

ENERGY_UNITS = ("meV", "cm-1")


def energy_factor(unit: str, *, name: str = "unit") -> float:
    """Factor that converts an energy in ``unit`` to meV; raises ``ValueError`` naming ``name``."""
    if not isinstance(unit, str):
        raise ValueError(f"{name}: energy unit must be a string such as 'meV' or 'cm-1', got {unit!r}")
    key = unit.strip()
    if key not in _ENERGY_FACTORS:
        raise ValueError(
            f"{name}: unknown energy unit {unit!r}; accepted: 'meV' or 'cm-1' (also 'cm^-1', '1/cm')"
        )
    return _ENERGY_FACTORS[key]


def to_mev(values, unit: str, *, name: str = "values") -> np.ndarray:
    """Energies in ``unit`` ('meV' or 'cm-1') → float64 array in meV."""
    return np.asarray(values, dtype=np.float64) * energy_factor(unit, name=name)


def from_mev(values, unit: str, *, name: str = "values") -> np.ndarray:
    """Energies in meV → float64 array in ``unit``."""
    return np.asarray(values, dtype=np.float64) / energy_factor(unit, name=name)


def kelvin_to_mev(temperature_k, *, name: str = "temperature") -> np.ndarray | float:
    """Temperature in K (≥ 0, finite) → k_B·T in meV."""
    t = np.asarray(temperature_k, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name}: temperature must be finite, got {temperature_k!r}")
    if np.any(t < 0):
        raise ValueError(f"{name}: temperature must be ≥ 0 K, got {temperature_k!r}")
    out = t * K_B_MEV_PER_K
    return float(out) if out.ndim == 0 else out


def mev_to_kelvin(temperature_mev):
    """k_B·T in meV → temperature in K."""
    return np.asarray(temperature_mev, dtype=np.float64) / K_B_MEV_PER_K
