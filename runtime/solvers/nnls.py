"""Non-negative least squares, plain or Tikhonov-augmented, in scaled units."""
from __future__ import annotations

import numpy as np
import scipy.optimize

from .base import check_operator, check_positive, check_spectra, unflatten


class NNLS:
    """min ‖A/s x − y/s‖² + μ‖x‖² subject to x ≥ 0 (Lawson–Hanson, :func:`scipy.optimize.nnls`).

    The weight μ ≥ 0 (scaled units, like h) augments the system to [A/s; √μ I] x = [y/s; 0];
    μ = 0 is plain NNLS. Spectra are solved one at a time (the active set differs per spectrum).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions, ≥ 0.
    residual_ : (n,) or () ‖A x − y‖ in meV.
    """

    def __init__(self, operator, weight: float = 0.0):
        self.operator = operator
        self.weight = weight

    def fit(self, y) -> "NNLS":
        op = check_operator(self.operator)
        rows = check_spectra(y, op)
        weight = check_positive(self.weight, "weight", allow_zero=True)
        a = op.scaled_matrix
        n_Omega = op.shape[1]
        if weight > 0:
            a = np.vstack([a, np.sqrt(weight) * np.eye(n_Omega)])
        rhs = np.zeros(a.shape[0])
        x = np.empty((rows.shape[0], n_Omega))
        for i, row in enumerate(rows / op.scale):
            rhs[: row.size] = row
            x[i] = scipy.optimize.nnls(a, rhs, maxiter=50 * n_Omega)[0]
        self.x_ = unflatten(x, np.shape(y))
        self.residual_ = unflatten(np.linalg.norm(op.forward(x) - rows, axis=1), np.shape(y))
        return self
