"""Batch inversion of scattering rates on a model's ω grid with an ONNX model (numpy in, numpy out).

y (n, n_ω) in meV → scaled once by the model's s and cast once to float32 → the model in
batches → glue x̂ (n, n_Ω) (float64 copy of the float32 output), the refit A·x̂ (n, n_ω) in meV
with A from the shared physics at the spectra's temperature, the relative RMS residual per
spectrum and quality flags.

Quality flags: :mod:`rrim.inversion.flags`.

Per spectrum also: the noise estimate σ̂ (meV) and the OOD score (:mod:`rrim.inversion.uncertainty`); on
request a calibrated band ``glue_lower``/``glue_upper`` (``coverage``) and the impurity rate c
(meV, ``impurity=True``, :mod:`rrim.physics.impurity`), removed before the inversion and added to the refit.

Smoothing (off by default): a Gaussian of standard deviation ``smoothing_meV`` applied to x̂
along Ω (normalized trapezoid-weighted convolution, so a constant stays constant), before the
refit, so the fit always describes the glue that is returned.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rrim.inversion.flags import FLAG_NONFINITE, FLAG_OOD, FLAG_POOR_FIT, FLAG_TEMPERATURE, poor_fit_threshold
from rrim.inversion.regularization import H_MAX, H_MIN, MaskedBases, choose_weights, correct
from rrim.inversion.uncertainty import (DEFAULT_RESAMPLES, consistency_fit, estimate_noise, load_calibration, ood_score,
                                        relative_noise, resample_noise)
from rrim.models.loading import LoadedModel
from rrim.models.modelfile import (INPUT_A, INPUT_BETA, INPUT_H, INPUT_P, INPUT_S, INPUT_VT, INPUT_Y, PER_ROW,
                                   ModelFileError)
from rrim.physics.impurity import estimate_impurity

log = logging.getLogger(__name__)

#: Default spectra per model call: onnxruntime on this CPU was fastest at 16–64 (docs/ARCHITECTURE.md §8);
#: see benchmarks/runtime_throughput.md for the measurement with the shipped model.
DEFAULT_BATCH_SIZE = 64


@dataclass
class InversionResult:
    """Glue (n, n_Ω) and fit (n, n_ω, meV) as float64, residual (n,), flags (n,) uint8, provider that ran,
    temperature (K), the seconds spent inside the model's session calls, and the per-spectrum extras."""

    glue: np.ndarray
    fit: np.ndarray
    residual: np.ndarray
    flags: np.ndarray
    provider: str
    temperature: float
    model_seconds: float = 0.0
    noise: np.ndarray | None = None  # σ̂ (n,) meV
    ood_score: np.ndarray | None = None  # (n,), NaN without a calibration
    glue_lower: np.ndarray | None = None  # (n, n_Ω) with ``coverage``
    glue_upper: np.ndarray | None = None
    spread: np.ndarray | None = None  # resample standard deviation (n, n_Ω) with ``resamples``
    impurity: np.ndarray | None = None  # c (n,) meV with ``impurity``


@lru_cache(maxsize=64)  # ~0.6 MB each: an archive's temperatures are computed once, not per slab
def _physics(model_key: tuple, temperature: float, h: float, info_operator: str, adaptive: bool):
    """(operator, A/s float32, P float32 or None for adaptive models) at ``temperature`` K, cached
    per model and temperature."""
    import json

    from rrim.physics.operator import ForwardOperator

    op = ForwardOperator.from_description(json.loads(info_operator), temperature=temperature)
    a = np.ascontiguousarray(op.scaled_matrix, dtype=np.float32)
    p = None if adaptive else np.ascontiguousarray(op.preconditioner(h), dtype=np.float32)
    return op, a, p


def physics_at(model: LoadedModel, temperature: float):
    """The model's operator at ``temperature`` K and its float32 A/s and P (cached; P is None for a
    noise-adaptive model, whose physics is per spectrum: :func:`model_feeds`)."""
    import json

    return _physics((str(model.path), model.sha256), float(temperature), float(model.info.h),
                    json.dumps(model.info.operator, sort_keys=True), model.info.adaptive)


_BASES = MaskedBases(maxsize=64)


@dataclass(frozen=True)
class AdaptiveInputs:
    """What a noise-adaptive model's spectra need besides the network (float64): the singular basis of
    their measured points, β = Uᵀ(y/s) (m, r), and the weights h (m,) as GCV chose them (the graph
    gets them clipped; the data-consistency steps use them as they are)."""

    svd: object
    beta: np.ndarray
    h: np.ndarray

    @classmethod
    def of(cls, op, y_scaled: np.ndarray, mask: np.ndarray | None = None) -> "AdaptiveInputs":
        mask = np.ones(y_scaled.shape[1], bool) if mask is None else mask
        svd, y = _BASES.basis(op, mask), y_scaled * mask
        return cls(svd, y @ svd.U, choose_weights(y, svd, mask, clip=False))


def model_feeds(model: LoadedModel, op, a32, p32, y_scaled: np.ndarray, mask: np.ndarray | None = None,
                adaptive: AdaptiveInputs | None = None) -> dict:
    """Every graph input of ``model`` for scaled spectra (m, n_ω) float64 measured on ``mask``
    (default: every point); rows of the per-spectrum inputs match the spectra.

    A noise-adaptive model gets β = Uᵀy (float64, then cast) and h (m, 1) of ``adaptive`` (default:
    :meth:`AdaptiveInputs.of`), and in the input form S and Vt of the measured points' basis."""
    if not model.info.adaptive:
        feeds = {INPUT_Y: y_scaled.astype(np.float32)}
        if model.form == "input":
            feeds.update({INPUT_A: a32, INPUT_P: p32})
        return feeds
    a = adaptive or AdaptiveInputs.of(op, y_scaled, mask)
    feeds = {INPUT_BETA: a.beta.astype(np.float32),
             INPUT_H: np.clip(a.h, H_MIN, H_MAX)[:, None].astype(np.float32)}
    if model.form == "input":
        feeds.update({INPUT_S: a.svd.s.astype(np.float32), INPUT_VT: a.svd.Vt.astype(np.float32)})
    return feeds


def finish(model: LoadedModel, op, x: np.ndarray, adaptive: AdaptiveInputs | None) -> np.ndarray:
    """The model's estimate from its graph output ``x`` (m, n_Ω): for a noise-adaptive model, its
    data-consistency steps and polish (:func:`rrim.inversion.regularization.correct`, float64)."""
    reg = model.info.regularization
    steps = int(reg.get("correction_steps", 0))
    if not steps:
        return x
    return correct(x, adaptive.beta, adaptive.svd, adaptive.h, steps, int(reg.get("polish_iterations", 0)))


@lru_cache(maxsize=8)
def _smoother(Omega_key: bytes, width: float) -> np.ndarray:
    Omega = np.frombuffer(Omega_key, dtype=np.float64)
    from rrim.physics.grids import trapezoid_weights

    k = np.exp(-0.5 * ((Omega[:, None] - Omega[None, :]) / width) ** 2) * trapezoid_weights(Omega)[None, :]
    return k / k.sum(axis=1, keepdims=True)


def smooth(x: np.ndarray, Omega, width_meV: float) -> np.ndarray:
    """Gaussian smoothing of glue rows x (..., n_Ω) along Ω (a Grid), σ = ``width_meV`` meV."""
    if not (np.isfinite(width_meV) and width_meV > 0):
        raise ValueError(f"smoothing_meV: expected a width > 0 meV, got {width_meV!r}")
    return x @ _smoother(Omega.values.tobytes(), float(width_meV)).T


def invert(y_meV, model: LoadedModel, *, provider: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
           temperature: float | None = None, smoothing_meV: float | None = None,
           valid_omega: np.ndarray | None = None, session=None, coverage: float | None = None,
           resamples: int | None = None, impurity: bool = False) -> InversionResult:
    """Invert scattering rates ``y_meV`` (n, n_ω) in meV, already on the model's ω grid.

    ``temperature`` (K): the spectra's temperature (default: the model's). 'input'-form models
    get A/s and P at that temperature; a baked model outside its temperature range still runs
    and the spectra are flagged. ``valid_omega`` (n_ω,) bool: model ω points backed by data
    (the residual uses only those). Non-finite spectra are flagged and skipped (NaN outputs).
    ``session``: an existing :class:`~rrim.models.sessions.Session` (else ``model.session(provider)``).
    ``coverage`` (0.68 or 0.9): also the calibrated band (needs the model's calibration;
    ``ValueError`` otherwise); ``resamples``: copies per spectrum for the band (default 16; given
    without ``coverage``, only the raw spread is returned). ``impurity``: estimate and remove c.
    """
    info = model.info
    n_w, n_W = len(info.omega), len(info.Omega)
    y = np.asarray(y_meV, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != n_w:
        raise ValueError(f"y_meV: expected shape (n, {n_w}) on the model's ω grid, got {y.shape}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer ≥ 1, got {batch_size!r}")
    try:
        calibration = load_calibration(model)
    except ModelFileError as e:
        if coverage is not None:
            raise
        log.warning("%s; no OOD scores", e)
        calibration = None
    if coverage is not None:
        if calibration is None:
            raise ValueError(f"coverage: model {model.name!r} has no calibration ({model.path.stem}.calibration.json); "
                             "make one with `rrim calibrate`")
        calibration.scale(coverage, np.zeros(0), 0.0)  # refuses a coverage the calibration lacks
    K = (calibration.resamples if calibration else DEFAULT_RESAMPLES) if resamples is None else int(resamples)
    if (coverage is not None or resamples is not None) and K < 2:
        raise ValueError(f"resamples: expected an integer ≥ 2, got {resamples!r}")
    T = info.temperature if temperature is None else float(temperature)
    op, a32, p32 = physics_at(model, T)
    session = session or model.session(provider)

    n = y.shape[0]
    flags = np.zeros(n, dtype=np.uint8)
    with np.errstate(invalid="ignore"):  # values that overflow float32 once scaled cannot reach the model either
        finite = np.isfinite(y).all(axis=1) & (np.abs(y) <= float(np.finfo(np.float32).max) * info.scale).all(axis=1)
    flags[~finite] |= FLAG_NONFINITE
    lo, hi = info.temperature_range_K
    if not lo - 1e-9 <= T <= hi + 1e-9:
        flags |= FLAG_TEMPERATURE

    rows = np.flatnonzero(finite)
    noise = np.full(n, np.nan)
    noise[rows] = estimate_noise(y[rows])
    c = np.zeros(n)
    if impurity:
        c = np.full(n, np.nan)
        c[rows] = estimate_impurity(y[rows], op)
    y_model = y - c[:, None]
    mask = np.ones(n_w, bool) if valid_omega is None else np.asarray(valid_omega, bool)
    run = _ModelRunner(model, session, op, a32, p32, int(batch_size), smoothing_meV, mask)
    glue = np.full((n, n_W), np.nan)
    glue[rows] = run(y_model[rows])

    fit = glue @ op.matrix.T + c[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        num = np.sqrt(np.mean((fit[:, mask] - y[:, mask]) ** 2, axis=1))
        den = np.sqrt(np.mean(y[:, mask] ** 2, axis=1))
        residual = np.where(finite, num / np.where(den > 0, den, np.inf), np.nan)
        limit = poor_fit_threshold(noise / np.where(den > 0, den, np.inf))
    flags[finite & ~(residual <= limit)] |= FLAG_POOR_FIT
    score = np.full(n, np.nan)
    if calibration is not None:
        threshold = calibration.threshold(relative_noise(noise, y))
        score = ood_score(y, (fit,), noise, calibration.beta, mask)
        # the consistency fit can only lower a score: it is needed only where the rRIM's is above the threshold
        high = np.flatnonzero(finite & ~(score <= threshold))
        if high.size:
            data_fit = consistency_fit(y_model[high], op) + c[high, None]
            score[high] = ood_score(y[high], (fit[high], data_fit), noise[high], calibration.beta, mask)
        flags[finite & ~(score <= threshold)] |= FLAG_OOD

    result = InversionResult(glue, fit, residual, flags, session.provider, T, 0.0, noise=noise, ood_score=score,
                             impurity=c if impurity else None)
    if coverage is not None or resamples is not None:
        eps = resample_noise(n_w, K)
        spread = np.full((n, n_W), np.nan)
        for start in range(0, rows.size, max(1, int(batch_size) // K) * 8):  # bounded memory: ≤ 8 batches of copies
            r = rows[start:start + max(1, int(batch_size) // K) * 8]
            copies = (y_model[r, None, :] + noise[r, None, None] * eps[None]).reshape(-1, n_w)
            spread[r] = run(copies).reshape(r.size, K, n_W).std(axis=1, ddof=1)
        result.spread = spread
        if coverage is not None:
            result.glue_lower, result.glue_upper = calibration.band(glue, spread, relative_noise(noise, y), coverage, T)
    result.model_seconds = run.seconds
    return result


class _ModelRunner:
    """Spectra in meV (m, n_ω) → glue (m, n_Ω) float64 through the session, in batches, smoothed if
    asked; counts the seconds spent in session calls. A mask-aware model sees only the ω points of
    ``mask`` (n_ω,) bool; other models see every point."""

    def __init__(self, model: LoadedModel, session, op, a32, p32, batch_size: int, smoothing_meV, mask=None):
        self.model, self.session, self.batch_size, self.smoothing = model, session, batch_size, smoothing_meV
        self.physics = (op, a32, p32)
        self.mask = mask if mask_aware(model) else None
        self.seconds = 0.0

    def __call__(self, y: np.ndarray) -> np.ndarray:
        info = self.model.info
        op = self.physics[0]
        adaptive = AdaptiveInputs.of(op, y / info.scale, self.mask) if info.adaptive else None
        feeds = model_feeds(self.model, *self.physics, y / info.scale, self.mask, adaptive)
        rows = {k for k in PER_ROW if k in feeds}
        batches = [{k: (v[start:start + self.batch_size] if k in rows else v) for k, v in feeds.items()}
                   for start in range(0, len(y), self.batch_size)]
        t0 = time.perf_counter()
        out = self.session.run_batches(batches)
        self.seconds += time.perf_counter() - t0
        x = np.concatenate(out).astype(np.float64) if out else np.empty((0, len(info.Omega)))
        x = finish(self.model, op, x, adaptive)
        return smooth(x, info.Omega, self.smoothing) if self.smoothing else x


def mask_aware(model: LoadedModel) -> bool:
    """True when ``model`` takes the measured-ω mask (an adaptive model in the input form)."""
    return model.info.adaptive and model.form == "input" and bool(model.info.regularization.get("mask"))
