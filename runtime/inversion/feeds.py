"""What the network is fed and what becomes of its output: the physics at a temperature, the inputs
of every model form (y/s; A/s and P; a noise-adaptive model's β, h, S, Vt), the data-consistency
steps after it, and optional smoothing of the glue (docs/ARCHITECTURE.md §5).

Smoothing (off by default): a Gaussian of standard deviation ``smoothing_meV`` applied to x̂ along Ω
(normalized trapezoid-weighted convolution, so a constant stays constant), before the refit, so
the fit always describes the glue that is returned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrim.inversion.regularization import (H_MAX, H_MIN, POLISH_FLOOR, POLISH_START, POLISH_STOP, MaskedBases, choose_weights,
                                           correct)
from rrim.models.loading import LoadedModel
from rrim.inversion.prior import GaussianPrior
from rrim.models.modelfile import INPUT_A, INPUT_BETA, INPUT_H, INPUT_P, INPUT_S, INPUT_VT, INPUT_X0, INPUT_Y
from rrim.physics.grids import trapezoid_weights
from rrim.physics.operator import ForwardOperator


def physics_at(model: LoadedModel, temperature: float):
    """The model's operator at ``temperature`` K and its float32 A/s and P (P is None for a noise-adaptive
    model, whose physics is per spectrum: :func:`model_feeds`). Computed on each call; an
    :class:`~rrim.inversion.engine.Engine` keeps them per temperature."""
    op = ForwardOperator.from_description(model.info.operator, temperature=float(temperature))
    a = np.ascontiguousarray(op.scaled_matrix, dtype=np.float32)
    p = None if model.info.adaptive else np.ascontiguousarray(op.preconditioner(float(model.info.h)), dtype=np.float32)
    return op, a, p


@dataclass(frozen=True)
class AdaptiveInputs:
    """What a noise-adaptive model's spectra need besides the network (float64): the singular basis of
    their measured points, β = Uᵀ(y/s) (m, r), and the weights h (m,) as GCV chose them (the graph
    gets them clipped; the data-consistency steps use them as they are); for a model that starts from
    its Gaussian prior, the prior's estimate x0 (m, n_Ω)."""

    svd: object
    beta: np.ndarray
    h: np.ndarray
    data2: np.ndarray  # ‖yₘ‖² (m,) of the measured points
    n_measured: int
    x0: np.ndarray | None = None

    @classmethod
    def of(cls, op, y_scaled: np.ndarray, mask: np.ndarray | None = None, bases: MaskedBases | None = None,
           prior: GaussianPrior | None = None) -> "AdaptiveInputs":
        """For scaled spectra (m, n_ω) measured on ``mask`` (default: every point); ``bases``: a cache of
        singular bases per operator and mask (an engine's), else the basis is computed; ``prior``: the
        model's Gaussian prior, whose estimate becomes x0."""
        mask = np.ones(y_scaled.shape[1], bool) if mask is None else mask
        svd, y = (bases or MaskedBases(maxsize=1)).basis(op, mask), y_scaled * mask
        x0 = None if prior is None else prior.estimate(op, y, mask)
        return cls(svd, y @ svd.U, choose_weights(y, svd, mask, clip=False), np.einsum("ij,ij->i", y, y),
                   int(np.count_nonzero(mask)), x0)

    def polish_targets(self, noise_scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(start2, stop2) (m,) of :func:`rrim.inversion.regularization.polish`: the squared misfits
        n_measured·(c·σ̂)² for c = :data:`POLISH_START`, :data:`POLISH_STOP`, σ̂ (m,) the noise in scaled
        units, each at least the :data:`POLISH_FLOOR` part of ‖yₘ‖², less ‖yₘ‖² − ‖β‖² (the part of the
        data outside the basis, which no glue removes): the polish compares them with the misfit inside it."""
        outside = np.maximum(self.data2 - np.einsum("ij,ij->i", self.beta, self.beta), 0.0)
        floor = POLISH_FLOOR ** 2 * self.data2
        return tuple(np.maximum(self.n_measured * (c * noise_scaled) ** 2, floor) - outside
                     for c in (POLISH_START, POLISH_STOP))


def model_feeds(model: LoadedModel, op, a32, p32, y_scaled: np.ndarray, mask: np.ndarray | None = None,
                adaptive: AdaptiveInputs | None = None) -> dict:
    """Every graph input of ``model`` for scaled spectra (m, n_ω) float64 measured on ``mask``
    (default: every point); rows of the per-spectrum inputs match the spectra.

    A noise-adaptive model gets β = Uᵀy (float64, then cast) and h (m, 1) of ``adaptive`` (default:
    :meth:`AdaptiveInputs.of`) clipped to the model's ``h_min``/``h_max``, in the input form S and
    Vt of the measured points' basis, and with a prior its estimate x0 (m, n_Ω)."""
    if not model.info.adaptive:
        feeds = {INPUT_Y: y_scaled.astype(np.float32)}
        if model.form == "input":
            feeds.update({INPUT_A: a32, INPUT_P: p32})
        return feeds
    a = adaptive or AdaptiveInputs.of(op, y_scaled, mask, prior=GaussianPrior.of_model(model.info))
    reg = model.info.regularization
    feeds = {INPUT_BETA: a.beta.astype(np.float32),
             INPUT_H: np.clip(a.h, reg.get("h_min", H_MIN), reg.get("h_max", H_MAX))[:, None].astype(np.float32)}
    if model.info.prior:
        feeds[INPUT_X0] = a.x0.astype(np.float32)
    if model.form == "input":
        feeds.update({INPUT_S: a.svd.s.astype(np.float32), INPUT_VT: a.svd.Vt.astype(np.float32)})
    return feeds


def finish(model: LoadedModel, op, x: np.ndarray, adaptive: AdaptiveInputs | None,
           noise_scaled: np.ndarray | None = None) -> np.ndarray:
    """The model's estimate from its graph output ``x`` (m, n_Ω): for a noise-adaptive model, its
    data-consistency steps and polish (:func:`rrim.inversion.regularization.correct`, float64); with
    the spectra's estimated noise ``noise_scaled`` (m,) (scaled units) and the model's
    ``polish_max_iterations``, the polish goes on where the misfit is still above the noise."""
    reg = model.info.regularization
    steps = int(reg.get("correction_steps", 0))
    if not steps:
        return x
    most = int(reg.get("polish_max_iterations", 0))
    targets = None if noise_scaled is None or not most else adaptive.polish_targets(noise_scaled)
    return correct(x, adaptive.beta, adaptive.svd, adaptive.h, steps, int(reg.get("polish_iterations", 0)),
                   max_iterations=most, targets=targets)


def smooth(x: np.ndarray, Omega, width_meV: float) -> np.ndarray:
    """Gaussian smoothing of glue rows x (..., n_Ω) along Ω (a Grid), σ = ``width_meV`` meV."""
    if not (np.isfinite(width_meV) and width_meV > 0):
        raise ValueError(f"smoothing_meV: expected a width > 0 meV, got {width_meV!r}")
    W = Omega.values
    k = np.exp(-0.5 * ((W[:, None] - W[None, :]) / float(width_meV)) ** 2) * trapezoid_weights(W)[None, :]
    return x @ (k / k.sum(axis=1, keepdims=True)).T


def mask_aware(model: LoadedModel) -> bool:
    """True when ``model`` takes the measured-ω mask (an adaptive model in the input form)."""
    return model.info.adaptive and model.form == "input" and bool(model.info.regularization.get("mask"))
