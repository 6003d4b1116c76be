"""The impurity (elastic, ω-independent) scattering rate: estimated per spectrum and removed before inversion.

Model: y(ω) = A x + c with c ≥ 0 (meV). A constant is nearly degenerate with glue at low Ω, so
the estimate uses the prior that glue vanishes as Ω → 0: c minimizes, jointly with x,
‖Aₛx + c/s − y/s‖² + h‖D x‖², D = diag(1/(f(Ω) + 10⁻³)), f(Ω) = 1 − exp(−(Ω/Ω_c)²), with c
unpenalized. Eliminating x gives c = s·wᵀ(y/s): one dot product per spectrum, w computed once
per temperature from the shared operator. Clipped at 0. How well c is identified depends on the
temperature and the glue: well at 10–30 K, poorly from ~100 K up (measured by
``benchmarks/impurity_identifiability.py`` in docs/experiments/IMPURITY.md).

The constant term itself, c·:func:`offset_vector` (c in meV, the same at every ω), is shared with
the classical solvers' ``offset=True`` (:mod:`rrim.solvers`), which fit c jointly with x for any
kernel, unpenalized and of either sign (a background), instead of estimating it first.
"""
from __future__ import annotations

import weakref

import numpy as np

from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import low_energy_factor

#: Ω_c (meV) of the low-energy prior and the regularization weight h (scaled units).
IMPURITY_CUTOFF_MEV = 10.0
IMPURITY_H = 1e-3


def offset_vector(n_omega: int) -> np.ndarray:
    """The ω-independent rate of 1 meV on n_ω points, (n_ω,): y = A x + c·offset_vector(n_ω)."""
    return np.ones(int(n_omega))


_WEIGHTS: "weakref.WeakKeyDictionary[ForwardOperator, np.ndarray]" = weakref.WeakKeyDictionary()


def impurity_weights(op: ForwardOperator) -> np.ndarray:
    """w (n_ω,) with c = wᵀ y for spectra y in meV on ``op``'s ω grid (computed once per operator; the
    runtime's operators are cached per model and temperature)."""
    if op not in _WEIGHTS:
        a = op.scaled_matrix
        d = 1.0 / (low_energy_factor(op.Omega, IMPURITY_CUTOFF_MEV) + 1e-3)
        p = np.linalg.solve(a.T @ a + IMPURITY_H * np.diag(d ** 2), a.T)
        one = offset_vector(a.shape[0])
        m1 = one - a @ (p @ one)  # (I − A P)·1
        m1_proj = m1 - p.T @ (a.T @ m1)  # (I − A P)ᵀ(I − A P)·1
        _WEIGHTS[op] = m1_proj / (m1 @ m1)
    return _WEIGHTS[op]


def estimate_impurity(y_meV: np.ndarray, op: ForwardOperator) -> np.ndarray:
    """Impurity scattering rate c ≥ 0 (n,) meV of spectra ``y_meV`` (n, n_ω) on ``op``'s ω grid."""
    return np.maximum(np.asarray(y_meV, dtype=np.float64) @ impurity_weights(op), 0.0)
