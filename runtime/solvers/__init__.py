"""Classical solvers of y = A x (numpy/scipy only), scikit-learn style, sharing rrim's operator.

``Solver(operator, **settings).fit(y)`` with y in meV, (n, n_ω) or (n_ω,); the glue is ``x_``.
They work in the scaled units y/s and A/s, where weights are comparable with the rRIM's h.
"""
from .maxent import MaxEnt
from .nnls import NNLS
from .tikhonov import IteratedTikhonov, Tikhonov, tune_tikhonov_weight
from .truncated_svd import TruncatedSVD

__all__ = ["Tikhonov", "IteratedTikhonov", "NNLS", "TruncatedSVD", "MaxEnt", "tune_tikhonov_weight"]
