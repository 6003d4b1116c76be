"""Unit conversions at the edges of rrim; everything inside is meV (energies) and K (temperatures).

Unit strings are parsed by pint (https://pint.readthedocs.io), chosen over cf-units because it is pure
Python (cf-units needs the UDUNITS-2 C library), parses the spellings spectroscopists write ('1/cm',
'cm^-1', 'cm**-1', 'cm^{-1}', 'cm⁻¹', 'meV', 'eV', 'THz', 'GHz', '1/s', 'Hz', 'K', 'mK', 'degC', '°C',
'kelvin', …) and converts offset temperatures (°C) correctly. rrim also reads the CF/UDUNITS habit
of a power written without an operator ('cm-1', 's-1', 'm-1').

Energies (ω, Ω, 1/τ) may be given as an energy (meV, eV…), a wavenumber (cm⁻¹, m⁻¹…: E = hc·ν̃ with
1 meV = :data:`CM1_PER_MEV` cm⁻¹) or a frequency (THz, Hz, s⁻¹…: E = h·f with h = :data:`MEV_PER_THZ`
meV/THz, so 's-1' is read as cycles per second). pint scales within a dimension (eV → meV, m⁻¹ →
cm⁻¹, Hz → THz); rrim's constants cross between them, so 'meV' and 'cm-1' convert exactly as before.
Temperatures are in K (or meV as an energy k_B·T inside the physics).
"""
from __future__ import annotations

import functools
import re

import numpy as np

#: Boltzmann constant in meV/K: the exact SI value k_B/e (0.08617333 in docs/ARCHITECTURE.md §1 is it rounded; the
#: closed-form kernel table of docs/ARCHITECTURE.md §1 was computed with this one, to 1e-12).
K_B_MEV_PER_K = 0.08617333262
#: 1 meV expressed in cm⁻¹.
CM1_PER_MEV = 8.0655439
#: h/e in meV per THz (exact SI): the energy of a 1 THz photon.
MEV_PER_THZ = 4.135667696923859

ENERGY_UNITS = ("meV", "cm-1")
#: Examples named in error messages (any spelling pint parses to these dimensions is accepted).
ENERGY_EXAMPLES = "'meV', 'eV', 'cm-1', '1/cm', 'cm^-1', 'cm**-1', 'cm⁻¹', 'THz', 's-1'"
TEMPERATURE_EXAMPLES = "'K', 'kelvin', 'mK', 'degC', '°C'"

_ALIASES = {"mev": "meV"}  # accepted before pint (which is case-sensitive: 'MeV' is 10⁹ times 'meV')
_BARE_POWER = re.compile(r"(?<=[A-Za-zµμ])(-?\d+)\b")  # UDUNITS 'cm-1', 's-1', 'm2'


@functools.lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


@functools.lru_cache(maxsize=256)
def _parse(unit: str):
    """The pint unit of ``unit`` (ValueError if it does not parse)."""
    text = _BARE_POWER.sub(r"^\1", _ALIASES.get(unit.strip(), unit.strip()))
    if not text:
        raise ValueError("empty unit")
    try:
        return _registry().parse_units(text)
    except Exception as e:  # pint raises UndefinedUnitError, DefinitionSyntaxError, TypeError… on bad strings
        raise ValueError(str(e)) from None


@functools.lru_cache(maxsize=256)
def _energy_factor(unit: str) -> float:
    u = _parse(unit)
    q = _registry().Quantity(1.0, u)
    if q.check("[energy]"):
        return float(q.to("meV").magnitude)
    if q.check("1/[length]"):
        return float(q.to("1/cm").magnitude) / CM1_PER_MEV  # as 1.0 / CM1_PER_MEV for 'cm-1', bit for bit
    if q.check("1/[time]"):
        return float(q.to("THz").magnitude) * MEV_PER_THZ
    raise ValueError(f"{unit!r} is a {q.dimensionality}, not an energy, wavenumber or frequency")


def energy_factor(unit: str, *, name: str = "unit") -> float:
    """Factor that converts an energy in ``unit`` to meV; raises ``ValueError`` naming ``name``."""
    if not isinstance(unit, str):
        raise ValueError(f"{name}: energy unit must be a string such as 'meV' or 'cm-1', got {unit!r}")
    try:
        return _energy_factor(unit)
    except ValueError as e:
        raise ValueError(f"{name}: unknown energy unit {unit!r} ({e}); accepted: any energy, wavenumber or "
                         f"frequency unit, e.g. {ENERGY_EXAMPLES}") from None


def to_mev(values, unit: str, *, name: str = "values") -> np.ndarray:
    """Energies in ``unit`` (:func:`energy_factor`) → float64 array in meV."""
    return np.asarray(values, dtype=np.float64) * energy_factor(unit, name=name)


def from_mev(values, unit: str, *, name: str = "values") -> np.ndarray:
    """Energies in meV → float64 array in ``unit``."""
    return np.asarray(values, dtype=np.float64) / energy_factor(unit, name=name)


def to_kelvin(values, unit: str, *, name: str = "temperature") -> np.ndarray:
    """Temperatures in ``unit`` (K, mK, degC, °C, …; offsets applied) → float64 array in K; ``ValueError``
    naming ``name`` for a unit that is not a temperature."""
    if not isinstance(unit, str):
        raise ValueError(f"{name}: temperature unit must be a string such as 'K', got {unit!r}")
    try:
        u = _parse(unit)
        q = _registry().Quantity(np.asarray(values, dtype=np.float64), u)
        return np.asarray(q.to("kelvin").magnitude, dtype=np.float64)
    except Exception as e:  # ValueError from _parse, pint's DimensionalityError
        raise ValueError(f"{name}: units {unit!r} are not a temperature ({e}); accepted: e.g. "
                         f"{TEMPERATURE_EXAMPLES}") from None


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
