"""Tikhonov regularization (weight by GCV, L-curve, discrepancy principle or fixed), iterated
Tikhonov, and the validation-tuned weight.

In scaled units (y/s, A/s) Tikhonov minimizes ‖A x − y‖² + μ‖x‖²; the weight μ is in the same
units as the rRIM's h. One SVD of A/s (``operator.svd``) serves every spectrum and every
candidate weight: x_μ = V diag(s/(s² + μ)) Uᵀ y.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrim.physics.operator import DEFAULT_H, ForwardOperator
from rrim.solvers import parameter_choice as pc
from rrim.solvers.base import (Projection, Report, System, check_choice, check_operator, check_positive, check_spectra,
                               finish, prepare, unflatten)

TIKHONOV_RULES = ("gcv", "lcurve", "discrepancy", "fixed")


@dataclass(eq=False)
class Tikhonov:
    """Tikhonov regularization with the weight chosen per spectrum.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rule : {"gcv", "lcurve", "discrepancy", "fixed"}
        How μ is chosen on a log grid (:func:`rrim.solvers.parameter_choice.weight_grid`):
        safeguarded generalized cross-validation (:func:`~rrim.solvers.parameter_choice.gcv_choice`),
        the L-curve's corner (:func:`~rrim.solvers.parameter_choice.lcurve_corner`), Morozov's
        discrepancy principle (‖A x − y‖² = τ² m σ², τ² above any likely noise energy of m data:
        :func:`~rrim.solvers.parameter_choice.discrepancy_tau2`; interpolated between grid points),
        or ``weight`` as given. A choice at an edge of the grid or with a residual far below the noise
        is flagged and replaced (:func:`~rrim.solvers.parameter_choice.choose_honestly`).
    weight : float, optional
        μ > 0 (scaled units; whitened units with ``errors``); required for, and only used by, rule ``"fixed"``.
    noise : float or array (n,), optional
        Standard deviation of the noise on y in meV, used by rule ``"discrepancy"`` and by the
        plausibility check of the residual. If None it is estimated per spectrum from the
        coefficients of y that carry no signal (:func:`rrim.solvers.parameter_choice.estimate_noise`).
    errors : array (n_ω,) or (n_ω, n_ω), optional
        Per-point standard deviations of y in meV, or their covariance in meV²: the problem is
        whitened (:class:`rrim.solvers.base.System`) and the noise is the errors (``noise`` must be None).
    offset : bool
        Fit a constant c (meV) jointly, y = A x + c (unpenalized): ``offset_``.

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions.
    weight_ : (n,) or () the μ used per spectrum.
    noise_ : (n,) or () noise std in meV used (estimated or given; with ``errors``: 1, a factor on them);
        NaN where it could not be estimated.
    offset_ : (n,) or () the constant c in meV (``offset=True`` only).
    at_edge_ : (n,) or () bool, the rule's own choice sat at an edge of its search range.
    warnings_ : tuple of str per spectrum (a list of them for several spectra): flags and fallbacks.
    """

    operator: ForwardOperator
    rule: str = "gcv"
    weight: float | None = None
    noise: float | np.ndarray | None = None
    errors: np.ndarray | None = None
    offset: bool = False

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
        system, proj, noise = prepare(self, op, rows, need_noise=rule == "discrepancy")
        s = proj.svd.s
        report = Report(rows.shape[0])
        if rule == "fixed":
            weights = np.full(rows.shape[0], float(self.weight))
        else:
            grid = pc.weight_grid(s)
            filters = pc.tikhonov_filters(s, grid)

            def edge_of(idx):
                return grid[idx], (idx == 0) | (idx == grid.size - 1)

            def corner():
                idx, edge = pc.lcurve_corner(proj, grid)
                return grid[idx], edge

            choosers = {"gcv": lambda: edge_of(pc.gcv_choice(proj, filters)), "lcurve": corner}
            if noise is not None:
                choosers["discrepancy"] = lambda: pc.discrepancy_choice(proj, grid, noise)
            weights = pc.choose_honestly(rule, choosers, lambda w: proj.residual2_rows(pc.tikhonov_filters(s, w)),
                                         noise, proj.n_data, report,
                                         weaker={"discrepancy": lambda w, ref: w * pc.WEAKER_FACTOR < ref,
                                                 "lcurve": lambda w, ref: w * pc.CORNER_FACTOR < ref})
        x = proj.solution(pc.tikhonov_filters(s, weights))
        shape = np.shape(y)
        self.weight_ = unflatten(weights, shape)
        self.x_ = unflatten(x, shape)
        finish(self, system, rows, x, noise, shape)
        report.publish(self, shape, f"Tikhonov(rule={rule!r})")
        return self


@dataclass(eq=False)
class IteratedTikhonov:
    """Iterated Tikhonov (proximal point on ½‖A x − y‖² in scaled units) from x_0 = 0.

    x_{k+1} = x_k + P (y/s − A/s x_k) with P = ((A/s)ᵀA/s + hI)⁻¹(A/s)ᵀ from the operator: the rRIM
    with its update network replaced by the identity. x_1 is plain Tikhonov with weight h; in the
    singular basis x_k = V diag([1 − (h/(s² + h))^k]/s) Uᵀ y/s. With ``errors`` or ``offset``
    the same iteration runs on the whitened / offset-eliminated system (:class:`rrim.solvers.base.System`).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) the last iterate x_{n_steps}.
    iterates_ : (n_steps, n, n_Ω) or (n_steps, n_Ω) x_1 … x_{n_steps}.
    offset_ : (n,) or () c in meV for the last iterate (``offset=True`` only).
    """

    operator: ForwardOperator
    n_steps: int = 15
    h: float = DEFAULT_H
    errors: np.ndarray | None = None
    offset: bool = False

    def fit(self, y) -> "IteratedTikhonov":
        op = check_operator(self.operator)
        rows = check_spectra(y, op)
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, (int, np.integer)) or self.n_steps < 1:
            raise ValueError(f"n_steps: expected an integer ≥ 1, got {self.n_steps!r}")
        h = check_positive(self.h, "h")
        system = System.of(op, self.errors, self.offset)
        z = system.z(rows)
        plain = system.G is None
        x = np.zeros((rows.shape[0], op.shape[1]))
        iterates = np.empty((self.n_steps,) + x.shape)
        for k in range(self.n_steps):
            if plain:
                x = x + op.preconditioned_residual(z, x, h)
            else:
                x = x + (z - x @ system.matrix.T) @ system.preconditioner(h).T
            iterates[k] = x
        self.iterates_ = iterates[:, 0] if np.ndim(y) == 1 else iterates
        self.x_ = unflatten(x, np.shape(y))
        c = system.offsets(rows, x)
        if c is not None:
            self.offset_ = unflatten(c, np.shape(y))
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
