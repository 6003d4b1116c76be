"""Non-negative least squares, plain or Tikhonov-augmented, in scaled (or whitened) units."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize

from rrim.physics.operator import ForwardOperator
from rrim.solvers.base import Report, System, check_operator, check_positive, check_spectra, unflatten

#: Lawson–Hanson iterations allowed per unknown (scipy's default is 3 per unknown, too few for
#: ill-conditioned kernels); past the cap the bounded solver :func:`scipy.optimize.lsq_linear` finishes.
ITERATIONS_PER_UNKNOWN = 50


@dataclass(eq=False)
class NNLS:
    """min ‖A/s x − y/s‖² + μ‖x‖² subject to x ≥ 0 (Lawson–Hanson, :func:`scipy.optimize.nnls`).

    The weight μ ≥ 0 (scaled units, like h) augments the system to [A/s; √μ I] x = [y/s; 0];
    μ = 0 is plain NNLS. Spectra are solved one at a time (the active set differs per spectrum).
    If Lawson–Hanson reaches its cap (``max_iter``, default :data:`ITERATIONS_PER_UNKNOWN`·n_Ω)
    the same problem is solved by :func:`scipy.optimize.lsq_linear` (bounded least squares) and
    the spectrum's ``warnings_`` says so; NNLS never fails on its cap.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    weight : float ≥ 0
    errors, offset : as for :class:`rrim.solvers.Tikhonov` (x ≥ 0; the offset c is unconstrained).
    max_iter : int, optional

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions, ≥ 0.
    residual_ : (n,) or () ‖A x + c − y‖ in meV.
    offset_ : (n,) or () c in meV (``offset=True`` only).
    warnings_ : tuple of str per spectrum (a list of them for several spectra).
    """

    operator: ForwardOperator
    weight: float = 0.0
    errors: np.ndarray | None = None
    offset: bool = False
    max_iter: int | None = None

    def fit(self, y) -> "NNLS":
        op = check_operator(self.operator)
        rows = check_spectra(y, op)
        weight = check_positive(self.weight, "weight", allow_zero=True)
        n_Omega = op.shape[1]
        cap = ITERATIONS_PER_UNKNOWN * n_Omega if self.max_iter is None else self.max_iter
        if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1:
            raise ValueError(f"max_iter: expected an integer ≥ 1, got {self.max_iter!r}")
        system = System.of(op, self.errors, self.offset)
        a = system.matrix
        if weight > 0:
            a = np.vstack([a, np.sqrt(weight) * np.eye(n_Omega)])
        z = system.z(rows)
        rhs = np.zeros(a.shape[0])
        x = np.empty((rows.shape[0], n_Omega))
        report = Report(rows.shape[0])
        for i, row in enumerate(z):
            rhs[: row.size] = row
            try:
                x[i] = scipy.optimize.nnls(a, rhs, maxiter=int(cap))[0]
            except RuntimeError:  # the iteration cap: bounded least squares instead
                x[i] = scipy.optimize.lsq_linear(a, rhs, bounds=(0.0, np.inf), method="bvls", tol=1e-12).x
                report.messages[i].append(f"Lawson–Hanson reached its cap of {cap} iterations; solved by "
                                          f"bounded least squares (scipy.optimize.lsq_linear, BVLS)")
        shape = np.shape(y)
        self.x_ = unflatten(x, shape)
        c = system.offsets(rows, x)
        if c is not None:
            self.offset_ = unflatten(c, shape)
        fit = op.forward(x) + (0.0 if c is None else c[:, None])
        self.residual_ = unflatten(np.linalg.norm(fit - rows, axis=1), shape)
        report.publish(self, shape, "NNLS", edges=False)
        return self
