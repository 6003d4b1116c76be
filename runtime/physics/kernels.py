"""Kernels K(ω, Ω, T) of the generalized Allen formula 1/τ(ω) = ∫ dΩ I²χ(Ω) K(ω, Ω, T).

All energies (ω, Ω and the temperature as an energy k_B·T) are in meV; K is dimensionless
(1/τ then carries the unit of ∫ I²χ dΩ, i.e. meV for a dimensionless I²χ).

Kernels live in a registry keyed by name (``shulga``, ``allen``); a user-supplied kernel matrix
is a :class:`MatrixKernel`, a user function a :class:`FunctionKernel`. Add a kernel with
:func:`register_kernel`. A kernel states its domain: ``positive_omega``/``positive_Omega`` (the
grids must be > 0; the built-in kernels) and ``temperature_dependent`` (False for a matrix);
:class:`rrim.ForwardOperator` checks every grid against them, for every kind of kernel alike.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class Kernel(Protocol):
    """A kernel: ``evaluate(omega (n,), Omega (m,), temperature_mev) -> K (n, m)``.

    Optional attributes (defaults when absent): ``positive_omega`` and ``positive_Omega`` (False:
    any sign allowed), ``temperature_dependent`` (True).
    """

    name: str

    def evaluate(self, omega: np.ndarray, Omega: np.ndarray, temperature_mev: float) -> np.ndarray: ...


def _u_n(u: np.ndarray, t: float) -> np.ndarray:
    """u·n_B(u) = u / (e^{u/T} − 1) for u ≥ 0 (meV), → T as u → 0 and 0 at T = 0.

    Evaluated as T·x/expm1(x) with x = u/T: expm1 keeps small x from cancelling, x = 0 (u = 0,
    or u/T underflowing) takes the limit T, and x so large that expm1 overflows to inf (e.g. at
    T → 0) gives the correct limit 0 (the overflow warning is suppressed on purpose).
    """
    if t == 0.0:
        return np.zeros_like(u)
    x = u / t
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = t * (x / np.expm1(x))
    return np.where(x == 0.0, t, r)


def _check_temperature(temperature_mev) -> float:
    t = float(temperature_mev)
    if not (np.isfinite(t) and t >= 0):
        raise ValueError(f"temperature: k_B·T must be a finite energy ≥ 0 meV, got {temperature_mev!r}")
    return t


def shulga_kernel(omega, Omega, temperature_mev: float) -> np.ndarray:
    """Shulga kernel K(ω, Ω, T) in the stable form of docs/ARCHITECTURE.md §1; broadcasts ω and Ω (meV).

    K = 2π(1 − Ω/ω)θ(ω − Ω) + (2π/ω)[2ω n(Ω) − (ω+Ω) n(ω+Ω) + |ω−Ω| n(|ω−Ω|)], with u·n(u)
    evaluated by :func:`_u_n`. The naive coth form cancels badly and can turn negative.

    Accuracy: a few ε (float64) relative to the largest term, 2π(1 + Ω/ω) + 4πT/Ω; for ω ≪ Ω the
    bracket is a difference of O(ω), so the relative error of K grows like ε·min(Ω, T)/ω there.
    """
    w = np.asarray(omega, dtype=np.float64)
    W = np.asarray(Omega, dtype=np.float64)
    t = _check_temperature(temperature_mev)
    allen = 2 * np.pi * np.clip(1.0 - W / w, 0.0, None)
    if t == 0.0:
        return allen + 0.0 * W  # broadcast
    # 2ω n(Ω) = (2ω/Ω)·[Ω n(Ω)]
    thermal = (2 * w / W) * _u_n(W, t) - _u_n(w + W, t) + _u_n(np.abs(w - W), t)
    return allen + (2 * np.pi / w) * thermal


def allen_kernel(omega, Omega, temperature_mev: float = 0.0) -> np.ndarray:
    """Allen's T = 0 kernel 2π(1 − Ω/ω)θ(ω − Ω); ignores the temperature (still checked to be ≥ 0)."""
    _check_temperature(temperature_mev)
    w = np.asarray(omega, dtype=np.float64)
    W = np.asarray(Omega, dtype=np.float64)
    return 2 * np.pi * np.clip(1.0 - W / w, 0.0, None)


@dataclass(frozen=True)
class FunctionKernel:
    """A named kernel defined by a function ``f(omega, Omega, temperature_mev)`` that broadcasts.

    ``omega`` arrives as a column (n, 1), ``Omega`` as a row (1, m), both in meV, and the
    temperature as k_B·T in meV. ``positive_omega``/``positive_Omega``: the grids must be > 0
    (default False: any strictly monotonic grid); ``temperature_dependent``: False for a kernel
    that ignores the temperature (its operators then have none).
    """

    name: str
    function: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    description: str = ""
    positive_omega: bool = False
    positive_Omega: bool = False
    temperature_dependent: bool = True

    def describe(self) -> dict:
        """JSON-friendly summary; portable (rebuilt by name) only when registered under its name."""
        return {"kind": "function", "name": self.name, "description": self.description,
                "registered": KERNELS.get(self.name) is self}

    def evaluate(self, omega, Omega, temperature_mev: float) -> np.ndarray:
        w = np.asarray(omega, dtype=np.float64)[:, None]
        W = np.asarray(Omega, dtype=np.float64)[None, :]
        return np.broadcast_to(self.function(w, W, float(temperature_mev)), (w.shape[0], W.shape[1])).copy()


@dataclass(frozen=True, eq=False)
class MatrixKernel:
    """A user-supplied kernel matrix K (n_ω, n_Ω) on fixed grids (meV); it has no temperature.

    The grids are checked like every grid (1-D, finite, strictly monotonic, either sign).
    """

    matrix: np.ndarray
    omega: np.ndarray
    Omega: np.ndarray
    name: str = "matrix"
    positive_omega = False
    positive_Omega = False
    temperature_dependent = False

    def __post_init__(self):
        from rrim.physics.grids import Grid

        k = np.array(self.matrix, dtype=np.float64)
        w = Grid(self.omega, name="omega").values.copy()
        W = Grid(self.Omega, name="Omega").values.copy()
        if k.shape != (w.size, W.size):
            raise ValueError(f"matrix: kernel matrix shape {k.shape} does not match grids ({w.size}, {W.size})")
        if not np.all(np.isfinite(k)):
            raise ValueError("matrix: kernel matrix contains NaN or inf")
        for a in (k, w, W):
            a.setflags(write=False)
        object.__setattr__(self, "matrix", k)
        object.__setattr__(self, "omega", w)
        object.__setattr__(self, "Omega", W)

    def describe(self) -> dict:
        """Shape and SHA-256 of the matrix and grids (float64 bytes): identifies it, cannot rebuild it."""
        digest = hashlib.sha256()
        for a in (self.matrix, self.omega, self.Omega):
            digest.update(np.ascontiguousarray(a).tobytes())
        return {"kind": "matrix", "name": self.name, "shape": list(self.matrix.shape),
                "sha256": digest.hexdigest(), "portable": False}

    def evaluate(self, omega, Omega, temperature_mev: float = 0.0) -> np.ndarray:
        if not (np.array_equal(np.asarray(omega), self.omega) and np.array_equal(np.asarray(Omega), self.Omega)):
            raise ValueError("matrix: a user-supplied kernel matrix only serves the grids it was given on")
        return self.matrix.copy()


KERNELS: dict[str, Kernel] = {}


def register_kernel(kernel: Kernel) -> Kernel:
    """Add ``kernel`` to the registry under ``kernel.name`` (refuses to overwrite)."""
    if kernel.name in KERNELS:
        raise ValueError(f"kernel: a kernel named {kernel.name!r} is already registered")
    KERNELS[kernel.name] = kernel
    return kernel


def get_kernel(kernel: str | Kernel) -> Kernel:
    """A registered kernel by name, or ``kernel`` itself if it already is one."""
    if not isinstance(kernel, str):
        if not hasattr(kernel, "evaluate"):
            raise ValueError(f"kernel: expected a kernel name or object with .evaluate, got {kernel!r}")
        return kernel
    try:
        return KERNELS[kernel]
    except KeyError:
        raise ValueError(f"kernel: unknown kernel {kernel!r}; registered: {sorted(KERNELS)}") from None


register_kernel(FunctionKernel("shulga", shulga_kernel, "Shulga finite-temperature kernel (stable form)",
                               positive_omega=True, positive_Omega=True))
register_kernel(FunctionKernel("allen", allen_kernel, "Allen T = 0 kernel", positive_omega=True, positive_Omega=True))
