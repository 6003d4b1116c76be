"""Energy grids (meV) with trapezoidal quadrature weights.

A :class:`Grid` is an immutable, strictly monotonic (increasing or decreasing), finite float64
array of energies in meV; its trapezoid weights are positive either way. The optical factories
:func:`omega_grid` and :func:`boson_grid` further demand increasing, strictly positive energies
(the Shulga kernel diverges as 4πT/Ω at Ω → 0); a user kernel may allow any sign
(:class:`rrim.ForwardOperator` checks each grid against its kernel).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rrim.physics.units import to_mev


@dataclass(frozen=True, eq=False)
class Grid:
    """Energies in meV, shape (n,), strictly monotonic; ``weights`` are trapezoid |ΔΩ| (meV)."""

    values: np.ndarray
    name: str = "grid"
    _weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        v = np.array(self.values, dtype=np.float64, copy=True)
        if v.ndim != 1:
            raise ValueError(f"{self.name}: grid must be 1-D, got shape {v.shape}")
        if v.size < 2:
            raise ValueError(f"{self.name}: grid needs at least 2 points, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{self.name}: grid contains NaN or inf")
        d = np.diff(v)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError(f"{self.name}: grid must be strictly monotonic (strictly increasing or strictly decreasing)")
        v.setflags(write=False)
        w = trapezoid_weights(v)
        w.setflags(write=False)
        object.__setattr__(self, "values", v)
        object.__setattr__(self, "_weights", w)

    @property
    def increasing(self) -> bool:
        return bool(self.values[1] > self.values[0])

    @property
    def weights(self) -> np.ndarray:
        """Trapezoidal quadrature weights in meV, shape (n,)."""
        return self._weights

    def __len__(self) -> int:
        return self.values.size

    def __eq__(self, other) -> bool:
        return isinstance(other, Grid) and np.array_equal(self.values, other.values)

    def __hash__(self) -> int:
        return hash(self.values.tobytes())

    def describe(self) -> dict:
        """JSON-friendly exact definition: uniform grids by (start, stop, n), others by value list."""
        v = self.values
        if np.array_equal(v, np.linspace(v[0], v[-1], v.size)):  # exact, so the round trip is too
            return {"kind": "uniform", "start": float(v[0]), "stop": float(v[-1]), "n": int(v.size), "unit": "meV"}
        return {"kind": "values", "values": [float(x) for x in v], "unit": "meV"}

    @classmethod
    def from_description(cls, desc: dict, name: str = "grid") -> "Grid":
        """Inverse of :meth:`describe`."""
        if not isinstance(desc, dict):
            raise ValueError(f"{name}: grid description must be a dict, got {desc!r}")
        try:
            if desc.get("kind") == "uniform":
                return uniform_grid(desc["start"], desc["stop"], desc["n"], unit=desc.get("unit", "meV"), name=name)
            if desc.get("kind") == "values":
                return Grid(to_mev(desc["values"], desc.get("unit", "meV"), name=name), name=name)
        except KeyError as e:
            raise ValueError(f"{name}: grid description {desc!r} lacks the key {e.args[0]!r}") from None
        raise ValueError(f"{name}: unknown grid description {desc!r}; 'kind' must be 'uniform' or 'values'")


def trapezoid_weights(values: np.ndarray) -> np.ndarray:
    """Trapezoid weights ≥ 0: ∫ f ≈ Σ w_j f(x_j) over the nodes' range, in either order (shape (n,), unit of values)."""
    d = np.abs(np.diff(values))
    w = np.zeros_like(values)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w


def uniform_grid(start: float, stop: float, n: int, *, unit: str = "meV", name: str = "grid") -> Grid:
    """``n`` evenly spaced energies from ``start`` to ``stop`` (inclusive) in ``unit``, as meV."""
    if int(n) != n or n < 2:
        raise ValueError(f"{name}: number of points must be an integer ≥ 2, got {n!r}")
    return Grid(to_mev(np.linspace(start, stop, int(n)), unit, name=name), name=name)


def _increasing(g: Grid) -> Grid:
    if not g.increasing:
        raise ValueError(f"{g.name}: grid must be strictly increasing")
    return g


def omega_grid(values, *, unit: str = "meV") -> Grid:
    """Optical-energy (ω) grid in meV; must be strictly positive and increasing."""
    g = _increasing(Grid(to_mev(values, unit, name="omega"), name="omega"))
    if g.values.min() <= 0:
        raise ValueError("omega: grid must be strictly positive (ω > 0 meV)")
    return g


def boson_grid(values, *, unit: str = "meV") -> Grid:
    """Boson-energy (Ω) grid in meV; must not contain 0 or negative values (K ~ 4πT/Ω)."""
    g = _increasing(Grid(to_mev(values, unit, name="Omega"), name="Omega"))
    if g.values.min() <= 0:
        raise ValueError("Omega: grid must be strictly positive; Ω = 0 is a kernel singularity (K ~ 4πT/Ω)")
    return g


#: Default grids of the shipped model: 200 points on 2…400 meV each.
DEFAULT_OMEGA = dict(start=2.0, stop=400.0, n=200)
DEFAULT_BOSON = dict(start=2.0, stop=400.0, n=200)


def default_omega_grid() -> Grid:
    """The shipped model's ω grid: 2…400 meV, 200 points."""
    return omega_grid(np.linspace(DEFAULT_OMEGA["start"], DEFAULT_OMEGA["stop"], DEFAULT_OMEGA["n"]))


def default_boson_grid() -> Grid:
    """The shipped model's Ω grid: 2…400 meV, 200 points."""
    return boson_grid(np.linspace(DEFAULT_BOSON["start"], DEFAULT_BOSON["stop"], DEFAULT_BOSON["n"]))
