"""The learned linear estimator: ridge regression from spectra to glue, x̂ = max(0, x̄ + (y − ȳ)/σ_y · W).

The must-beat row for any learned method: it sees the same training pairs, costs one SVD, and its
weight λ is chosen on the validation pairs (the grid value with the lowest validation MSE). Inputs
are standardized per ω point (mean and standard deviation of the training spectra); outputs centred
on the training mean; negative outputs clamped at 0 at prediction, as for every baseline.
Spectra y (n, n_ω) in meV, glue x (n, n_Ω).
"""
from __future__ import annotations

import numpy as np

#: λ candidates, relative to the largest squared singular value of the standardized training spectra.
RELATIVE_WEIGHTS = np.logspace(-14, 0, 57)


class Ridge:
    """Ridge regression y → x with the weight chosen on validation data (scikit-learn style)."""

    def __init__(self, weights=RELATIVE_WEIGHTS):
        self.weights = weights

    def fit(self, y_train, x_train, y_val, x_val) -> "Ridge":
        y, x = np.asarray(y_train, dtype=np.float64), np.asarray(x_train, dtype=np.float64)
        if y.ndim != 2 or x.ndim != 2 or len(y) != len(x) or len(y) < 2:
            raise ValueError(f"y_train, x_train: expected (n, n_ω) and (n, n_Ω) with n ≥ 2, got {y.shape}, {x.shape}")
        self.y_mean_, self.x_mean_ = y.mean(0), x.mean(0)
        std = y.std(0)
        self.y_std_ = np.where(std > 0, std, 1.0)
        u, s, vt = np.linalg.svd((y - self.y_mean_) / self.y_std_, full_matrices=False)
        proj = u.T @ (x - self.x_mean_)  # (r, n_Ω)
        z_val = (np.asarray(y_val, dtype=np.float64) - self.y_mean_) / self.y_std_ @ vt.T  # (n_val, r)
        best = None
        for w in np.asarray(self.weights, dtype=np.float64) * s[0] ** 2:
            coef = (s / (s ** 2 + w))[:, None] * proj
            err = np.mean((np.maximum(self.x_mean_ + z_val @ coef, 0.0) - x_val) ** 2)
            if best is None or err < best[0]:
                best = (err, w, coef)
        self.val_mse_, self.weight_, coef = best
        self.coef_ = vt.T @ coef  # (n_ω, n_Ω)
        return self

    def predict(self, y) -> np.ndarray:
        """Glue (n, n_Ω) for spectra (n, n_ω) in meV."""
        z = (np.asarray(y, dtype=np.float64) - self.y_mean_) / self.y_std_
        return np.maximum(self.x_mean_ + z @ self.coef_, 0.0)
