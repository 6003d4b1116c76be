"""Truncated SVD: x = Σ_{i<k} (uᵢᵀ y / sᵢ) vᵢ in scaled units, rank k by GCV, discrepancy or fixed."""
from __future__ import annotations

import numpy as np

from . import parameter_choice as pc
from .base import Projection, check_choice, check_noise, check_operator, check_spectra, unflatten

TSVD_RULES = ("gcv", "discrepancy", "fixed")


def numerical_rank(s: np.ndarray, shape: tuple[int, int]) -> int:
    """Number of singular values above the float64 noise of the SVD, s_max·max(m, n)·ε."""
    return int(np.sum(s > s[0] * max(shape) * np.finfo(np.float64).eps))


class TruncatedSVD:
    """Truncated singular value decomposition of A/s, the rank chosen per spectrum.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rank : int, optional
        The rank k for rule ``"fixed"`` (required there, refused by the other rules).
    rule : {"gcv", "discrepancy", "fixed"}
        Safeguarded GCV over k = 1 … numerical rank (:func:`~rrim.solvers.parameter_choice.gcv_choice`),
        the smallest k with ‖A x_k − y‖² ≤ τ² n_ω σ² (discrepancy principle), or ``rank``.
    noise : float or array (n,), optional
        Noise std of y in meV for rule ``"discrepancy"`` (estimated when None, as for :class:`Tikhonov`).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions.
    rank_ : (n,) or () the rank used per spectrum.
    noise_ : (n,) or () noise std in meV (rule ``"discrepancy"`` only).
    """

    def __init__(self, operator, rank: int | None = None, rule: str = "gcv", noise=None):
        self.operator = operator
        self.rank = rank
        self.rule = rule
        self.noise = noise

    def fit(self, y) -> "TruncatedSVD":
        op = check_operator(self.operator)
        rule = check_choice(self.rule, "rule", TSVD_RULES)
        rows = check_spectra(y, op)
        noise = check_noise(self.noise, rows.shape[0])
        proj = Projection.of(op, rows / op.scale)
        s = proj.svd.s
        if rule == "fixed":
            if self.rank is None:
                raise ValueError("rank: rule 'fixed' needs a rank")
            if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)) or not 1 <= self.rank <= s.size:
                raise ValueError(f"rank: expected an integer in 1…{s.size}, got {self.rank!r}")
            ranks = np.full(rows.shape[0], int(self.rank))
        else:
            if self.rank is not None:
                raise ValueError(f"rank: only used with rule='fixed', got rule={rule!r}")
            candidates = np.arange(1, numerical_rank(s, op.shape) + 1)  # increasing rank
            filters = (np.arange(s.size)[None, :] < candidates[:, None]).astype(np.float64)
            if rule == "gcv":  # gcv_choice wants increasing regularization: decreasing rank
                ranks = candidates[::-1][pc.gcv_choice(proj, filters[::-1])]
            else:
                noise = pc.estimate_noise(proj) if noise is None else noise / op.scale
                self.noise_ = unflatten(noise * op.scale, np.shape(y))
                fits = proj.residual2(filters) <= pc.discrepancy_target(proj, noise)[:, None]
                ranks = np.where(fits.any(axis=1), candidates[np.argmax(fits, axis=1)], candidates[-1])
        self.rank_ = unflatten(ranks, np.shape(y))
        self.x_ = unflatten(proj.solution(np.arange(s.size)[None, :] < ranks[:, None]), np.shape(y))
        return self
