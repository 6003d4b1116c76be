"""Classical solvers of y = A x (numpy/scipy only), scikit-learn style, sharing rrim's operator.

``Solver(operator, **settings).fit(y)`` with y in meV, (n, n_ω) or (n_ω,); the glue is ``x_``.
They work in the scaled units y/s and A/s, where weights are comparable with the rRIM's h.
Every solver takes ``errors`` (per-point stds or a covariance; the problem is whitened) and
``offset`` (a constant fitted jointly); the weight rules report ``at_edge_`` and ``warnings_``.
See docs/SOLVERS.md for a worked example on a user kernel.
"""
from rrim.solvers.maxent import MaxEnt
from rrim.solvers.nnls import NNLS
from rrim.solvers.parameter_choice import noise_level
from rrim.solvers.tikhonov import IteratedTikhonov, Tikhonov, tune_tikhonov_weight
from rrim.solvers.truncated_svd import TruncatedSVD

__all__ = ["Tikhonov", "IteratedTikhonov", "NNLS", "TruncatedSVD", "MaxEnt", "tune_tikhonov_weight", "noise_level"]
