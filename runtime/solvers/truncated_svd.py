"""Truncated SVD: x = Σ_{i<k} (uᵢᵀ y / sᵢ) vᵢ in scaled units, rank k by GCV, L-curve, discrepancy or fixed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrim.physics.operator import ForwardOperator
from rrim.solvers import parameter_choice as pc
from rrim.solvers.base import Report, check_choice, check_operator, check_spectra, finish, prepare, unflatten

TSVD_RULES = ("gcv", "lcurve", "discrepancy", "fixed")


def numerical_rank(s: np.ndarray, shape: tuple[int, int]) -> int:
    """Number of singular values above the float64 noise of the SVD, s_max·max(m, n)·ε."""
    return int(np.sum(s > s[0] * max(shape) * np.finfo(np.float64).eps))


@dataclass(eq=False)
class TruncatedSVD:
    """Truncated singular value decomposition of A/s, the rank chosen per spectrum.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rank : int, optional
        The rank k for rule ``"fixed"`` (required there, refused by the other rules).
    rule : {"gcv", "lcurve", "discrepancy", "fixed"}
        Safeguarded GCV over k = 1 … numerical rank (:func:`~rrim.solvers.parameter_choice.gcv_choice`),
        the rank at the Tikhonov L-curve's corner μ (the number of singular values with s² > μ, where
        Tikhonov's filter factors pass ½), the smallest k with ‖A x_k − y‖² ≤ τ² m σ² (discrepancy
        principle, τ² as for :class:`Tikhonov`), or ``rank``.
        Choices at k = 1 or at the numerical rank, or with a residual far below the noise, are
        flagged and replaced as for :class:`Tikhonov`.
    noise, errors, offset
        As for :class:`Tikhonov`.

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions.
    rank_ : (n,) or () the rank used per spectrum.
    noise_, offset_, at_edge_, warnings_ : as for :class:`Tikhonov`.
    """

    operator: ForwardOperator
    rank: int | None = None
    rule: str = "gcv"
    noise: float | np.ndarray | None = None
    errors: np.ndarray | None = None
    offset: bool = False

    def fit(self, y) -> "TruncatedSVD":
        op = check_operator(self.operator)
        rule = check_choice(self.rule, "rule", TSVD_RULES)
        rows = check_spectra(y, op)
        system, proj, noise = prepare(self, op, rows, need_noise=rule == "discrepancy")
        s = proj.svd.s
        report = Report(rows.shape[0])
        if rule == "fixed":
            if self.rank is None:
                raise ValueError("rank: rule 'fixed' needs a rank")
            if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)) or not 1 <= self.rank <= s.size:
                raise ValueError(f"rank: expected an integer in 1…{s.size}, got {self.rank!r}")
            ranks = np.full(rows.shape[0], int(self.rank))
        else:
            if self.rank is not None:
                raise ValueError(f"rank: only used with rule='fixed', got rule={rule!r}")
            candidates = np.arange(1, numerical_rank(s, system.matrix.shape) + 1)  # increasing rank
            filters = (np.arange(s.size)[None, :] < candidates[:, None]).astype(np.float64)

            def edge_of(k):
                return k, (k == candidates[0]) | (k == candidates[-1])

            def by_discrepancy():
                fits = proj.residual2(filters) <= pc.discrepancy_target(proj, noise)[:, None]
                return np.where(fits.any(axis=1), candidates[np.argmax(fits, axis=1)], candidates[-1]), \
                    (~fits.any(axis=1)) | fits[:, 0]

            def by_corner():
                grid = pc.weight_grid(s)
                idx, edge = pc.lcurve_corner(proj, grid)
                k = np.sum(s[None, :] ** 2 > grid[idx][:, None], axis=1)
                return np.clip(k, candidates[0], candidates[-1]), edge

            # gcv_choice wants increasing regularization: decreasing rank
            choosers = {"gcv": lambda: edge_of(candidates[::-1][pc.gcv_choice(proj, filters[::-1])]),
                        "lcurve": by_corner}
            if noise is not None:
                choosers["discrepancy"] = by_discrepancy
            ranks = pc.choose_honestly(rule, choosers, lambda k: proj.residual2_rows(_filters(k, s.size)),
                                       noise, proj.n_data, report,
                                       weaker={"discrepancy": lambda k, ref: k > 2 * ref + 2,
                                               "lcurve": lambda k, ref: s[k - 1] ** 2 * pc.CORNER_FACTOR < s[ref - 1] ** 2})
        x = proj.solution(_filters(ranks, s.size))
        shape = np.shape(y)
        self.rank_ = unflatten(ranks, shape)
        self.x_ = unflatten(x, shape)
        finish(self, system, rows, x, noise, shape)
        report.publish(self, shape, f"TruncatedSVD(rule={rule!r})")
        return self


def _filters(ranks: np.ndarray, r: int) -> np.ndarray:
    """0/1 filter factors (n, r) keeping the first ``ranks`` (n,) singular values."""
    return (np.arange(r)[None, :] < np.asarray(ranks)[:, None]).astype(np.float64)
