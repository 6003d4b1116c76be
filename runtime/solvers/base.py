"""What every classical solver shares: input checks, scaled units and the singular-basis projection.

Solvers follow scikit-learn: settings are stored untouched in ``__init__``, checked in ``fit``,
fitted values end in ``_``. Spectra are rows: ``fit(y)`` takes scattering rates y in meV, shape
(n, n_ω) or (n_ω,), and sets ``x_`` with the same leading shape on the Ω grid, shape (n, n_Ω) or
(n_Ω,). Per-spectrum results (weights, noise, …) have the leading shape of y: (n,) or ().
Internally everything is in the scaled units y/s and A/s of :class:`rrim.ForwardOperator`, or,
with per-point ``errors``, in whitened units (see :class:`System`).

Every solver accepts ``errors`` (per-point standard deviations (n_ω,) in meV, or a covariance
matrix (n_ω, n_ω) in meV²) and ``offset`` (fit a constant c in meV jointly: y = A x + c, the
ω-independent rate of :mod:`rrim.physics.impurity`, here unconstrained in sign and unpenalized).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from rrim.physics.impurity import offset_vector
from rrim.physics.operator import SVD, ForwardOperator

logger = logging.getLogger("rrim.solvers")


def check_operator(operator) -> ForwardOperator:
    """``operator`` if it is a :class:`rrim.ForwardOperator`; ``TypeError`` naming it otherwise."""
    if not isinstance(operator, ForwardOperator):
        raise TypeError(f"operator: expected an rrim.ForwardOperator, got {type(operator).__name__}")
    return operator


def check_spectra(y, operator: ForwardOperator) -> np.ndarray:
    """y (n_ω,) or (n, n_ω) in meV → float64 (n, n_ω); ``ValueError`` naming ``y`` if unusable."""
    arr = np.asarray(y, dtype=np.float64) if not isinstance(y, str) else None
    n_omega = operator.shape[0]
    if arr is None or arr.ndim not in (1, 2):
        shape = None if arr is None else arr.shape
        raise ValueError(f"y: expected scattering rates of shape (n_omega,) or (n, n_omega), got shape {shape}")
    if arr.shape[-1] != n_omega:
        raise ValueError(f"y: last axis must match the operator's omega grid ({n_omega} points), got shape {arr.shape}")
    rows = arr.reshape(-1, n_omega)
    if rows.shape[0] == 0:
        raise ValueError("y: no spectra (shape (0, n_omega))")
    bad = np.flatnonzero(~np.all(np.isfinite(rows), axis=1))
    if bad.size:
        raise ValueError(f"y: NaN or inf in spectra {bad[:10].tolist()}{' …' if bad.size > 10 else ''}")
    return rows


def check_choice(value, name: str, choices) -> str:
    """``value`` if it is one of ``choices``; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (≥ 0 with ``allow_zero``); ``ValueError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a finite number {'≥' if allow_zero else '>'} 0, got {value!r}")
    return v


def check_noise(noise, n: int) -> np.ndarray | None:
    """Noise std of y in meV, scalar or per spectrum, → (n,) float64 > 0, or None."""
    if noise is None:
        return None
    arr = np.asarray(noise, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(f"noise: expected a scalar or one value per spectrum ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"noise: standard deviations must be finite and > 0 meV, got {noise!r}")
    return np.broadcast_to(arr, (n,)).copy()


def check_errors(errors, n_omega: int) -> np.ndarray | None:
    """Per-point errors → None, σ (n_ω,) meV > 0, or a covariance (n_ω, n_ω) meV², symmetric positive definite."""
    if errors is None:
        return None
    arr = np.asarray(errors, dtype=np.float64) if not isinstance(errors, str) else np.array(np.nan)
    if arr.shape not in ((n_omega,), (n_omega, n_omega)):
        raise ValueError(f"errors: expected per-point standard deviations ({n_omega},) in meV or a covariance "
                         f"({n_omega}, {n_omega}) in meV², got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("errors: contains NaN or inf")
    if arr.ndim == 1:
        if np.any(arr <= 0):
            raise ValueError(f"errors: standard deviations must be > 0 meV, got {arr[arr <= 0][:5].tolist()}")
        return arr
    if not np.allclose(arr, arr.T, rtol=1e-10, atol=0.0):
        raise ValueError("errors: a covariance matrix must be symmetric")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError("errors: the covariance matrix is not positive definite") from None
    return arr


def check_flag(value, name: str) -> bool:
    """``value`` if it is a bool; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class System:
    """The least-squares system B x ≈ z a solver fits, for spectra y (n, n_ω) in meV.

    Without errors and offset, B = A/s and z = y/s (scaled units, the operator's own SVD). With
    ``errors`` the rows are whitened: z = L⁻¹y, B = L⁻¹A for the covariance C = L Lᵀ (L = diag σ
    for per-point errors), so the noise on z is white with std 1 when the errors are right. With
    ``offset`` the constant c (meV) is eliminated exactly (variable projection): with w = G·1 the
    image of a 1-meV constant, z and B are rotated onto the m − 1 directions orthogonal to w, and
    c = wᵀ(G y − G A x)/wᵀw. ``G`` (m, n_ω) maps y to the unrotated z.
    """

    operator: ForwardOperator
    matrix: np.ndarray          # B (m', n_Ω)
    svd: SVD                    # of B
    whitened: bool              # True when z is in units of the stated errors
    G: np.ndarray | None = None  # (m, n_ω) y (meV) → unrotated z; None: y/s
    basis: np.ndarray | None = None  # (m, m − 1) orthonormal basis ⟂ w (offset only)
    w: np.ndarray | None = None  # (m,) image of a 1-meV constant (offset only)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, operator: ForwardOperator, errors=None, offset: bool = False) -> "System":
        op = check_operator(operator)
        errors = check_errors(errors, op.shape[0])
        offset = check_flag(offset, "offset")
        if errors is None and not offset:
            return cls(op, op.scaled_matrix, op.svd, False)
        if errors is None:
            G = np.eye(op.shape[0]) / op.scale
        elif errors.ndim == 1:
            G = np.diag(1.0 / errors)
        else:
            L = np.linalg.cholesky(errors)
            G = scipy.linalg.solve_triangular(L, np.eye(op.shape[0]), lower=True)
        basis = w = None
        b = G @ op.matrix
        if offset:
            w = G @ offset_vector(op.shape[0])
            basis = np.linalg.qr(w[:, None], mode="complete")[0][:, 1:]
            b = basis.T @ b
        u, sv, vt = np.linalg.svd(b, full_matrices=False)
        return cls(op, b, SVD(u, sv, vt), errors is not None, G, basis, w)

    @property
    def n_data(self) -> int:
        """m': data points minus fitted offsets."""
        return self.matrix.shape[0]

    def z(self, rows: np.ndarray) -> np.ndarray:
        """The system's data (n, m') for spectra rows (n, n_ω) in meV."""
        if self.G is None:
            return rows / self.operator.scale
        z = rows @ self.G.T
        return z if self.basis is None else z @ self.basis

    def noise(self, noise_meV: np.ndarray | None, n: int) -> np.ndarray | None:
        """Noise std (n,) on z: 1 when whitened, σ/s otherwise (None when unknown)."""
        if self.whitened:
            return np.ones(n)
        return None if noise_meV is None else noise_meV / self.operator.scale

    def noise_meV(self, noise: np.ndarray) -> np.ndarray:
        """Noise std on z (n,) back in meV; with errors it stays a factor on the errors."""
        return noise if self.whitened else noise * self.operator.scale

    def offsets(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        """The fitted constant c (n,) in meV for spectra rows (n, n_ω) and glue x (n, n_Ω); None without offset."""
        if self.w is None:
            return None
        r = (rows - x @ self.operator.matrix.T) @ self.G.T
        return r @ self.w / (self.w @ self.w)

    def preconditioner(self, h: float) -> np.ndarray:
        """(BᵀB + hI)⁻¹Bᵀ, shape (n_Ω, m')."""
        if h not in self._cache:
            b = self.matrix
            gram = b.T @ b
            gram[np.diag_indices_from(gram)] += h
            self._cache[h] = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram, lower=True), b.T)
        return self._cache[h]


def prepare(estimator, op: ForwardOperator, rows: np.ndarray, need_noise: bool):
    """(System, Projection, noise std on z (n,) or None) for an estimator's ``noise``/``errors``/``offset``.

    The noise is the stated one (``noise`` in meV, or 1 in whitened units with ``errors``), else
    estimated (:func:`~rrim.solvers.parameter_choice.estimate_noise`): when ``need_noise`` a failed
    estimate raises its ``ValueError``, otherwise the noise is None (unknown).
    """
    from rrim.solvers import parameter_choice as pc

    system = System.of(op, getattr(estimator, "errors", None), getattr(estimator, "offset", False))
    given = check_noise(estimator.noise, rows.shape[0])
    if given is not None and system.whitened:
        raise ValueError("noise: give either noise= (one std per spectrum, meV) or errors= (per point), not both")
    proj = Projection.of(system, system.z(rows))
    noise = system.noise(given, rows.shape[0])
    if noise is None:
        if need_noise:
            noise = pc.estimate_noise(proj)
        else:
            noise = pc.try_estimate_noise(proj)
            if noise is not None:  # a rounding-level floor is no noise level: unknown (NaN) there
                noise = np.where(noise < pc.NOISELESS * np.abs(proj.y).max(axis=1), np.nan, noise)
    return system, proj, noise


def finish(estimator, system: System, rows: np.ndarray, x: np.ndarray, noise, y_shape: tuple) -> None:
    """Set ``noise_`` (meV, NaN when unknown; a factor on the errors when whitened) and, with an offset, ``offset_`` (meV)."""
    n = rows.shape[0]
    estimator.noise_ = unflatten(np.full(n, np.nan) if noise is None else system.noise_meV(noise), y_shape)
    c = system.offsets(rows, x)
    if c is not None:
        estimator.offset_ = unflatten(c, y_shape)


class Report:
    """Per-spectrum notes of a weight choice: ``at_edge`` (n,) bool and ``messages`` (n lists of str)."""

    def __init__(self, n: int):
        self.at_edge = np.zeros(n, dtype=bool)
        self.messages: list[list[str]] = [[] for _ in range(n)]

    def add(self, rows, text: str) -> None:
        for i in np.flatnonzero(rows):
            self.messages[i].append(text)

    def publish(self, estimator, y_shape: tuple, what: str, edges: bool = True) -> None:
        """Set ``warnings_`` (and, with ``edges``, ``at_edge_``) on ``estimator``; log one warning
        summarizing the flagged spectra."""
        if edges:
            estimator.at_edge_ = unflatten(self.at_edge, y_shape)
        msgs = [tuple(m) for m in self.messages]
        estimator.warnings_ = msgs[0] if len(y_shape) == 1 else msgs
        flagged = [i for i, m in enumerate(msgs) if m]
        if flagged:
            first = msgs[flagged[0]]
            logger.warning("%s: %d of %d spectra flagged (first, spectrum %d: %s)", what, len(flagged), len(msgs),
                           flagged[0], "; ".join(first))


def unflatten(values: np.ndarray, y_shape: tuple) -> np.ndarray:
    """Rows (n, ...) back to the leading shape of y: drops the spectrum axis for a single spectrum."""
    return values[0] if len(y_shape) == 1 else values


@dataclass(frozen=True)
class Projection:
    """Scaled spectra y/s (n, n_ω) in the singular basis of A/s = U diag(s) Vᵀ.

    ``y`` (n, n_ω) the scaled spectra; ``beta`` = (y/s) U, shape (n, r); ``perp2`` = ‖y/s − U Uᵀ y/s‖², shape (n,), the part no x can
    fit (zero for square full-rank A). Filter factors φ (…, r) give x = V diag(φ/s) β and the
    residual ‖A x − y‖² = Σ (1 − φ)² β² + perp2, all in scaled units.
    """

    svd: SVD
    y: np.ndarray
    beta: np.ndarray
    perp2: np.ndarray

    @classmethod
    def of(cls, operator, y_scaled: np.ndarray) -> "Projection":
        """``operator``: a ForwardOperator (y_scaled = y/s) or a :class:`System` (y_scaled = its z)."""
        svd = operator.svd
        beta = y_scaled @ svd.U
        if svd.U.shape[1] < svd.U.shape[0]:  # more data points than unknowns
            perp = y_scaled - beta @ svd.U.T
            perp2 = np.einsum("ij,ij->i", perp, perp)
        else:
            perp2 = np.zeros(y_scaled.shape[0])
        return cls(svd, y_scaled, beta, perp2)

    @property
    def n_data(self) -> int:
        return self.y.shape[1]

    def solution(self, filt: np.ndarray) -> np.ndarray:
        """x (n, n_Ω) for filter factors ``filt`` of shape (r,) or (n, r); zero singular values are skipped."""
        s = self.svd.s
        inv_s = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
        return (filt * self.beta * inv_s) @ self.svd.Vt

    def residual2_rows(self, filt: np.ndarray) -> np.ndarray:
        """‖A x − y‖² (n,) (scaled) for one filter per spectrum, ``filt`` (n, r)."""
        return np.einsum("ij,ij->i", self.beta ** 2, (1.0 - filt) ** 2) + self.perp2

    def residual2(self, filters: np.ndarray) -> np.ndarray:
        """‖A x − y‖² (scaled) for every spectrum and each of K filters (K, r) → (n, K)."""
        return self.beta ** 2 @ ((1.0 - filters) ** 2).T + self.perp2[:, None]
