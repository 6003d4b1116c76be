"""Per-spectrum physics of the noise-adaptive rRIM: the measured-ω mask, the singular basis of A/s on
the measured points, and the Tikhonov weight h chosen per spectrum from the data.

A spectrum is measured on a subset of the model's ω grid (``mask`` (n_ω,) bool: True where measured;
unmeasured points carry no data, they are never filled in). With Aₘ the rows of A/s at the measured
points, Aₘ = Uₘ diag(sₘ) Vₘᵀ; :func:`masked_svd` returns Uₘ padded with zero rows at the unmeasured
points and zero columns up to r = min(n_ω, n_Ω), so that every mask gives arrays of the same shapes:
U (n_ω, r), s (r,), Vt (r, n_Ω). Then

    P_h r = V diag(s/(s² + h)) Uᵀ r

is the Tikhonov (preconditioned-Landweber) step of the measured points alone for any residual r on
the full grid, and x₀ = P_h y is plain Tikhonov at weight h. The weight h (scaled units, like μ of
:class:`rrim.solvers.Tikhonov`) is chosen per spectrum by the safeguarded GCV rule of
:func:`rrim.solvers.parameter_choice.gcv_choice` on the measured points and clipped to
[:data:`H_MIN`, :data:`H_MAX`]: below H_MIN the float32 arithmetic of an exported model loses more
than the weight gains (measured: Tikhonov at σ = 0 in float32 errs 30× more at h = 1e-14 than at 1e-12).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from rrim.physics.operator import SVD
from rrim.solvers import parameter_choice as pc
from rrim.solvers.base import Projection

#: Smallest and largest per-spectrum weight h (scaled units); see the module docstring.
H_MIN = 1e-12
H_MAX = 1.0
#: Projected-gradient iterations after the data-consistency steps (:func:`polish`). Measured on 300
#: spectra of the realistic prior with rrim-default 2.2.0 (median misfit / noise at σ = 1e-5, 1e-4, 1e-3):
#: none 7.1, 2.0, 1.11; 10 iterations 3.7, 1.32, 1.01; 40 iterations 1.9, 1.08, 0.99; the MSE drops
#: slightly at every σ (benchmarks/POLISH_ITERATIONS.md; 2.1.0 gave 8.6, 2.1, 1.14 with none).
POLISH_ITERATIONS = 40
#: Spectra whose RMS misfit on the measured points is still above POLISH_START × their estimated
#: noise after POLISH_ITERATIONS go on, in chunks of POLISH_CHUNK, until it is below POLISH_STOP × the
#: noise or after this many iterations in all. Shapes unlike the training glue need them: on the
#: realistic set at σ = 1e-4 (phonon lines, an Eliashberg-like spectrum, a plateau) 40 iterations left
#: the misfit at 8.1, 5.6 and 3.1× the true noise, this rule at 1.6, 1.25 and 1.3× (it stops at 1.1× the
#: *estimated* noise, which sharp shapes inflate), the glue error unchanged or lower
#: (benchmarks/POLISH_ITERATIONS.md). Training-like spectra rarely go on (their misfit is ~1.0–1.1×).
POLISH_MAX_ITERATIONS = 1000
POLISH_START = 1.5
POLISH_STOP = 1.1
#: ... and above this RMS misfit relative to the RMS of the measured data (noiseless spectra: the
#: estimated noise is then the curvature floor of the second differences; 40 iterations reach ~1e-5).
POLISH_FLOOR = 1e-5
#: Iterations between two checks of which rows still go on.
POLISH_CHUNK = 20
#: The polish's Gram matrix keeps the directions with s² above this fraction of s_max² (~40 of 200 on
#: the shipped grids; the others move the gradient by about float64 rounding): after up to 1000
#: iterations the glue differs from the full matrix's by ≤ 3e-8 of max x̂ on held-out and realistic-set
#: spectra (tests/test_runtime_adaptive.py checks 1e-7).
GRAM_FLOOR = 1e-16


def check_mask(mask, n_omega: int, name: str = "mask") -> np.ndarray:
    """``mask`` as a bool array (n_ω,) with at least 3 measured points; ``ValueError`` naming ``name``."""
    m = np.asarray(mask)
    if m.shape != (n_omega,):
        raise ValueError(f"{name}: expected one flag per ω point, shape ({n_omega},), got {m.shape}")
    m = m.astype(bool)
    if m.sum() < 3:
        raise ValueError(f"{name}: fewer than 3 measured ω points ({int(m.sum())})")
    return m


def masked_svd(a_scaled: np.ndarray, mask: np.ndarray) -> SVD:
    """Singular basis of the measured rows of A/s (n_ω, n_Ω), zero-padded to fixed shapes (module doc)."""
    a = np.asarray(a_scaled, dtype=np.float64)
    n_w, n_W = a.shape
    m = check_mask(mask, n_w)
    r = min(n_w, n_W)
    u_m, s_m, vt_m = np.linalg.svd(a[m], full_matrices=False)
    U = np.zeros((n_w, r))
    U[m, :s_m.size] = u_m
    s = np.zeros(r)
    s[:s_m.size] = s_m
    Vt = np.zeros((r, n_W))
    Vt[:s_m.size] = vt_m
    return SVD(U, s, Vt)


class MaskedBases:
    """Cache of :func:`masked_svd` per (temperature, mask) for one operator family; ``basis(op, mask)``.

    Archives repeat a few masks (one per instrument setting); ``maxsize`` bounds the memory
    (≈ 0.64 MB per entry on the default 200 × 200 grids).
    """

    def __init__(self, maxsize: int = 64, factor: np.ndarray | None = None):
        """``factor`` L (n_Ω, k): bases of the measured rows of (A/s)·L instead (a whitened problem,
        :class:`rrim.inversion.prior.GaussianPrior`)."""
        self.maxsize = int(maxsize)
        self.factor = factor
        self._items: OrderedDict = OrderedDict()

    def basis(self, operator, mask: np.ndarray) -> SVD:
        m = check_mask(mask, operator.shape[0])
        key = (operator.temperature, m.tobytes())
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        if self.factor is not None:
            svd = masked_svd(operator.scaled_matrix @ self.factor, m)
        else:
            svd = operator.svd if m.all() else masked_svd(operator.scaled_matrix, m)
        self._items[key] = svd
        if len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return svd


def choose_weights(y_scaled: np.ndarray, svd: SVD, mask: np.ndarray, clip: bool = True) -> np.ndarray:
    """Per-spectrum h (n,) for scaled spectra (n, n_ω) measured on ``mask`` with basis ``svd`` (of that mask).

    Safeguarded GCV over the measured points (unmeasured entries of y are ignored; see
    :func:`rrim.solvers.parameter_choice.gcv` for the degrees-of-freedom floor); with ``clip``
    (the network's input) clipped to [:data:`H_MIN`, :data:`H_MAX`], else (the float64
    data-consistency steps) as GCV chose it, down to 1e-16·s_max².
    """
    y = np.asarray(y_scaled, dtype=np.float64)
    m = np.asarray(mask, bool)
    keep = svd.s > 0
    basis = SVD(svd.U[m][:, keep], svd.s[keep], svd.Vt[keep])
    y_m = y[:, m]
    beta = y_m @ basis.U
    perp2 = np.maximum(np.einsum("ij,ij->i", y_m, y_m) - np.einsum("ij,ij->i", beta, beta), 0.0)
    projection = Projection(basis, y_m, beta, perp2)
    weights = pc.weight_grid(basis.s)
    h = weights[pc.gcv_choice(projection, pc.tikhonov_filters(basis.s, weights))]
    return np.clip(h, H_MIN, H_MAX) if clip else h


def tikhonov_step(residual: np.ndarray, svd: SVD, h: np.ndarray) -> np.ndarray:
    """P_h r = V diag(s/(s² + h)) Uᵀ r for residuals (n, n_ω) and weights h (n,) → (n, n_Ω)."""
    s = svd.s
    gain = s[None, :] / (s[None, :] ** 2 + np.asarray(h, dtype=np.float64)[:, None])
    return ((residual @ svd.U) * gain) @ svd.Vt


def correct(x: np.ndarray, beta: np.ndarray, svd: SVD, h: np.ndarray, steps: int,
            polish_iterations: int = 0, *, max_iterations: int = 0, targets: tuple | None = None) -> np.ndarray:
    """``steps`` data-consistency steps x ← max(0, x + P_h(y − A x)) (float64) for glue x (n, n_Ω),
    β = Uᵀ(y/s) (n, r) of the scaled spectra, the basis of their measured points and weights h (n,):
    Tikhonov centred on x, iterated, in the basis (Uᵀ(y − A x) = β − s·(Vt x), since U is zero where
    unmeasured); each step lowers the misfit on the measured points, and the estimate keeps what the
    data cannot see from x. Then :func:`polish` (``polish_iterations``, and up to ``max_iterations``
    for rows whose misfit is above ``targets``)."""
    x = np.asarray(x, dtype=np.float64)
    s, Vt = svd.s, svd.Vt
    gain = s[None, :] / (s[None, :] ** 2 + np.asarray(h, dtype=np.float64)[:, None])
    for _ in range(int(steps)):
        x = np.maximum(x + ((beta - (x @ Vt.T) * s) * gain) @ Vt, 0.0)
    if not polish_iterations:
        return x
    return polish(x, beta, svd, h, polish_iterations, max_iterations=max_iterations, targets=targets)


def polish(x: np.ndarray, beta: np.ndarray, svd: SVD, h: np.ndarray, iterations: int, *, max_iterations: int = 0,
           targets: tuple | None = None) -> np.ndarray:
    """Accelerated projected gradient (FISTA) on ½‖Aₘx − yₘ‖² + ½h‖x − x₀‖² over x ≥ 0 from x₀ = ``x``
    (n, n_Ω), with β = Uᵀy (n, r) and the basis of the measured points (Aₘ = U diag(s) Vt).

    The Tikhonov steps are preconditioned and then clipped at 0, which need not lower the misfit:
    where the glue touches 0 they leave it above the noise. Projected gradient in the plain
    Euclidean metric does lower it (step 1/(s_max² + h)). The gradient AₘᵀAₘz − Aₘᵀyₘ needs the Gram
    matrix Vtᵀ diag(s²) Vt only through the directions with s² > :data:`GRAM_FLOOR`·s_max² (k of them,
    ~40 of 200 on the shipped grids): two products of (n_Ω × k) per iteration instead of one of n_Ω².

    Without ``targets`` every row gets ``iterations``. With ``targets`` = (start2, stop2), each (n,),
    compared with the squared misfit inside the basis ‖s·(Vt x) − β‖² (‖Aₘx − yₘ‖² less the part of yₘ
    no glue reaches: see :meth:`rrim.inversion.feeds.AdaptiveInputs.polish_targets`): rows already at
    or below stop2 are returned as they are (they explain the data; on the realistic prior the MSE moves
    by ≤ 2 % and a spectrum gets 25 iterations on average at σ = 1e-3, 7 at 0.1: benchmarks/POLISH_ITERATIONS.md),
    the others get ``iterations``, and those then still above start2 go on, in chunks of :data:`POLISH_CHUNK`, until
    they are below stop2 or ``max_iterations`` in all."""
    keep = svd.s ** 2 > GRAM_FLOOR * svd.s[0] ** 2
    s, Vk, beta_k = svd.s[keep], svd.Vt[keep], beta[:, keep]
    gram = (Vk.T, s ** 2, Vk)
    h = np.asarray(h, dtype=np.float64)[:, None]
    step = 1.0 / (s[0] ** 2 + h)
    aty = (beta_k * s) @ Vk
    x0 = np.asarray(x, dtype=np.float64)
    if targets is None:
        return _fista(x0, x0, x0, 1.0, gram, aty, h, step, int(iterations))[0]
    start2, stop2 = targets
    # the directions left out: s·(Vt x) is below 1e-8·s_max·|x| there, the misfit is β²
    dropped2 = np.sum(beta[:, ~keep] ** 2, axis=1)

    def misfit2(x_, rows):
        return np.sum(((x_ @ Vk.T) * s - beta_k[rows]) ** 2, axis=1) + dropped2[rows]

    x, z = x0.copy(), x0.copy()
    rows = np.flatnonzero(misfit2(x0, slice(None)) > stop2)
    if not rows.size:
        return x
    x[rows], z[rows], t = _fista(x0[rows], x0[rows], x0[rows], 1.0, gram, aty[rows], h[rows], step[rows], int(iterations))
    done = int(iterations)
    active = rows[misfit2(x[rows], rows) > start2[rows]]
    while active.size and done < max_iterations:
        k = min(POLISH_CHUNK, max_iterations - done)
        xa, za, t = _fista(x0[active], x[active], z[active], t, gram, aty[active], h[active], step[active], k)
        x[active], z[active] = xa, za
        done += k
        active = active[misfit2(xa, active) > stop2[active]]
    return x


def _fista(x0, x, z, t, gram, aty, h, step, iterations: int):
    """``iterations`` FISTA steps of :func:`polish` from the state (x, z, t), the Gram matrix as its
    factors (V (n_Ω, k), s² (k,), Vt (k, n_Ω)); returns the new state. The step
    z − step·(Gz − Aᵀy + h(z − x₀)) is computed as (1 − step·h)·z − step·Gz + step·(Aᵀy + h·x₀)."""
    v, s2, vt = gram
    shrink, shift = 1.0 - step * h, step * (aty + h * x0)
    for _ in range(iterations):
        x_next = ((z @ v) * s2) @ vt
        x_next *= -step
        x_next += shrink * z
        x_next += shift
        np.maximum(x_next, 0.0, out=x_next)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
    return x, z, t
