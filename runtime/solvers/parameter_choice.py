"""Choosing the regularization: noise estimate, weight grid, GCV, L-curve and discrepancy principle.

All functions work in scaled units (y/s, A/s) on a :class:`~rrim.solvers.base.Projection` and are
vectorized over spectra and candidate weights: arrays are (n, K) for n spectra and K candidates.
A Tikhonov weight μ (like h) minimizes ‖A x − y‖² + μ‖x‖²; its filter factors are s²/(s² + μ).
(With per-point errors or an offset, "scaled units" are those of the whitened system
:class:`~rrim.solvers.base.System`, where the noise std is 1.)

No rule is trusted blindly (:func:`choose_honestly`): a choice at an edge of its range, one whose
residual lies far below the noise, one regularizing far less than the discrepancy principle while
fitting below the noise, or far less than the L-curve's corner, is flagged (``at_edge_``,
``warnings_``, a logged warning) and replaced by the discrepancy principle, GCV or the L-curve
corner, the first that gives an unflagged choice.
"""
from __future__ import annotations

import numpy as np
import scipy.special

from rrim.solvers.base import Projection, Report, System, check_spectra, unflatten

#: Singular values below this fraction of the largest carry no measurable signal: the data's
#: coefficients there (and outside the range of A) are noise, which :func:`estimate_noise` uses.
NOISE_SINGULAR_CUTOFF = 1e-8
#: Fewest pure-noise coefficients :func:`estimate_noise` accepts.
MIN_NOISE_COEFFICIENTS = 10
#: An estimated noise below this fraction of max|y| is the rounding floor of (nearly) noiseless
#: data, not a noise level: the plausibility checks then treat the noise as unknown.
NOISELESS = 1e-7
#: Tikhonov weights searched: μ/s_max² from 1e-16 (the float64 limit of the filter) to 10.
WEIGHT_RANGE = (1e-16, 10.0)
#: Grid points per decade of μ.
WEIGHTS_PER_DECADE = 20
#: Discrepancy principle: ‖A x − y‖² = τ²·m·σ², with τ² chosen so that the noise energy of m
#: white data, σ²·χ²_m, exceeds the target only with this probability: τ² = χ²_m quantile(1 − p)/m
#: (1.42 at m = 200, 1.55 at m = 121, 1.79 at m = 64). A target below the noise energy the data
#: actually carry is met only by fitting the coefficients that hold nothing but noise, at a
#: near-zero weight: with τ = 1.1 (τ² = 1.21, a 2.1-standard-deviation margin) about one spectrum
#: in 1000 got μ < 1e-10·s_max², with errors up to 7·10⁴× the best weight's (MSE 82 on the
#: experiments' σ = 1e-2, seed 2 test set); with this margin none did, worst 7× (4000 synthetic and
#: 2400 experiments spectra; ``benchmarks/solver_rules.py``, docs/SOLVER_RULES.md).
DISCREPANCY_FALSE_ALARM = 1e-4
#: A fit whose residual energy is below this fraction of the noise energy m·σ² (its residual
#: norm below half the noise) fits the noise: no smoothing solution of an ill-posed problem
#: uses three quarters of the data's degrees of freedom. Such choices are flagged.
RESIDUAL_FLOOR = 0.25
#: Where a rule's choice is flagged, these rules are tried in order, the first unflagged choice
#: replacing it: the discrepancy principle (needs a noise level: given, from ``errors``, or
#: estimated), safeguarded GCV, and last the L-curve's corner (needs no noise level and is the
#: least misled by correlated noise, but the least accurate on white noise).
FALLBACK_RULES = ("discrepancy", "gcv", "lcurve")
#: A Tikhonov weight this many times below the discrepancy principle's (or a TSVD rank this many
#: times above its rank), with a residual below the noise energy, is flagged as fitting the noise.
WEAKER_FACTOR = 1e3
#: A Tikhonov weight this many times below the L-curve corner's (for a TSVD rank k: s_k² this many
#: times below s_c² of the corner's rank c) is flagged: it fits the noise. Where GCV and the
#: discrepancy principle work, their weights lie above the corner's: on 4000 white-noise spectra of
#: the default operator it flagged one GCV choice, on the test problems with their covariance
#: stated none. On noise correlated over 3 points and not stated, Tikhonov GCV's median error fell
#: from 3–22× the best weight's to 1.8–4.7× (worst 6·10⁴× → 16×) (``benchmarks/solver_rules.py``,
#: docs/SOLVER_RULES.md).
CORNER_FACTOR = 10.0
#: An L-curve has a corner only where ‖x_μ‖ grows at least this many times from the corner down to
#: the smallest well-sampled weight (the vertical branch of noise being fitted). Noiseless spectra of
#: the default operator have none: there the curvature peak sat at up to μ = 0.5·s_max², and using it
#: as the reference flagged every GCV choice (MSE 5.65e-05 → 0.0026 on 400 held-out spectra).
VERTICAL_BRANCH = 2.0
#: ... and still grows by this factor over the last two decades of weight: without noise ‖x_μ‖ levels
#: off at the true glue's norm as μ → 0.
SATURATED = 1.05


def chi2_spread(m: int) -> float:
    """√(2/m): the relative standard deviation of a χ² residual with m degrees of freedom.

    Both safeguards below allow for this much random scatter in ‖A x − y‖² (m = data points).
    """
    return float(np.sqrt(2.0 / m))


def estimate_noise(projection: Projection) -> np.ndarray:
    """Noise std per spectrum (scaled units), shape (n,), from the coefficients that hold no signal.

    White noise of std σ stays white in any orthonormal basis, while a smooth glue's signal in the
    coefficient βᵢ = uᵢᵀy is at most sᵢ‖x‖. The coefficients with sᵢ < 1e-8·s_max, together with
    the components of y outside the range of A, are therefore pure noise for any σ ≳ 1e-7·max|y|;
    σ is their root mean square (the maximum-likelihood estimate; relative error ≈ 1/√(2k) for k
    coefficients, 5 % for the default 200 × 200 operator).
    """
    svd = projection.svd
    tail = projection.beta[:, svd.s < NOISE_SINGULAR_CUTOFF * svd.s[0]]
    if svd.U.shape[1] < svd.U.shape[0]:
        complement = np.linalg.qr(svd.U, mode="complete")[0][:, svd.U.shape[1]:]  # (m, m − r)
        tail = np.hstack([tail, projection.y @ complement])
    if tail.shape[1] < MIN_NOISE_COEFFICIENTS:
        raise ValueError(f"noise: cannot be estimated from y: only {tail.shape[1]} of its {projection.n_data} "
                         f"coefficients carry no signal (need {MIN_NOISE_COEFFICIENTS}; the kernel is too well "
                         f"conditioned on this grid for the data to reveal their noise); pass noise= (one std "
                         f"in meV per spectrum) or errors= (per-point stds or a covariance)")
    return np.sqrt(np.mean(tail ** 2, axis=1))


def noise_level(operator, y, errors=None, offset: bool = False) -> np.ndarray:
    """Noise std of spectra y (n, n_ω) or (n_ω,) in meV, estimated as :func:`estimate_noise` does.

    With ``errors`` (per-point stds in meV or a covariance in meV²) the data are whitened first and
    the result is the factor by which the stated errors must be multiplied to match the data's
    noise (≈ 1 when they are right). Shape (n,) or (). ``ValueError`` naming ``noise`` where the
    data cannot reveal their noise (too few coefficients without signal).
    """
    system = System.of(operator, errors, offset)
    rows = check_spectra(y, system.operator)
    noise = estimate_noise(Projection.of(system, system.z(rows)))
    return unflatten(noise if system.whitened else noise * system.operator.scale, np.shape(y))


def try_estimate_noise(projection: Projection) -> np.ndarray | None:
    """:func:`estimate_noise`, or None where the data cannot reveal their noise."""
    try:
        return estimate_noise(projection)
    except ValueError:
        return None


def weight_grid(s: np.ndarray) -> np.ndarray:
    """Candidate Tikhonov weights μ (scaled units), increasing, log-spaced over :data:`WEIGHT_RANGE`·s_max²."""
    lo, hi = np.log10(WEIGHT_RANGE) + 2 * np.log10(s[0])
    return np.logspace(lo, hi, int(round((hi - lo) * WEIGHTS_PER_DECADE)) + 1)


def tikhonov_filters(s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Filter factors s²/(s² + μ), shape (K, r), for weights (K,) and singular values (r,)."""
    s2 = s ** 2
    return s2 / (s2 + np.asarray(weights, dtype=np.float64)[..., None])


#: GCV ‖r‖²/(m − Σφ)² degenerates when a nearly square, nearly full-rank A (the default 200 × 200
#: A/s at 10 K: singular values down to 7e-7, then one at 4e-20) lets a small weight fit all but a few
#: data: the denominator vanishes with the residual, and the minimum sits there (errors 10⁶× the best
#: weight's on some spectra). Filters leaving fewer than this fraction of the m data as residual
#: degrees of freedom are never chosen (at 100 K the smallest weight of the grid leaves ~80 %).
MIN_DOF_FRACTION = 0.1


def gcv(projection: Projection, filters: np.ndarray) -> np.ndarray:
    """GCV(φ) = ‖A x_φ − y‖² / (m − Σφ)², shape (n, K), for filters (K, r) and m data points; +inf
    where fewer than :data:`MIN_DOF_FRACTION`·m (and at least one half) degrees of freedom are left."""
    dof = projection.n_data - filters.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = projection.residual2(filters) / dof[None, :] ** 2
    return np.where(dof[None, :] >= max(0.5, MIN_DOF_FRACTION * projection.n_data), g, np.inf)


def gcv_choice(projection: Projection, filters: np.ndarray) -> np.ndarray:
    """Index (n,) of the safeguarded GCV choice among filters (K, r) ordered by increasing regularization.

    Safeguard: on noisy spectra the GCV function of this severely ill-posed problem is nearly flat
    over many decades of small weights, and its global minimum often lies far down that plateau
    (weights 10³–10⁶ times too small, errors up to 10⁶ times the best). Differences within the
    random scatter of the residual mean nothing, so, as in the one-standard-error rule of
    cross-validation, we take the *most* regularized candidate whose GCV value is within a factor
    1 + √(2/m) of the minimum (:func:`chi2_spread`). On the default operator this removed every
    catastrophic choice (worst error 14× the best weight's instead of up to 10⁶×, 400 spectra per
    σ = 1e-5…1e-1) at the price of slight oversmoothing.
    """
    g = gcv(projection, filters)
    ok = g <= g.min(axis=1, keepdims=True) * (1 + chi2_spread(projection.n_data))
    return g.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)


def discrepancy_tau2(m: int) -> float:
    """τ² of the discrepancy principle for m data: the (1 − :data:`DISCREPANCY_FALSE_ALARM`) quantile of χ²_m, over m."""
    return float(scipy.special.chdtri(m, DISCREPANCY_FALSE_ALARM) / m)


def discrepancy_target(projection: Projection, noise: np.ndarray) -> np.ndarray:
    """τ² m σ² (n,) (:func:`discrepancy_tau2`) for noise σ (n,) in scaled units and m data points."""
    return projection.n_data * discrepancy_tau2(projection.n_data) * noise ** 2


def discrepancy_weight(projection: Projection, weights: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Morozov's discrepancy principle: the μ (n,) with ‖A x_μ − y‖² = τ² m σ², noise σ (n,) scaled."""
    return discrepancy_choice(projection, weights, noise)[0]


def discrepancy_choice(projection: Projection, weights: np.ndarray, noise: np.ndarray):
    """(μ (n,), at_edge (n,) bool) of the discrepancy principle (τ² from :func:`discrepancy_tau2`).

    The residual grows with μ; the root is interpolated in (log μ, log ‖r‖²) between grid points
    and clipped to the grid's ends (``at_edge``) when the target lies outside.
    """
    weights = np.asarray(weights, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny  # keeps the logs finite for all-zero spectra
    rho = np.log(np.maximum(projection.residual2(tikhonov_filters(projection.svd.s, weights)), tiny))
    target = np.log(np.maximum(discrepancy_target(projection, noise), tiny))[:, None]
    below = rho <= target
    k = np.clip(below.sum(axis=1) - 1, 0, len(weights) - 2)  # last grid point still below target
    rows = np.arange(len(k))
    r0, r1 = rho[rows, k], rho[rows, k + 1]
    t = np.clip((target[:, 0] - r0) / np.where(r1 > r0, r1 - r0, np.inf), 0.0, 1.0)
    t = np.where(below.all(axis=1), 1.0, np.where(~below.any(axis=1), 0.0, t))
    logw = np.log(weights)
    return np.exp(logw[k] + t * (logw[k + 1] - logw[k])), below.all(axis=1) | ~below.any(axis=1)


def lcurve_curvature(projection: Projection, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(κ, η): the signed curvature κ (n, K) of the L-curve (log ‖A x_μ − y‖, log ‖x_μ‖) at each weight μ,
    and η = ‖x_μ‖² (n, K) it is computed from.

    Analytic derivatives in t = ln μ (Hansen's formula, with df/dt = −f(1 − f) for the filter
    factors f): ρ = ‖r‖², η = ‖x‖², ρ' = 2Σ f(1−f)²β², ρ'' = −2Σ f(1−f)²(1−3f)β², η' = −ρ'/μ,
    η'' = (ρ' − ρ'')/μ. The corner is the maximum of κ; κ is −∞ where undefined (y = 0).
    """
    weights = np.asarray(weights, dtype=np.float64)
    s = projection.svd.s
    f = tikhonov_filters(s, weights)
    b2 = projection.beta ** 2
    g = f * (1 - f) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = projection.residual2(f)
        eta = (b2 / s ** 2) @ (f ** 2).T
        d_rho = 2 * b2 @ g.T
        dd_rho = -2 * b2 @ (g * (1 - 3 * f)).T
        d_eta = -d_rho / weights
        dd_eta = (d_rho - dd_rho) / weights
        # derivatives of the half-logs p = ½ ln ρ, q = ½ ln η
        dp, dq = d_rho / (2 * rho), d_eta / (2 * eta)
        ddp = dd_rho / (2 * rho) - d_rho ** 2 / (2 * rho ** 2)
        ddq = dd_eta / (2 * eta) - d_eta ** 2 / (2 * eta ** 2)
        kappa = (dp * ddq - ddp * dq) / (dp ** 2 + dq ** 2) ** 1.5
    return np.where(np.isfinite(kappa), kappa, -np.inf), eta


def lcurve_corner(projection: Projection, weights: np.ndarray):
    """(index (n,), at_edge (n,) bool) of the L-curve corner among increasing ``weights`` (K,).

    The corner is the largest local maximum of positive curvature (:func:`lcurve_curvature`)
    strictly inside the well-sampled part of the curve, s_min² ≤ μ ≤ s_max² (s_min the smallest
    singular value above :data:`NOISE_SINGULAR_CUTOFF`·s_max): outside it the curve is a point
    (μ > s_max²: x ≈ 0) or rounding noise. Where no such maximum exists, the largest curvature
    in that range is returned and flagged ``at_edge``; so is a corner with no vertical branch below
    it (‖x_μ‖ at s_min² less than :data:`VERTICAL_BRANCH`× its value there): data without noise to
    fit (noiseless spectra) give no L, and the curvature peak is then an artefact.
    """
    weights = np.asarray(weights, dtype=np.float64)
    s = projection.svd.s
    kept = s[s > NOISE_SINGULAR_CUTOFF * s[0]]
    kappa, eta = lcurve_curvature(projection, weights)
    inside = (weights >= kept[-1] ** 2) & (weights <= s[0] ** 2)
    if inside.sum() < 3:
        inside[:] = True
    kin = np.where(inside[None, :], kappa, -np.inf)
    peak = np.zeros_like(kin, dtype=bool)
    peak[:, 1:-1] = (kin[:, 1:-1] > kin[:, :-2]) & (kin[:, 1:-1] >= kin[:, 2:]) & (kin[:, 1:-1] > 0)
    has = peak.any(axis=1)
    best_peak = np.argmax(np.where(peak, kin, -np.inf), axis=1)
    corner = np.where(has, best_peak, np.argmax(kin, axis=1))
    lowest = int(np.argmax(inside))
    decades = int(round(2 * (len(weights) - 1) / np.log10(weights[-1] / weights[0])))
    vertical = ((eta[:, lowest] >= VERTICAL_BRANCH ** 2 * eta[np.arange(len(corner)), corner])
                & (eta[:, lowest] >= SATURATED ** 2 * eta[:, min(lowest + decades, len(weights) - 1)]))
    return corner, ~has | ~vertical


def choose_honestly(rule: str, choosers: dict, residual2, noise, n_data: int, report: Report,
                    weaker: dict | None = None) -> np.ndarray:
    """A rule's choice per spectrum, flagged and replaced where it cannot be trusted.

    ``choosers[name]()`` → (values (n,), at_edge (n,)) for each available rule; ``residual2(values)``
    → ‖A x − y‖² (n,) in the units of ``noise`` (n,) (None or NaN: not known, not estimable).
    ``weaker[ref](values, reference)`` → (n,) bool: ``values`` regularize far less than rule ``ref``'s
    choice ``reference`` (``ref`` one of "discrepancy", "lcurve"). A choice is flagged when

    - it sits at an edge of its range;
    - its residual is below :data:`RESIDUAL_FLOOR`·mσ² (it follows the noise);
    - it regularizes far less than the discrepancy principle while its residual is below the noise
      energy mσ² (GCV's flat minimum);
    - it regularizes far less than the L-curve's corner (:data:`CORNER_FACTOR`; noise that is
      correlated, or larger than stated or estimated, is fitted).

    A reference at an edge of its own range is not used. Flagged choices are replaced by the first
    unflagged choice of :data:`FALLBACK_RULES`, or kept (still flagged) when none is. Flags and
    fallbacks go to ``report``.
    """
    weaker = weaker or {}
    cache = {}

    def run(name):
        if name not in cache:
            cache[name] = choosers[name]()
        return cache[name]

    def below(name, ref, values):
        if ref == name or ref not in weaker or ref not in choosers:
            return np.zeros(len(values), dtype=bool)
        ref_values, ref_edge = run(ref)
        return ~ref_edge & weaker[ref](values, ref_values)

    def flags(name):
        values, edge = run(name)
        low = weak = np.zeros_like(edge)
        if noise is not None:
            r2 = residual2(values)
            low = r2 < RESIDUAL_FLOOR * n_data * noise ** 2
            weak = below(name, "discrepancy", values) & (r2 < n_data * noise ** 2)
        return values, edge, low, weak, below(name, "lcurve", values)

    values, edge, low, weak, corner = flags(rule)
    values = np.array(values)
    report.at_edge |= edge
    report.add(edge, f"rule {rule!r}: the choice sits at an edge of its search range")
    report.add(low, f"rule {rule!r}: residual below {RESIDUAL_FLOOR:g}× the noise energy (the fit follows the noise)")
    report.add(weak & ~low, f"rule {rule!r}: far less regularization than the discrepancy principle with a "
                            f"residual below the noise (the fit follows the noise)")
    report.add(corner & ~low & ~weak, f"rule {rule!r}: far less regularization than the L-curve's corner (the fit "
                                      f"follows noise that is correlated or larger than assumed)")
    bad = edge | low | weak | corner
    for name in FALLBACK_RULES:
        if not bad.any():
            break
        if name == rule or name not in choosers:
            continue
        alt, *alt_flags = flags(name)
        ok = bad & ~np.any(alt_flags, axis=0)
        values[ok] = alt[ok]
        report.add(ok, f"fell back to rule {name!r}")
        bad &= ~ok
    report.add(bad, "no fallback rule gave a trustworthy choice: kept")
    return values
