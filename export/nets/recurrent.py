"""The rRIM in PyTorch (physics passed in, never built here): its update network, the recurrence of the
paper's fixed-h rRIM and of the noise-adaptive rRIM, and the latter's data-consistency steps.

Shapes: y is scaled scattering rates y/s (batch, n_ω); A is A/s (n_ω, n_Ω); P is
(AₛᵀAₛ + hI)⁻¹Aₛᵀ (n_Ω, n_ω); x is the glue function (batch, n_Ω). All float32 in training.
The noise-adaptive rRIM takes instead of P the singular basis of the measured rows of A/s, U (n_ω, r),
S (r,), Vt (r, n_Ω) (:mod:`rrim.inversion.regularization`), and a weight h (batch, 1) per spectrum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from rrim.export.config import X0_KINDS
from rrim.inversion.regularization import POLISH_ITERATIONS


#: How the regularization of the physics step is set: one h for every spectrum (the paper's rRIM),
#: or per spectrum from the data, with the measured-ω mask in the basis (the noise-adaptive rRIM).
REGULARIZATIONS = ("fixed", "adaptive")


@dataclass(frozen=True)
class RRIMSettings:
    """Update-network and recurrence settings (docs/ARCHITECTURE.md §2; ``hidden`` is a documented default).

    ``regularization`` 'adaptive' builds :class:`AdaptiveRRIM`; ``correction_steps`` (adaptive only)
    Tikhonov steps x ← max(0, x + P_h(y − A x)) after the last network update, which make the output
    explain the data (0: off, for the ablation). ``context`` > 0 adds the update network's coarse
    path (:class:`UpdateNetwork`) pooling that many Ω points into one (0: off); ``global_width`` > 0
    (adaptive only) its global path, a dense layer of that width over the whole Ω grid (0: off).
    """

    hidden: int = 32
    n_steps: int = 15
    #: "zeros", "tikhonov" (x_0 = P y, the plain Tikhonov solution) or, adaptive only, "prior" (the
    #: estimate of the training glue's Gaussian prior, :class:`rrim.inversion.prior.GaussianPrior`, given as ``x0``)
    x0: str = "tikhonov"
    nonnegative: bool = True
    regularization: str = "fixed"
    correction_steps: int = 0
    context: int = 0
    global_width: int = 0

    def __post_init__(self):
        if self.x0 not in X0_KINDS or (self.x0 == "prior" and self.regularization != "adaptive"):
            raise ValueError(f"x0: expected one of {X0_KINDS} ('prior' only for the adaptive rRIM), got {self.x0!r}")
        if self.regularization not in REGULARIZATIONS:
            raise ValueError(f"regularization: expected one of {REGULARIZATIONS}, got {self.regularization!r}")
        if self.n_steps < 1 or self.hidden < 1 or min(self.correction_steps, self.context, self.global_width) < 0:
            raise ValueError("n_steps and hidden must be ≥ 1, correction_steps, context and global_width ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


def preconditioned_gradient(y: torch.Tensor, x: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """∇ = P(y − A x) for rows y (B, n_ω), x (B, n_Ω), scaled units; shape (B, n_Ω)."""
    return (y - x @ A.T) @ P.T


class ConvGRUCell(nn.Module):
    """A GRU applied pointwise over the Ω grid with 1×1 convolutions: inputs (B, C_in, n), state (B, C, n).

    Written with convolutions rather than ``nn.GRUCell`` (about 3× faster to train on CPU; exports to ONNX).
    """

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv1d(in_channels + hidden, 2 * hidden, 1)
        self.candidate = nn.Conv1d(in_channels + hidden, hidden, 1)

    def forward(self, inp: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([inp, state], 1))).chunk(2, 1)
        c = torch.tanh(self.candidate(torch.cat([inp, r * state], 1)))
        return state + z * (c - state)


def pool_matrix(n: int, k: int) -> np.ndarray:
    """(n, ⌈n/k⌉) float64: averages of consecutive blocks of k points, the last block possibly shorter
    (``AvgPool1d(k, ceil_mode=True)`` as a product)."""
    m = -(-n // k)
    out = np.zeros((n, m))
    for j in range(m):
        block = slice(j * k, min(n, (j + 1) * k))
        out[block, j] = 1.0 / (block.stop - block.start)
    return out


def upsample_matrix(m: int, n: int) -> np.ndarray:
    """(m, n) float64: linear interpolation of m cell-centred values onto n (``interpolate(mode='linear')``,
    ``align_corners=False``, as a product)."""
    src = np.maximum((np.arange(n) + 0.5) * m / n - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), m - 1)
    hi = np.minimum(lo + 1, m - 1)
    w = src - lo
    out = np.zeros((m, n))
    np.add.at(out, (lo, np.arange(n)), 1.0 - w)
    np.add.at(out, (hi, np.arange(n)), w)
    return out


def _constant(matrix: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(matrix).to(dtype=like.dtype, device=like.device)


class MatrixPool(nn.Module):
    """Average-pool the last axis by ``k`` (the last block possibly shorter) as a product with :func:`pool_matrix`."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ _constant(pool_matrix(int(h.shape[-1]), self.k), h)


class UpdateNetwork(nn.Module):
    """g_φ: [x_t, ∇_t] (B, 2, n_Ω) and state (h1, h2) → Δx (B, n_Ω) and the new state.

    Conv1d(k=5) → ConvGRU → Conv1d(k=3, dilation 2) → ConvGRU → Conv1d(k=3) (docs/ARCHITECTURE.md §2): each Ω
    point sees ~11 neighbours. With ``context`` = k > 0 a coarse path adds to the middle convolution
    what the first state holds over about half the grid: average-pool by k, Conv1d(k=5) → ReLU →
    Conv1d(k=5, dilation 2), linear interpolation back (a few % more arithmetic). Pooling and
    interpolation are products with constant matrices (:func:`pool_matrix`, :func:`upsample_matrix`):
    onnxruntime runs them as MatMul, ~1.25× faster end to end than AveragePool and Resize. Its last
    layer starts at zero, so a network with it starts as the same network without it (warm start).

    With ``global_width`` > 0 (and ``n_points``, the Ω grid's length) a global path adds to the middle
    convolution what the first state says about the whole grid: a 1×1 convolution to 2 channels, a
    dense layer over all 2·n_points values to ``global_width`` → ReLU → a dense layer back to n_points,
    a 1×1 convolution to the hidden channels (starting at zero, like the coarse path). Unlike the
    convolutions it knows where on the Ω grid each value lies and sees the whole spectrum at once.
    """

    def __init__(self, hidden: int, in_channels: int = 2, context: int = 0, global_width: int = 0, n_points: int = 0):
        super().__init__()
        if global_width and n_points < 1:
            raise ValueError("UpdateNetwork: a global path needs n_points, the length of the Ω grid")
        self.hidden, self.context, self.global_width = hidden, context, global_width
        self.inp = nn.Conv1d(in_channels, hidden, 5, padding=2)
        self.gru1 = ConvGRUCell(hidden, hidden)
        self.mid = nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2)
        self.gru2 = ConvGRUCell(hidden, hidden)
        self.out = nn.Conv1d(hidden, 1, 3, padding=1)
        if context:
            self.coarse = nn.Sequential(MatrixPool(context),
                                        nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
                                        nn.Conv1d(hidden, hidden, 5, padding=4, dilation=2))
            nn.init.zeros_(self.coarse[-1].weight)
            nn.init.zeros_(self.coarse[-1].bias)
        if global_width:
            self.glob = nn.Sequential(nn.Conv1d(hidden, 2, 1), nn.Flatten(), nn.Linear(2 * n_points, global_width),
                                      nn.ReLU(), nn.Linear(global_width, n_points), nn.Unflatten(1, (1, n_points)),
                                      nn.Conv1d(1, hidden, 1))
            nn.init.zeros_(self.glob[-1].weight)
            nn.init.zeros_(self.glob[-1].bias)

    def forward(self, x, grad, h1, h2, *extra):
        """``extra``: further input channels (B, n_Ω) after [x, ∇] (the adaptive rRIM's log h)."""
        f = torch.relu(self.inp(torch.stack([x, grad, *extra], 1)))
        h1 = self.gru1(f, h1)
        m = self.mid(h1)
        if self.context:
            c = self.coarse(h1)
            m = m + c @ _constant(upsample_matrix(int(c.shape[-1]), int(h1.shape[-1])), c)
        if self.global_width:
            m = m + self.glob(h1)
        h2 = self.gru2(torch.relu(m), h2)
        return self.out(h2).squeeze(1), h1, h2


class RRIM(nn.Module):
    """x_{t+1} = x_t + g_φ(∇_t, x_t, s_t), ∇_t = P(y − A x_t); weights shared over steps.

    ``forward(y, A, P)`` returns the list of iterates [x_1, …, x_{N_t}], each (B, n_Ω).
    With ``update=None`` replaced by :class:`IdentityUpdate` it is iterated Tikhonov.
    """

    def __init__(self, settings: RRIMSettings = RRIMSettings()):
        super().__init__()
        self.settings = settings
        self.update = UpdateNetwork(settings.hidden)

    def forward(self, y: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> list[torch.Tensor]:
        s = self.settings
        batch, n_Omega = y.shape[0], A.shape[1]
        x = y @ P.T if s.x0 == "tikhonov" else y.new_zeros(batch, n_Omega)
        h1 = y.new_zeros(batch, self.update.hidden, n_Omega)
        h2 = torch.zeros_like(h1)
        iterates = []
        for _ in range(s.n_steps):
            grad = preconditioned_gradient(y, x, A, P)
            dx, h1, h2 = self.update(x, grad, h1, h2)
            x = x + dx
            if s.nonnegative:
                x = torch.relu(x)
            iterates.append(x)
        return iterates


def tikhonov_step(r: torch.Tensor, U, S, Vt, h: torch.Tensor) -> torch.Tensor:
    """P_h r = V diag(S/(S² + h)) Uᵀ r for residuals r (B, n_ω) and weights h (B, 1) → (B, n_Ω)."""
    return ((r @ U) * (S / (S * S + h))) @ Vt


#: log10(h) enters the update network as (log10 h − LOG_H_CENTRE)/LOG_H_SPREAD (about −1…1 over
#: the weights rrim.inversion.regularization chooses).
LOG_H_CENTRE, LOG_H_SPREAD = -6.0, 6.0


class AdaptiveRRIM(nn.Module):
    """The noise-adaptive rRIM: x_{t+1} = max(0, x_t + g_φ(x_t, ∇_t, log h)), ∇_t = P_h(y − A x_t),
    with h chosen per spectrum from the data and P_h in the singular basis of the measured points,
    x_0 = P_h y; then ``correction_steps`` data-consistency steps x ← max(0, x + P_h(y − A x)) and a
    projected-gradient polish in float64 (:func:`correct`: the exported graph ends at x_{N_t}, the
    runtime applies them in float64, where float32 would cost accuracy on noiseless data).

    The graph works in the singular basis: its input is β = Uᵀy, computed in float64 by the caller
    (in float32, the rounding of Uᵀy along the small singular values, ~1e-7·‖y‖, would be amplified
    by up to 1/(2√h) and onnxruntime and PyTorch would disagree), and Uᵀ(y − A x) = β − S·(Vt x), so
    ∇_t = V[g·(β − S·Vt x)] with g = S/(S² + h).

    ``forward(beta, S, Vt, h, beta64=None, S64=None, Vt64=None, h_correction=None, x0=None)``:
    β (B, r); S (r,); Vt (r, n_Ω) (r = min(n_ω, n_Ω), zero-padded); h (B, 1) clipped for float32
    (:func:`rrim.inversion.regularization.choose_weights`); for the data-consistency steps, all float64 (float32
    physics would leave rounding residuals of ~1e-7·|y| that steps at h ~ 1e-15 amplify): β64 (B, r),
    S64, Vt64 and their weight h_correction (B, 1); with ``x0 = "prior"`` the start x0 (B, n_Ω), the
    prior's estimate (:meth:`rrim.inversion.prior.GaussianPrior.estimate`, computed by the caller; the
    prior itself, the model's :attr:`prior`, travels with its checkpoint). Returns the iterates
    [x_1, …, x_{N_t}] followed by the corrected estimate (when ``correction_steps`` > 0).
    """

    #: positions of the per-spectrum physics arguments after β (h, β64, h_correction, x0)
    PER_SPECTRUM = (2, 3, 6, 7)

    def __init__(self, settings: RRIMSettings, n_points: int = 0):
        super().__init__()
        if settings.regularization != "adaptive":
            raise ValueError("AdaptiveRRIM: settings.regularization must be 'adaptive'")
        self.settings = settings
        self.update = UpdateNetwork(settings.hidden, in_channels=3, context=settings.context,
                                    global_width=settings.global_width, n_points=n_points)
        #: the training glue's :class:`rrim.inversion.prior.GaussianPrior` (``x0 = "prior"``), set by the
        #: training and kept in checkpoints and model files; None otherwise
        self.prior = None
        if settings.x0 == "prior":  # start as "prior + data-consistency steps" (Δx = 0): training can only improve on it
            nn.init.zeros_(self.update.out.weight)
            nn.init.zeros_(self.update.out.bias)

    def start(self, beta, S, Vt, h, beta64=None, S64=None, Vt64=None, h_correction=None, x0=None) -> torch.Tensor:
        """x_0 (B, n_Ω): P_h y, or the given prior estimate ``x0``, projected on x ≥ 0; or zeros."""
        if self.settings.x0 == "zeros":
            return beta.new_zeros(beta.shape[0], Vt.shape[1])
        if self.settings.x0 == "prior":
            if x0 is None:
                raise ValueError("x0: a model with x0 = 'prior' needs the prior's estimate")
            x = x0
        else:
            x = (beta * (S / (S * S + h))) @ Vt
        return torch.relu(x) if self.settings.nonnegative else x

    def forward(self, beta, S, Vt, h, beta64=None, S64=None, Vt64=None, h_correction=None, x0=None) -> list[torch.Tensor]:
        s = self.settings
        gain = S / (S * S + h)
        x = self.start(beta, S, Vt, h, x0=x0)
        level = ((torch.log10(h) - LOG_H_CENTRE) / LOG_H_SPREAD).expand(-1, Vt.shape[1])
        h1 = beta.new_zeros(beta.shape[0], self.update.hidden, Vt.shape[1])
        h2 = torch.zeros_like(h1)
        iterates = []
        for _ in range(s.n_steps):
            grad = ((beta - (x @ Vt.T) * S) * gain) @ Vt
            dx, h1, h2 = self.update(x, grad, h1, h2, level)
            x = x + dx
            if s.nonnegative:
                x = torch.relu(x)
            iterates.append(x)
        if s.correction_steps:
            if any(t is None for t in (beta64, S64, Vt64)):
                raise ValueError("beta64, S64, Vt64: the data-consistency steps need them")
            hc = h if h_correction is None else h_correction
            iterates.append(correct(x, beta64, S64, Vt64, hc, s.correction_steps).to(x.dtype))
        return iterates


def correct(x, beta, S, Vt, h, steps: int, polish_iterations: int = POLISH_ITERATIONS) -> torch.Tensor:
    """``steps`` data-consistency steps x ← max(0, x + P_h(y − A x)) in the basis, then
    ``polish_iterations`` of projected gradient, in float64, as the runtime does them
    (:func:`rrim.inversion.regularization.correct`; pass float64 β = Uᵀy and basis); float64 result (B, n_Ω)."""
    beta, S, Vt, h = (t.double() for t in (beta, S, Vt, h))
    x, gain = x.double(), S / (S * S + h)
    for _ in range(steps):
        x = torch.relu(x + ((beta - (x @ Vt.T) * S) * gain) @ Vt)
    step, x0, z, t = 1.0 / (S[0] ** 2 + h), x, x, 1.0
    gram, aty = (Vt.T * S * S) @ Vt, (beta * S) @ Vt
    for _ in range(polish_iterations):
        gradient = z @ gram - aty + h * (z - x0)
        x_next = torch.relu(z - step * gradient)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
    return x


def build_rrim(settings: RRIMSettings, n_points: int = 0) -> nn.Module:
    """:class:`RRIM` or :class:`AdaptiveRRIM` by ``settings.regularization`` (``n_points``: the Ω grid's
    length, which a global path needs)."""
    if settings.regularization != "adaptive":
        if settings.global_width:
            raise ValueError("RRIMSettings.global_width: only the adaptive rRIM has a global path")
        return RRIM(settings)
    return AdaptiveRRIM(settings, n_points)


class IdentityUpdate(nn.Module):
    """g(∇, x, s) = ∇: turns an :class:`RRIM` into iterated Tikhonov (for tests)."""

    hidden = 1

    def forward(self, x, grad, h1, h2, *extra):
        return grad, h1, h2
