"""A Gaussian prior of the glue learned from training glue functions, and the estimate it gives: the
start x₀ of a model whose ``x0`` is ``"prior"``.

With the training glue's mean μ (n_Ω,) and covariance C = L Lᵀ (L (n_Ω, k): eigenvectors times the
square roots of the eigenvalues above :data:`EIGEN_FLOOR` of the largest), the estimate for scaled
spectra y measured on a mask is

    x₀ = μ + L V diag(S/(S² + h)) Uᵀ (y − Aₛ μ),

U diag(S) Vt the singular basis of the measured rows of Aₛ L (:func:`rrim.inversion.regularization.masked_svd`),
h chosen per spectrum by safeguarded GCV in that basis (:func:`rrim.inversion.regularization.choose_weights`):
Tikhonov in the coordinates where the prior is white (the Wiener estimate when h is the noise variance).
It is a learned linear estimator for every noise level at once: fitted on the experiments' N = 1000
training glue it errs 0.74× ridge y → x (trained at each σ) at σ = 0, about as much at 1e-5 … 1e-3, and
1.14, 1.39× at 1e-2, 0.1 (GCV's h is too small there); after the rRIM's data-consistency steps it beats
ridge at every σ (docs/experiments/RESULTS.md, rows "Gaussian prior").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rrim.inversion.regularization import MaskedBases, choose_weights, tikhonov_step
from rrim.models.modelfile import decode_array, encode_array

#: Covariance eigenvalues kept, relative to the largest (the rest are sampling noise and rounding).
EIGEN_FLOOR = 1e-10
#: whitened bases kept per prior (≈ 0.5 MB each on the default grids)
BASES = 64


@dataclass(frozen=True, eq=False)
class GaussianPrior:
    """Mean μ (n_Ω,) and covariance factor L (n_Ω, k) of glue functions (dimensionless), with a cache of
    the whitened problem's singular bases per temperature and mask (:attr:`bases`, at most :data:`BASES`)."""

    mean: np.ndarray
    factor: np.ndarray
    bases: MaskedBases = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "bases", MaskedBases(BASES, factor=self.factor))

    @classmethod
    def fit(cls, x: np.ndarray) -> "GaussianPrior":
        """From glue functions x (n, n_Ω), n ≥ 2: their mean and covariance."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"prior: expected at least 2 glue functions (n, n_Ω), got shape {x.shape}")
        lam, q = np.linalg.eigh(np.cov(x.T))
        keep = lam > EIGEN_FLOOR * lam[-1]
        return cls(x.mean(axis=0), q[:, keep] * np.sqrt(lam[keep]))

    def estimate(self, operator, y_scaled: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """x₀ (n, n_Ω) float64 for scaled spectra (n, n_ω) measured on ``mask`` (n_ω,) (other entries
        ignored) with ``operator``'s A/s."""
        m = np.asarray(mask, bool)
        r = (np.asarray(y_scaled, dtype=np.float64) - operator.scaled_matrix @ self.mean) * m
        svd = self.bases.basis(operator, m)
        return self.mean + tikhonov_step(r, svd, choose_weights(r, svd, m, clip=False)) @ self.factor.T

    def describe(self) -> dict:
        """JSON-able form (the model file's ``prior`` metadata), read back by :meth:`from_description`."""
        return {"shape": list(self.factor.shape), "mean": encode_array(self.mean), "factor": encode_array(self.factor)}

    @classmethod
    def from_description(cls, d: dict) -> "GaussianPrior":
        n, k = (int(v) for v in d["shape"])
        return cls(decode_array(d["mean"], (n,)), decode_array(d["factor"], (n, k)))

    @classmethod
    def of_model(cls, info) -> "GaussianPrior | None":
        """The prior of a model's :class:`~rrim.models.modelfile.ModelInfo` (None without one)."""
        return cls.from_description(info.prior) if info.prior else None
