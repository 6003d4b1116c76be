"""Tikhonov regularization (weight by GCV, L-curve, discrepancy principle or fixed), iterated
Tikhonov, and the validation-tuned weight.

In scaled units (y/s, A/s) Tikhonov minimizes ‖A x − y‖² + μ‖x‖²; the weight μ is in the same
units as the rRIM's h. One SVD of A/s (``operator.svd``) serves every spectrum and every
candidate weight: x_μ = V diag(s/(s² + μ)) Uᵀ y.
"""
from __future__ import annotations

import numpy as np

from . import parameter_choice as pc
from .base import Projection, check_choice, check_noise, check_operator, check_positive, check_spectra, unflatten
from ..operator import DEFAULT_H

TIKHONOV_RULES = ("gcv", "lcurve", "discrepancy", "fixed")


class Tikhonov:
    """Tikhonov regularization with the weight chosen per spectrum.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rule : {"gcv", "lcurve", "discrepancy", "fixed"}
        How μ is chosen on a log grid (:func:`rrim.solvers.parameter_choice.weight_grid`):
        safeguarded generalized cross-validation (:func:`~rrim.solvers.parameter_choice.gcv_choice`),
        the L-curve's point of maximum curvature, Morozov's discrepancy principle
        (‖A x − y‖² = τ² n_ω σ², interpolated between grid points), or ``weight`` as given.
    weight : float, optional
        μ > 0 in scaled units; required for, and only used by, rule ``"fixed"``.
    noise : float or array (n,), optional
        Standard deviation of the noise on y in meV, used by rule ``"discrepancy"`` (ignored by
        the others, which need no noise level). If None it is
        estimated per spectrum from the coefficients of y that carry no signal
        (:func:`rrim.solvers.parameter_choice.estimate_noise`).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions.
    weight_ : (n,) or () the μ used per spectrum (scaled units).
    noise_ : (n,) or () noise std in meV used by the discrepancy principle (that rule only).
    """

    def __init__(self, operator, rule: str = "gcv", weight: float | None = None, noise=None):
        self.operator = operator
        self.rule = rule
        self.weight = weight
        self.noise = noise

    def fit(self, y) -> "Tikhonov":
        op = check_operator(self.operator)
        rule = check_choice(self.rule, "rule", TIKHONOV_RULES)
        rows = check_spectra(y, op)
        if rule == "fixed":
            if self.weight is None:
                raise ValueError("weight: rule 'fixed' needs a weight (μ > 0 in scaled units)")
            check_positive(self.weight, "weight")
        elif self.weight is not None:
            raise ValueError(f"weight: only used with rule='fixed', got rule={rule!r}")
        noise = check_noise(self.noise, rows.shape[0])
        proj = Projection.of(op, rows / op.scale)
        s = proj.svd.s
        if rule == "fixed":
            weights = np.full(rows.shape[0], float(self.weight))
        elif rule == "discrepancy":
            noise = pc.estimate_noise(proj) if noise is None else noise / op.scale
            self.noise_ = unflatten(noise * op.scale, np.shape(y))
            weights = pc.discrepancy_weight(proj, pc.weight_grid(s), noise)
        else:
            grid = pc.weight_grid(s)
            if rule == "gcv":
                weights = grid[pc.gcv_choice(proj, pc.tikhonov_filters(s, grid))]
            else:
                weights = grid[np.argmax(pc.lcurve_curvature(proj, grid), axis=1)]
        self.weight_ = unflatten(weights, np.shape(y))
        self.x_ = unflatten(proj.solution(pc.tikhonov_filters(s, weights)), np.shape(y))
        return self


class IteratedTikhonov:
    """Iterated Tikhonov (proximal point on ½‖A x − y‖² in scaled units) from x_0 = 0.

    x_{k+1} = x_k + P (y/s − A/s x_k) with P = ((A/s)ᵀA/s + hI)⁻¹(A/s)ᵀ from the operator: the rRIM
    with its update network replaced by the identity (DESIGN §2). x_1 is plain Tikhonov with
    weight h; in the singular basis x_k = V diag([1 − (h/(s² + h))^k]/s) Uᵀ y/s.

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) the last iterate x_{n_steps}.
    iterates_ : (n_steps, n, n_Ω) or (n_steps, n_Ω) x_1 … x_{n_steps}.
    """

    def __init__(self, operator, n_steps: int = 15, h: float = DEFAULT_H):
        self.operator = operator
        self.n_steps = n_steps
        self.h = h

    def fit(self, y) -> "IteratedTikhonov":
        op = check_operator(self.operator)
        rows = check_spectra(y, op)
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, (int, np.integer)) or self.n_steps < 1:
            raise ValueError(f"n_steps: expected an integer ≥ 1, got {self.n_steps!r}")
        h = check_positive(self.h, "h")
        y_scaled = rows / op.scale
        x = np.zeros((rows.shape[0], op.shape[1]))
        iterates = np.empty((self.n_steps,) + x.shape)
        for k in range(self.n_steps):
            x = x + op.gradient(y_scaled, x, h)
            iterates[k] = x
        self.iterates_ = iterates[:, 0] if np.ndim(y) == 1 else iterates
        self.x_ = unflatten(x, np.shape(y))
        return self


def tune_tikhonov_weight(operator, y_val, x_val, weights=None) -> float:
    """The Tikhonov weight μ (scaled units) minimizing the validation MSE against known glue.

    ``y_val`` (n, n_ω) spectra in meV and ``x_val`` (n, n_Ω) their true glue functions; one μ for
    the whole set, chosen among ``weights`` (default: :func:`~rrim.solvers.parameter_choice.weight_grid`).
    This "tuned Tikhonov" knows the truth: it is the bar a learned solver must beat.
    """
    op = check_operator(operator)
    rows = check_spectra(y_val, op)
    x_true = np.asarray(x_val, dtype=np.float64)
    expected = np.shape(y_val)[:-1] + (op.shape[1],)
    if x_true.shape != expected:
        raise ValueError(f"x_val: expected shape {expected} to match y_val, got {x_true.shape}")
    x_true = x_true.reshape(rows.shape[0], -1)
    if not np.all(np.isfinite(x_true)):
        raise ValueError("x_val: contains NaN or inf")
    proj = Projection.of(op, rows / op.scale)
    grid = pc.weight_grid(proj.svd.s) if weights is None else np.asarray(weights, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid) & (grid > 0)):
        raise ValueError(f"weights: expected a non-empty 1-D array of finite weights > 0, got {weights!r}")
    mse = [np.mean((proj.solution(f) - x_true) ** 2) for f in pc.tikhonov_filters(proj.svd.s, grid)]
    return float(grid[int(np.argmin(mse))])
