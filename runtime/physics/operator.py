"""The forward operator y = A x of the discretized generalized Allen formula.

A_ij = K(ω_i, Ω_j, T)·ΔΩ_j (meV): the trapezoid weights sit inside A so that x_j = I²χ(Ω_j)
keeps its physical meaning and y_i = 1/τ(ω_i) in meV. Spectra are rows: x has shape (..., n_Ω),
y has shape (..., n_ω). The learned and classical solvers work in *scaled* units y/s and A/s
(s = :data:`DEFAULT_SCALE` meV by default), where h = 0.01 regularizes sensibly.

A :class:`ForwardOperator` is also a linear operator in scipy's sense (``shape``, ``dtype``,
``matvec``, ``rmatvec``, ``matmat``, ``rmatmat`` on columns): ``scipy.sparse.linalg.aslinearoperator(op)``,
``lsqr(op, y)`` and the like take it as it is; :func:`dot_test` checks any such operator's adjoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg

from rrim.physics.grids import Grid, default_boson_grid, default_omega_grid
from rrim.physics.kernels import KERNELS, Kernel, get_kernel
from rrim.physics.units import kelvin_to_mev

#: Default scale s (meV) dividing y and A; recorded in every model.
DEFAULT_SCALE = 300.0
#: Default Tikhonov weight h of the preconditioner P = (AᵀA + hI)⁻¹Aᵀ (scaled units).
DEFAULT_H = 0.01
#: Default temperature (K) of the shipped model.
DEFAULT_TEMPERATURE = 100.0


@dataclass(frozen=True)
class SVD:
    """Thin SVD of the scaled matrix A/s = U diag(s) Vt; U (n_ω, r), s (r,), Vt (r, n_Ω)."""

    U: np.ndarray
    s: np.ndarray
    Vt: np.ndarray


def _as_grid(g, name: str) -> Grid:
    return g if isinstance(g, Grid) else Grid(g, name=name)


def _check_domain(grid: Grid, name: str, kernel) -> None:
    """``ValueError`` naming the grid if the kernel needs it > 0 and it is not."""
    if getattr(kernel, f"positive_{name}", False) and grid.values.min() <= 0:
        why = " (Ω = 0 is a kernel singularity)" if name == "Omega" else ""
        raise ValueError(f"{name}: grid must be strictly positive for the {kernel.name!r} kernel{why}")


def _positive_float(value, name: str, what: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or ≥ 0); ``ValueError`` naming ``name`` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {what}, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected {what}, finite and {bound}, got {value!r}")
    return v


class ForwardOperator:
    """Grids (meV), temperature (K), kernel and scale s (meV) → A, Aᵀ, A/s, P and the SVD.

    Parameters
    ----------
    omega, Omega : Grid or array of meV
        Optical-energy grid (n_ω,) and boson-energy grid (n_Ω,), strictly monotonic (increasing
        or decreasing); > 0 where the kernel says so (``positive_omega``/``positive_Omega``: the
        built-in kernels), any sign otherwise (a :class:`MatrixKernel`, a user :class:`FunctionKernel`).
    temperature : float, optional
        Temperature in K (≥ 0); default 100 K. A kernel without temperature (``temperature_dependent``
        False, e.g. a :class:`MatrixKernel`) takes none: ``temperature`` is then None.
    kernel : str or Kernel
        A registered kernel name (``"shulga"``, ``"allen"``) or a kernel object.
    scale : float
        s in meV; scaled units are y/s and A/s.
    """

    def __init__(self, omega=None, Omega=None, temperature: float | None = None,
                 kernel: str | Kernel = "shulga", scale: float = DEFAULT_SCALE):
        self.kernel = get_kernel(kernel)
        self.omega = default_omega_grid() if omega is None else _as_grid(omega, "omega")
        self.Omega = default_boson_grid() if Omega is None else _as_grid(Omega, "Omega")
        _check_domain(self.Omega, "Omega", self.kernel)
        _check_domain(self.omega, "omega", self.kernel)
        if getattr(self.kernel, "temperature_dependent", True):
            t = DEFAULT_TEMPERATURE if temperature is None else temperature
            self.temperature = _positive_float(t, "temperature", "a temperature in K", allow_zero=True)
            self.temperature_mev = kelvin_to_mev(self.temperature)
        else:
            if temperature is not None:
                raise ValueError(f"temperature: the {self.kernel.name!r} kernel has no temperature "
                                 f"(a matrix on fixed grids); leave temperature out, got {temperature!r}")
            self.temperature = self.temperature_mev = None
        self.scale = _positive_float(scale, "scale", "a number of meV")

    def __repr__(self) -> str:
        return (f"ForwardOperator(kernel={self.kernel.name!r}, T={self.temperature} K, "
                f"n_omega={len(self.omega)}, n_Omega={len(self.Omega)}, scale={self.scale} meV)")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.omega), len(self.Omega)

    #: dtype of A (scipy's linear-operator protocol)
    dtype = np.dtype(np.float64)

    def matvec(self, x) -> np.ndarray:
        """A x for one glue function x (n_Ω,) → (n_ω,) meV (scipy's protocol: one column)."""
        return self.matrix @ np.asarray(x, dtype=np.float64).reshape(-1)

    def rmatvec(self, y) -> np.ndarray:
        """Aᵀ y for one spectrum y (n_ω,) → (n_Ω,)."""
        return self.matrix.T @ np.asarray(y, dtype=np.float64).reshape(-1)

    def matmat(self, X) -> np.ndarray:
        """A X for glue functions as columns, X (n_Ω, k) → (n_ω, k)."""
        return self.matrix @ np.asarray(X, dtype=np.float64)

    def rmatmat(self, Y) -> np.ndarray:
        """Aᵀ Y for spectra as columns, Y (n_ω, k) → (n_Ω, k)."""
        return self.matrix.T @ np.asarray(Y, dtype=np.float64)

    @cached_property
    def kernel_matrix(self) -> np.ndarray:
        """K(ω_i, Ω_j, T), shape (n_ω, n_Ω), float64, read-only."""
        t = 0.0 if self.temperature_mev is None else self.temperature_mev
        k = np.asarray(self.kernel.evaluate(self.omega.values, self.Omega.values, t),
                       dtype=np.float64)
        k.setflags(write=False)
        return k

    @cached_property
    def matrix(self) -> np.ndarray:
        """A = K·ΔΩ (meV per unit of x), shape (n_ω, n_Ω), float64, read-only."""
        a = self.kernel_matrix * self.Omega.weights[None, :]
        a.setflags(write=False)
        return a

    @cached_property
    def scaled_matrix(self) -> np.ndarray:
        """A/s, shape (n_ω, n_Ω), float64, read-only."""
        a = self.matrix / self.scale
        a.setflags(write=False)
        return a

    def _check_last(self, arr, n: int, name: str) -> np.ndarray:
        a = np.asarray(arr, dtype=np.float64)
        if a.ndim == 0 or a.shape[-1] != n:
            raise ValueError(f"{name}: last axis must have length {n}, got shape {a.shape}")
        return a

    def forward(self, x) -> np.ndarray:
        """y = A x for glue functions x (..., n_Ω) → scattering rates y (..., n_ω) in meV."""
        return self._check_last(x, len(self.Omega), "x") @ self.matrix.T

    def adjoint(self, y) -> np.ndarray:
        """Aᵀ y for y (..., n_ω) → (..., n_Ω)."""
        return self._check_last(y, len(self.omega), "y") @ self.matrix

    def preconditioner(self, h: float = DEFAULT_H) -> np.ndarray:
        """P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ with Aₛ = A/s, shape (n_Ω, n_ω), float64 (Cholesky solve)."""
        return self._preconditioners(_positive_float(h, "h", "a positive Tikhonov weight"))

    def _preconditioners(self, h: float) -> np.ndarray:
        cache = self.__dict__.setdefault("_p_cache", {})
        if h not in cache:
            a = self.scaled_matrix
            gram = a.T @ a
            gram[np.diag_indices_from(gram)] += h
            p = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram, lower=True), a.T)
            p.setflags(write=False)
            cache[h] = p
        return cache[h]

    def preconditioned_residual(self, y_scaled, x, h: float = DEFAULT_H) -> np.ndarray:
        """P(y/s − Aₛx) for rows y_scaled (..., n_ω), x (..., n_Ω) → (..., n_Ω): the residual mapped back by
        P; x + P(y/s − Aₛx) is one iterated-Tikhonov step (the ∇_t the rRIM is fed)."""
        y = self._check_last(y_scaled, len(self.omega), "y")
        x = self._check_last(x, len(self.Omega), "x")
        try:
            np.broadcast_shapes(y.shape[:-1], x.shape[:-1])
        except ValueError:
            raise ValueError(f"y, x: batch shapes {y.shape[:-1]} and {x.shape[:-1]} do not broadcast") from None
        r = y - x @ self.scaled_matrix.T
        return r @ self.preconditioner(h).T

    @cached_property
    def svd(self) -> SVD:
        """Thin SVD of A/s (float64)."""
        u, s, vt = np.linalg.svd(self.scaled_matrix, full_matrices=False)
        return SVD(u, s, vt)

    def describe(self) -> dict:
        """JSON-friendly definition (kernel, temperature K, grids, scale); see :meth:`from_description`.

        Exact and portable for registered kernels (the kernel by name). Any other kernel is
        described by its own ``describe()`` (``"kernel"`` is then a dict: a :class:`MatrixKernel`'s
        shape and hash, temperature None; an unregistered :class:`FunctionKernel`'s name): it
        identifies the operator but :meth:`from_description` cannot rebuild it.
        """
        registered = KERNELS.get(getattr(self.kernel, "name", None)) is self.kernel
        kernel = self.kernel.name if registered else self.kernel.describe()
        return {
            "kernel": kernel,
            "temperature_K": self.temperature,
            "omega": self.omega.describe(),
            "Omega": self.Omega.describe(),
            "scale_meV": self.scale,
        }

    @classmethod
    def from_description(cls, desc: dict, temperature: float | None = None) -> "ForwardOperator":
        """Rebuild an operator from :meth:`describe` output (optionally at another temperature, K)."""
        missing = [k for k in ("kernel", "temperature_K", "omega", "Omega", "scale_meV") if k not in desc]
        if missing:
            raise ValueError(f"description: operator description lacks {missing}")
        if isinstance(desc["kernel"], dict):
            k = desc["kernel"]
            raise ValueError(f"kernel: the {k.get('kind', 'user')} kernel {k.get('name', '?')!r} is not portable "
                             f"(not registered by name); rebuild the operator with the kernel object itself")
        return cls(omega=Grid.from_description(desc["omega"], name="omega"),
                   Omega=Grid.from_description(desc["Omega"], name="Omega"),
                   temperature=desc["temperature_K"] if temperature is None else temperature,
                   kernel=desc["kernel"], scale=desc["scale_meV"])

    def at_temperature(self, temperature: float) -> "ForwardOperator":
        """The same grids, kernel and scale at another temperature (K); refused for a kernel without temperature."""
        if self.temperature is None:
            raise ValueError(f"temperature: the {self.kernel.name!r} kernel has no temperature; "
                             f"it cannot be evaluated at {temperature!r} K")
        return ForwardOperator(self.omega, self.Omega, temperature, self.kernel, self.scale)


def dot_test(op, rng=None, samples: int = 3, rtol: float = 1e-12) -> bool:
    """The dot test: ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ for ``samples`` random x, y, to within ``rtol`` of
    Σ|A x|·|y| + Σ|x|·|Aᵀ y| (float64 rounding is ~n·1e-16 of that). ``op``: a :class:`ForwardOperator`
    or anything :func:`scipy.sparse.linalg.aslinearoperator` accepts; ``rng``: a seed or Generator.
    True when the adjoint matches the forward operator."""
    from scipy.sparse.linalg import aslinearoperator

    lin, rng = aslinearoperator(op), np.random.default_rng(rng)
    for _ in range(int(samples)):
        x, y = rng.standard_normal(lin.shape[1]), rng.standard_normal(lin.shape[0])
        ax, aty = lin.matvec(x), lin.rmatvec(y)
        if not abs(ax @ y - x @ aty) <= rtol * (np.abs(ax) @ np.abs(y) + np.abs(x) @ np.abs(aty)):
            return False
    return True
