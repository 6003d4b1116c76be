"""The input's ω axis against the model's ω grid (docs/ARCHITECTURE.md §6): which model points the data
observe, whether they cover what a mask-aware model was trained for, and the linear interpolation onto the
grid. Energies in meV.

**Observed points.** A model ω point is *observed* when the input channels that bracket it are
finite and at most :data:`GAP_STEPS` steps of the model's grid apart (a wider gap would be bridged
by a straight line, inventing what lies between); other points — beyond the data, inside a gap
of the ω axis, next to NaN (masked) channels — are *unobserved*.

**Coverage.** A *mask-aware* model (:func:`rrim.inversion.feeds.mask_aware`) never reads
unobserved points: an archive needs no option when its ω axis covers what the model was trained
for (:func:`trained_coverage`: data from at most the model's ``measured_range_meV`` start to at
least its end, at most :data:`MAX_UNOBSERVED_FRACTION` of the grid unobserved in between). A
spectrum whose own coverage (its NaN channels taken out) fails that rule is skipped, flagged
``coverage_untrained``. Other models need every model point inside the data observed (an axis
with a wider gap is refused as too sparse) and NaN anywhere skips the spectrum (``nonfinite_input``).

**Sampling density** (both kinds): an ω axis whose gaps leave model points unobserved is refused
as too sparse when the model could not use it (any gap for other models; the rule above for
mask-aware ones).

A file whose ω axis misses the model's (or its trained) range is refused unless ``crop`` is set,
in which case data beyond the range are dropped (flag ``omega_cropped``) and model points without
data hold the edge value (flag ``omega_extrapolated``, left out of the residual).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rrim.inversion.flags import FLAG_CROPPED, FLAG_EXTRAPOLATED
from rrim.io.paths import ArchiveError

log = logging.getLogger(__name__)


#: Relative tolerance on ω range comparisons (unit conversions round at ~1e-16); an ω axis stored
#: with less precision (float32) gets that precision's rounding on top.
RANGE_RTOL = 1e-9
#: A model ω point is observed when its bracketing input channels are at most this many local steps of
#: the model's ω grid apart: interpolating across a wider gap would invent the structure inside it.
GAP_STEPS = 2.0
#: A mask-aware model's trained coverage leaves at most this fraction of its ω grid unobserved between
#: the first and the last measured point: its training masks lost a band of ≤ 5 % and ≤ 4 dead channels
#: of 200 points (:func:`rrim.physics.glue_families.coverage_masks`), i.e. ≤ 7 %.
MAX_UNOBSERVED_FRACTION = 0.07


def trained_coverage(first, last, observed, omega_model, coverage, tol=0.0) -> np.ndarray:
    """Whether data measured from ``first`` to ``last`` meV (arrays (m,)) observing ``observed`` (m, n_ω)
    model points lie in a mask-aware model's trained coverage ``(start_max, end_min)`` meV: they start at
    or below start_max, end at or above end_min, and leave at most :data:`MAX_UNOBSERVED_FRACTION` of
    the model's grid unobserved between them."""
    first, last = np.asarray(first, float), np.asarray(last, float)
    inside = (omega_model >= first[:, None] - tol) & (omega_model <= last[:, None] + tol)
    holes = np.count_nonzero(inside & ~observed, axis=1)
    return ((first <= coverage[0] + tol) & (last >= coverage[1] - tol)
            & (holes <= MAX_UNOBSERVED_FRACTION * omega_model.size))


def bracket(w: np.ndarray, model_w: np.ndarray, tol: float):
    """Linear interpolation from increasing ω ``w`` (meV) onto ``model_w``: indices lo, hi into ``w``,
    weight t of hi (values beyond the ends hold the edge), and the observed model points (inside
    the data, bracketed by channels at most :data:`GAP_STEPS` local model steps apart)."""
    wc = np.clip(model_w, w[0], w[-1])
    hi = np.clip(np.searchsorted(w, wc, side="left"), 1, w.size - 1)
    lo = hi - 1
    t = np.clip((wc - w[lo]) / (w[hi] - w[lo]), 0.0, 1.0)
    inside = (model_w >= w[0] - tol) & (model_w <= w[-1] + tol)
    step = np.gradient(model_w) if model_w.size > 1 else np.ones(1)
    exact = (t == 0.0) | (t == 1.0)  # on an input point: its neighbour's distance does not matter
    return lo, hi, t, inside & (exact | (w[hi] - w[lo] <= GAP_STEPS * step + tol))


def axis_interpolation(path: Path, dim: str, w_in: np.ndarray, model_w: np.ndarray, crop: bool, stored_eps: float = 0.0,
                   measured_range=None):
    """Indices and weights mapping the input ω axis (meV, as stored) onto the model grid; ``stored_eps``:
    the machine epsilon of the stored values (their rounding is tolerated at the range's ends).
    ``measured_range`` (start_max, end_min) meV of a mask-aware model: data in its trained coverage
    need no ``crop``; the model points without data are unmeasured (``valid`` False, never read by the
    model) and nothing is flagged. Returns (lo, hi, t, valid, flags, served, tol)."""
    if not np.all(np.isfinite(w_in)):
        raise ArchiveError(f"{path}: coordinate {dim!r} contains NaN or inf")
    d = np.diff(w_in)
    if w_in.size < 2:
        raise ArchiveError(f"{path}: coordinate {dim!r} needs at least 2 points, has {w_in.size}")
    if np.any(d == 0):
        dup = w_in[1:][d == 0][0]
        raise ArchiveError(f"{path}: coordinate {dim!r} has repeated values (e.g. {dup:g} meV)")
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ArchiveError(f"{path}: coordinate {dim!r} is not monotonic")
    order = np.argsort(w_in)
    w = w_in[order]
    span = model_w[-1] - model_w[0]
    tol = RANGE_RTOL * span + 4 * stored_eps * max(abs(w[0]), abs(w[-1]), abs(model_w[-1]))
    lo_ok = w[0] <= model_w[0] + tol
    hi_ok = w[-1] >= model_w[-1] - tol
    beyond = (w[0] < model_w[0] - tol) or (w[-1] > model_w[-1] + tol)
    lo, hi, t, observed = bracket(w, model_w, tol)
    flags = 0
    served = (measured_range is not None and w[0] <= measured_range[0] + tol and w[-1] >= measured_range[1] - tol)
    if served:
        if not trained_coverage([w[0]], [w[-1]], observed[None], model_w, measured_range, tol)[0]:
            raise ArchiveError(_too_sparse(path, dim, w, model_w, observed, tol) + (
                f"; the model was trained with at most {MAX_UNOBSERVED_FRACTION:.0%} of its ω grid unobserved "
                "between the first and last measured point"))
        if not (lo_ok and hi_ok) or beyond:
            log.info("%s: coordinate %r spans %.6g–%.6g meV; the model sees the measured part of its %.6g–%.6g meV grid",
                     path, dim, w[0], w[-1], model_w[0], model_w[-1])
    else:
        inside = (model_w >= w[0] - tol) & (model_w <= w[-1] + tol)
        if np.any(inside & ~observed):
            raise ArchiveError(_too_sparse(path, dim, w, model_w, observed, tol))
        if not (lo_ok and hi_ok) or beyond:
            msg = (f"{path}: coordinate {dim!r} spans {w[0]:.9g}–{w[-1]:.9g} meV but the model's ω grid is "
                   f"{model_w[0]:.9g}–{model_w[-1]:.9g} meV")
            if measured_range is not None:
                msg += (f" (it was trained on data starting at or below {measured_range[0]:g} meV and ending at or "
                        f"above {measured_range[1]:g} meV)")
            if not crop:
                raise ArchiveError(msg + "; pass --crop to drop data beyond it and hold edge values where data are missing (flagged)")
            log.warning("%s; cropping as asked (flagged)", msg)
            flags |= FLAG_CROPPED if beyond else 0
            flags |= 0 if lo_ok and hi_ok else FLAG_EXTRAPOLATED
    valid = observed if served else (model_w >= w[0] - tol) & (model_w <= w[-1] + tol)
    return order[lo], order[hi], t, valid, flags, served, tol


def _too_sparse(path: Path, dim: str, w: np.ndarray, model_w: np.ndarray, observed: np.ndarray, tol: float) -> str:
    """The message for an ω axis whose gaps leave model points unobserved, naming the widest gap."""
    inside = (model_w >= w[0] - tol) & (model_w <= w[-1] + tol)
    k = int(np.argmax(np.diff(w)))
    return (f"{path}: coordinate {dim!r} is too sparse for the model's ω grid: {np.count_nonzero(inside & ~observed)} "
            f"of its {model_w.size} points lie in gaps wider than {GAP_STEPS:g} grid steps (widest: "
            f"{w[k]:.6g}–{w[k + 1]:.6g} meV); rrim interpolates only between channels at most {GAP_STEPS:g} steps "
            f"of the model's grid apart ({float(np.median(np.diff(model_w))):.3g} meV per step)")
