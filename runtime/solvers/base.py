"""What every classical solver shares: input checks, scaled units and the singular-basis projection.

Solvers follow scikit-learn: settings are stored untouched in ``__init__``, checked in ``fit``,
fitted values end in ``_``. Spectra are rows: ``fit(y)`` takes scattering rates y in meV, shape
(n, n_ω) or (n_ω,), and sets ``x_`` with the same leading shape on the Ω grid, shape (n, n_Ω) or
(n_Ω,). Per-spectrum results (weights, noise, …) have the leading shape of y: (n,) or ().
Internally everything is in the scaled units y/s and A/s of :class:`rrim.ForwardOperator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..operator import SVD, ForwardOperator


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
    def of(cls, operator: ForwardOperator, y_scaled: np.ndarray) -> "Projection":
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

    def residual2(self, filters: np.ndarray) -> np.ndarray:
        """‖A x − y‖² (scaled) for every spectrum and each of K filters (K, r) → (n, K)."""
        return self.beta ** 2 @ ((1.0 - filters) ** 2).T + self.perp2[:, None]
