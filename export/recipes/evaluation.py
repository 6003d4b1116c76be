"""Shared evaluation helpers of the shipped-model recipes and the experiments: scores of estimated
glue against the truth, noisy spectra, the rRIM's estimates (mask-aware), and the classical solvers
of :mod:`rrim.solvers` with their weights tuned on known glue.

Spectra y (n, n_ω) in meV, glue x (n, n_Ω) dimensionless; noise levels σ are fractions of max |y|
per spectrum (:func:`rrim.physics.synthetic.add_noise`).
"""
from __future__ import annotations

import numpy as np

from rrim.physics.operator import ForwardOperator
from rrim.solvers import NNLS, MaxEnt, Tikhonov, tune_tikhonov_weight

#: NNLS's weight is tuned on this grid, in decades around the tuned Tikhonov weight.
NNLS_DECADES = np.arange(-2.0, 2.01, 0.5)


def rel_l2(x_hat, x) -> np.ndarray:
    """‖x̂ − x‖/‖x‖ per spectrum (the glue error physicists compare)."""
    return np.linalg.norm(x_hat - x, axis=-1) / np.linalg.norm(x, axis=-1)


def scores(x_hat, x, fit=None, y=None, noise=None, mask=None) -> dict:
    """MSE over spectra and Ω points, median relative L2 error, and with ``fit`` (A x̂ in meV), ``y``
    and ``noise`` (n,) > 0 the median RMS misfit on the measured points in units of the noise."""
    out = {"mse": float(np.mean((x_hat - x) ** 2)), "rel_l2": float(np.median(rel_l2(x_hat, x)))}
    if fit is not None and noise is not None and np.all(noise > 0):
        m = slice(None) if mask is None else mask
        out["misfit_over_noise"] = float(np.median(np.sqrt(np.mean((fit[:, m] - y[:, m]) ** 2, axis=1)) / noise))
    return out


def noisy(y: np.ndarray, sigma: float, rng) -> np.ndarray:
    """y + σ·max|y|·ε like :func:`rrim.physics.synthetic.add_noise`, but drawing ε at σ = 0 too, so that every
    noise level consumes the generator alike (the model cards' numbers depend on that order)."""
    return y + sigma * np.abs(y).max(axis=1, keepdims=True) * rng.standard_normal(y.shape)


def rrim_estimates(model, y_meV: np.ndarray, operator: ForwardOperator, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(final estimate, the network's own output before the data-consistency steps) of an adaptive
    rRIM (PyTorch) for spectra (n, n_ω) in meV measured on ``mask`` (n_ω,) (default: every point);
    float64 (n, n_Ω). The same physics as the runtime (:func:`rrim.export.data.adaptive.adaptive_physics`)."""
    import torch

    from rrim.export.data.adaptive import adaptive_physics
    from rrim.export.training.loop import estimates

    beta, *physics = adaptive_physics(operator, np.asarray(y_meV, dtype=np.float64) / operator.scale, mask, model.prior)
    model.eval()
    with torch.no_grad():
        xs = estimates(model, beta, *physics)
    network = xs[-2] if model.settings.correction_steps else xs[-1]
    return xs[-1].double().numpy(), network.double().numpy()


def measured_operator(operator: ForwardOperator, mask) -> ForwardOperator:
    """The operator restricted to the measured ω points ``mask`` (what a classical solver sees)."""
    mask = np.asarray(mask, bool)
    if mask.all():
        return operator
    return ForwardOperator(operator.omega.values[mask], operator.Omega, operator.temperature, operator.kernel,
                           operator.scale)


def tuned_weights(operator: ForwardOperator, y, x, n_nnls: int) -> dict:
    """Weights tuned on known glue (lowest MSE): Tikhonov's on the grid of
    :func:`rrim.solvers.tune_tikhonov_weight` over all of ``y``; NNLS's among
    Tikhonov's × 10^:data:`NNLS_DECADES` on the first ``n_nnls`` spectra."""
    tik = tune_tikhonov_weight(operator, y, x)
    candidates = tik * 10.0 ** NNLS_DECADES
    errors = [np.mean((NNLS(operator, weight=w).fit(y[:n_nnls]).x_ - x[:n_nnls]) ** 2) for w in candidates]
    return {"tikhonov": float(tik), "nnls": float(candidates[int(np.argmin(errors))])}


def classical_estimates(operator: ForwardOperator, y, noise, weights: dict, n_mem: int) -> dict:
    """{method: (estimates, number of spectra solved)} of the classical solvers for spectra ``y``
    (n, n_ω) meV with noise std ``noise`` (n,) meV (all 0: noiseless, then the rules estimate it):
    Tikhonov with the tuned weight, GCV and the discrepancy principle, NNLS with its tuned weight,
    MEM (χ² = N) on the first ``n_mem`` spectra only (it is slow). A method that raises is given as
    the message of its error instead (reported, never hidden)."""
    known = None if not np.all(np.asarray(noise) > 0) else np.asarray(noise, dtype=np.float64)
    n, k = len(y), min(n_mem, len(y))
    makers = {"Tikhonov (tuned)": lambda: Tikhonov(operator, rule="fixed", weight=weights["tikhonov"]).fit(y).x_,
              "Tikhonov (GCV)": lambda: Tikhonov(operator, rule="gcv").fit(y).x_,
              "Tikhonov (discrepancy)": lambda: Tikhonov(operator, rule="discrepancy", noise=known).fit(y).x_,
              "NNLS (tuned weight)": lambda: NNLS(operator, weight=weights["nnls"]).fit(y).x_}
    if k:
        makers["MEM (χ²)"] = lambda: MaxEnt(operator, rule="chi2", noise=None if known is None else known[:k]).fit(y[:k]).x_
    out = {}
    for name, make in makers.items():
        try:
            out[name] = (make(), k if name.startswith("MEM") else n)
        except Exception as e:  # noqa: BLE001  (listed in the report)
            out[name] = f"{type(e).__name__}: {e}"
    return out


def best_tikhonov_weight(operator: ForwardOperator, y, x) -> float:
    """The Tikhonov weight (grid of :func:`rrim.solvers.parameter_choice.weight_grid`) with the lowest
    median relative L2 error on these spectra: an oracle that knows the truth ("best weight per file")."""
    from rrim.solvers.parameter_choice import weight_grid

    grid = weight_grid(operator.svd.s)
    errors = [np.median(rel_l2(Tikhonov(operator, rule="fixed", weight=w).fit(y).x_, x)) for w in grid]
    return float(grid[int(np.argmin(errors))])


def filled(y: np.ndarray, mask: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Measured values interpolated across gaps and held beyond the ends: the input of a model that
    cannot take a measured-ω mask (what ``rrim invert --crop`` feeds)."""
    return np.stack([np.interp(omega, omega[mask], row[mask]) for row in y])
