"""The maximum entropy method: Bryan's algorithm in the singular basis; α by Bryan's posterior
average, "classic" (the posterior's maximum), χ² = N or the χ²-kink.

With f_j = x_j ΔΩ_j (the glue's weight in each Ω cell) the data are y/s = K f, K = (A/s) diag(1/ΔΩ);
MaxEnt minimizes Q = ½χ² − αS with χ² = ‖K f − y/s‖²/σ² and the Shannon–Jaynes entropy
S = Σ_j [f_j − m_j − f_j ln(f_j/m_j)] = ∫dΩ [x − d − x ln(x/d)] relative to a default model d
(m = d·ΔΩ). Bryan (Eur. Biophys. J. 18, 165 (1990)): at the optimum ln(f/m) lies in the span of the
first singular vectors V of K = U Σ Vᵀ, so f = m·exp(V u) with u in the singular space (its
dimension is the number of singular values that carry signal); f > 0 by construction. For fixed α,
Levenberg–Marquardt solves αu + g(u) = 0, g = Σ Uᵀ(K f − y)/σ², with the symmetric eigen-form of
Jarrell & Gubernatis (Phys. Rep. 269, 133 (1996), §5) and a trust region on the step.

The posterior of α (Jarrell & Gubernatis §4.3, Jeffreys prior 1/α) is, per unit of ln α,
P(α|y) ∝ exp(αS − χ²/2)·Πᵢ (α/(α + γᵢ))^½, γᵢ the eigenvalues of √f (KᵀK/σ²) √f at the
solution f_α. Bryan's method averages f_α over it; "classic" takes its maximum. Given α, f has
the Gaussian posterior covariance (α diag(1/f) + KᵀK/σ²)⁻¹, whose diagonal (plus the spread of
f_α over α for Bryan) gives the error bars ``x_std_``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize

from rrim.physics.operator import ForwardOperator
from rrim.solvers import parameter_choice as pc
from rrim.solvers.base import Report, check_choice, check_operator, check_spectra, finish, prepare, unflatten

MAXENT_RULES = ("chi2", "kink", "bryan", "classic")
#: Largest Newton step, as δuᵀ T δu = Σ f (δ ln f)² relative to the current total weight Σ f.
MAX_STEP = 0.5
#: Stationarity tolerance ‖αu + g‖ ≤ tol·(‖αu‖ + ‖g‖) at each α.
NEWTON_TOL = 1e-7
MAX_NEWTON_ITERATIONS = 200
#: α is lowered by this factor per step of the search (by 10 while χ² is still on its upper
#: plateau), from α_max where x ≈ default model.
ALPHA_STEP = 10 ** 0.25
#: The descent stops when log10 χ² changes by less than this per decade of α (χ² plateau).
PLATEAU_SLOPE = 0.01
#: Rule "chi2": a plateau above N only ends the descent once a decade of α lowers log10 χ² by less
#: than this fraction of its remaining distance to log10 N, so that a slow approach to N is followed
#: down (χ² fell 1.0282 → 1.0050·N over the last decade before the plain plateau test stopped there,
#: although χ² = N was reached 0.3 decades further; ``benchmarks/solver_rules.py``). Where N is
#: still not reached, the point where the plain test saw the plateau is returned, not the end of
#: the descent (whose tiny α fits the noise).
CHI2_GAP_FRACTION = 0.1
#: Most decades of α searched below α_max.
MAX_DECADES = 24
#: ln(f/m) is clipped to ±LOG_RANGE so that trial steps cannot overflow χ² (e^±200 ≈ 10^±87).
LOG_RANGE = 200.0
#: χ²-kink rule: α = 10^(c − KINK_POSITION/d) for the logistic fit a + b/(1 + e^{−d(log10 α − c)})
#: of log10 χ² (Bergeron & Tremblay, PRE 94, 023303 (2016); Kaufmann & Held's ana_cont default 2.5).
KINK_POSITION = 2.5
#: Zeros of a default model are floored at this fraction of its maximum (the entropy needs
#: d > 0): the spectrum stays free to be large there if the data demand it, but costs entropy.
DEFAULT_MODEL_FLOOR = 1e-6
#: Posterior scan: the descent goes on until ln P(α|y) is this far below its maximum, and
#: the part of the scan within it is resampled every :data:`POSTERIOR_STEP` decades of α.
POSTERIOR_DEPTH = 12.0
POSTERIOR_STEP = 0.05
#: At most this many resampled α (the step widens beyond POSTERIOR_STEP for a wide posterior).
POSTERIOR_POINTS = 100
#: χ² = N is bisected in log10 α to this tolerance (no root finder that can refuse a bracket).
CHI2_BISECTIONS = 40


class _Problem:
    """One spectrum's MaxEnt problem in the kept singular space (shapes: r kept values, N = n_ω)."""

    def __init__(self, k, U, s, V, y, sigma, model):
        self.k, self.U, self.s, self.V = k, U, s, V
        self.y, self.sigma, self.model = y, sigma, model
        self.uy = U.T @ y
        self.m_diag = s ** 2 / sigma ** 2  # M = Σ Uᵀ diag(1/σ²) U Σ, diagonal for white noise

    def state(self, u):
        """f, χ², g, entropy term for the point u."""
        lnf = np.clip(self.V @ u, -LOG_RANGE, LOG_RANGE)
        f = self.model * np.exp(lnf)
        res = self.k @ f - self.y
        chi2 = float(res @ res) / self.sigma ** 2
        g = self.s * (self.U.T @ res) / self.sigma ** 2
        entropy = float(np.sum(f - self.model - f * lnf))
        return f, chi2, g, entropy

    def solve(self, alpha: float, u: np.ndarray):
        """Levenberg–Marquardt on αu + g(u) = 0 from u; returns (u, χ², f).

        With M = D², the Newton system ((α + λ)I + M T) δu = −(αu + g) is symmetric in w = D⁻¹δu:
        ((α + λ)I + D T D) w = −D⁻¹(αu + g). One eigendecomposition D T D = Q Γ Qᵀ per iteration
        gives the step for every λ; λ is the smallest that keeps δuᵀTδu = Σ Γ w² within the trust
        region (:data:`MAX_STEP` of Σ f), which shrinks while a step fails to lower Q.
        """
        d = np.sqrt(self.m_diag)
        f, chi2, g, ent = self.state(u)
        q = 0.5 * chi2 - alpha * ent
        bound = MAX_STEP
        for _ in range(MAX_NEWTON_ITERATIONS):
            grad = alpha * u + g
            if np.linalg.norm(grad) <= NEWTON_TOL * (np.linalg.norm(alpha * u) + np.linalg.norm(g)):
                break
            vd = self.V * d
            gam, qv = np.linalg.eigh((vd * f[:, None]).T @ vd)  # D T D, T = Vᵀ diag(f) V
            gam = np.maximum(gam, 0.0)
            c = qv.T @ (grad / d)
            while True:
                lm = _marquardt(gam * c ** 2, alpha + gam, bound * f.sum())
                u_new = u - d * (qv @ (c / (alpha + lm + gam)))
                f_new, chi2_new, g_new, ent_new = self.state(u_new)
                q_new = 0.5 * chi2_new - alpha * ent_new
                if q_new <= q or bound < 1e-12:
                    break
                bound /= 4
            converged = abs(q - q_new) <= 1e-14 * abs(q)
            u, f, chi2, g, q = u_new, f_new, chi2_new, g_new, q_new
            bound = min(2 * bound, MAX_STEP)
            if converged:
                break
        return u, chi2, f


def _marquardt(weights: np.ndarray, d: np.ndarray, bound: float) -> float:
    """The smallest λ ≥ 0 with Σ wᵢ/(dᵢ + λ)² ≤ bound (Hebden's Newton iteration on 1/‖z‖)."""
    lam = 0.0
    for _ in range(50):
        z2 = np.sum(weights / (d + lam) ** 2)
        if z2 <= bound * 1.01:
            return lam
        norm = np.sqrt(z2)
        dnorm = -np.sum(weights / (d + lam) ** 3) / norm
        lam += (1 / norm - 1 / np.sqrt(bound)) * norm ** 2 / dnorm  # d(1/‖z‖)/dλ = −(d‖z‖/dλ)/‖z‖²
    return lam


def _kink_alpha(log_alpha: np.ndarray, log_chi2: np.ndarray) -> float:
    """log10 α of the χ²-kink: logistic fit of log10 χ² against log10 α (see :data:`KINK_POSITION`)."""
    lo, hi = log_chi2.min(), log_chi2.max()
    mid = log_alpha[np.argmin(np.abs(log_chi2 - 0.5 * (lo + hi)))]

    def logistic(x, a, b, c, d):
        return a + b / (1 + np.exp(np.clip(-d * (x - c), -700, 700)))

    if log_alpha.size < 2:
        return float(log_alpha[0])
    try:
        if log_alpha.size < 5:
            raise RuntimeError("too few points for a four-parameter fit")
        (a, b, c, d), _ = scipy.optimize.curve_fit(logistic, log_alpha, log_chi2, p0=(lo, hi - lo, mid, 1.0),
                                                   maxfev=10000)
    except (RuntimeError, ValueError):  # no logistic shape: fall back to the point of steepest change
        return float(log_alpha[np.argmax(np.abs(np.gradient(log_chi2, log_alpha)))])
    if not (d > 0 and b > 0):
        return float(log_alpha[np.argmax(np.abs(np.gradient(log_chi2, log_alpha)))])
    return float(np.clip(c - KINK_POSITION / d, log_alpha.min(), log_alpha.max()))


@dataclass(eq=False)
class MaxEnt:
    """Maximum entropy inversion with Bryan's algorithm, one spectrum at a time.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rule : {"chi2", "kink", "bryan", "classic"}
        α such that χ² = N (N data points, historic MaxEnt); the χ²-kink rule, where log χ²(α)
        leaves its noise-fitting plateau (:data:`KINK_POSITION`); Bryan's average of the spectrum
        over the posterior P(α|y); or "classic", the posterior's maximum.
    noise : float or array (n,), optional
        Noise std of y in meV; estimated per spectrum when None and no ``errors`` are given
        (:func:`rrim.solvers.parameter_choice.estimate_noise`). State it for (nearly) noiseless
        data: there the estimate is a rounding-level floor, χ² = N is out of reach and the α
        search runs down to its end (slow, and the result fits the data as closely as it can).
    default_model : float or array (n_Ω,) or (n, n_Ω), optional
        The default model d(Ω) ≥ 0 (units of x), positive somewhere; zeros are floored at
        :data:`DEFAULT_MODEL_FLOOR`·max d. None: flat, at the constant whose forward model fits y
        best in least squares (if that constant is ≤ 0, its magnitude; ``warnings_`` says so).
    errors, offset : as for :class:`rrim.solvers.Tikhonov` (χ² then counts the whitened residual).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions, > 0.
    x_std_ : (n, n_Ω) or (n_Ω,) error bars on x_: the Gaussian posterior std of x at the chosen α
        (for Bryan, over P(α|y), including the spread of x_α), units of x.
    alpha_ : (n,) or () the chosen α (Bryan: the posterior mean of α).
    chi2_ : (n,) or () χ² of x_ (rule ``"chi2"``: N where reachable; if even the noise-fitting
        plateau lies above N, the point where χ² levels off (:data:`PLATEAU_SLOPE`) is returned and
        χ² > N says so; if the default model already has χ² ≤ N, it is returned at the largest α).
    posterior_ : (alpha (K,), P (K,)) the scanned α and P(α|y) per unit ln α, normalized on
        that grid (a list of such pairs for several spectra; rule ``"chi2"`` scans only down to χ² = N).
    noise_ : (n,) or () the noise std used, meV (with ``errors``: 1, a factor on them).
    offset_ : (n,) or () c in meV (``offset=True`` only).
    warnings_ : tuple of str per spectrum (a list of them for several spectra).
    """

    operator: ForwardOperator
    rule: str = "chi2"
    noise: float | np.ndarray | None = None
    default_model: np.ndarray | None = None
    errors: np.ndarray | None = None
    offset: bool = False

    def fit(self, y) -> "MaxEnt":
        op = check_operator(self.operator)
        rule = check_choice(self.rule, "rule", MAXENT_RULES)
        rows = check_spectra(y, op)
        n = rows.shape[0]
        system, proj, noise = prepare(self, op, rows, need_noise=True)
        report = Report(n)
        zero = ~(noise > 0)
        if zero.any():  # exactly noiseless data (e.g. y = 0): χ² needs a scale
            noise = np.where(zero, np.finfo(np.float64).eps * np.maximum(np.abs(proj.y).max(axis=1), 1.0), noise)
            report.add(zero, "the noise estimate is zero: floored at float64 rounding; state noise=")
        models = self._default_models(system, proj.y, report)
        dOmega = op.Omega.weights
        k = system.matrix / dOmega
        U, s, Vt = np.linalg.svd(k, full_matrices=False)
        keep = s > pc.NOISE_SINGULAR_CUTOFF * s[0]
        U, s, V = U[:, keep], s[keep], Vt[keep].T
        x, std, alpha, chi2 = (np.empty((n, op.shape[1])), np.empty((n, op.shape[1])), np.empty(n), np.empty(n))
        posterior = []
        for i in range(n):
            problem = _Problem(k, U, s, V, proj.y[i], noise[i], models[i] * dOmega)
            f, var, alpha[i], chi2[i], post = _choose_alpha(problem, rule)
            x[i], std[i] = f / dOmega, np.sqrt(var) / dOmega
            posterior.append(post)
        shape = np.shape(y)
        self.x_ = unflatten(x, shape)
        self.x_std_ = unflatten(std, shape)
        self.alpha_ = unflatten(alpha, shape)
        self.chi2_ = unflatten(chi2, shape)
        self.posterior_ = posterior[0] if len(shape) == 1 else posterior
        finish(self, system, rows, x, noise, shape)
        report.publish(self, shape, f"MaxEnt(rule={rule!r})", edges=False)
        return self

    def _default_models(self, system, z: np.ndarray, report) -> np.ndarray:
        """Default models (n, n_Ω) > 0."""
        n, n_Omega = z.shape[0], system.matrix.shape[1]
        if self.default_model is None:
            ones = system.matrix.sum(axis=1)
            level = z @ ones / (ones @ ones)
            bad = level <= 0
            if bad.any():
                level = np.where(bad, np.sqrt(np.mean(z ** 2, axis=1) / np.mean(ones ** 2)), level)
                level = np.where(level > 0, level, 1.0)
                report.add(bad, "no positive flat least-squares default model: its magnitude used instead")
            return np.repeat(level[:, None], n_Omega, axis=1)
        d = np.asarray(self.default_model, dtype=np.float64)
        if d.ndim > 2 or (d.ndim >= 1 and d.shape[-1] != n_Omega) or (d.ndim == 2 and d.shape[0] != n):
            raise ValueError(f"default_model: expected a scalar, ({n_Omega},) or ({n}, {n_Omega}), got shape {d.shape}")
        d = np.broadcast_to(d, (n, n_Omega))
        if not np.all(np.isfinite(d) & (d >= 0)):
            raise ValueError("default_model: must be finite and ≥ 0 everywhere (zeros are floored)")
        top = d.max(axis=1)
        if np.any(top <= 0):
            raise ValueError(f"default_model: must be > 0 somewhere, zero everywhere for spectra "
                             f"{np.flatnonzero(top <= 0)[:10].tolist()}")
        return np.maximum(d, DEFAULT_MODEL_FLOOR * top[:, None])


@dataclass
class _Point:
    """The MaxEnt solution at one α: log10 α, χ², entropy S, ln P(α|y), u, f, and the eigen-data of D T D."""

    la: float
    chi2: float
    entropy: float
    logp: float
    u: np.ndarray
    f: np.ndarray
    gam: np.ndarray
    qv: np.ndarray

    @property
    def lc(self) -> float:
        return float(np.log10(max(self.chi2, np.finfo(np.float64).tiny)))

    @property
    def good(self) -> float:
        """Number of good measurements Σ γ/(α + γ)."""
        return float(np.sum(self.gam / (10 ** self.la + self.gam)))


def _point(problem: _Problem, la: float, u: np.ndarray) -> _Point:
    alpha = 10 ** la
    u, chi2, f = problem.solve(alpha, u)
    _, _, _, ent = problem.state(u)
    vd = problem.V * np.sqrt(problem.m_diag)
    gam, qv = np.linalg.eigh((vd * f[:, None]).T @ vd)
    gam = np.maximum(gam, 0.0)
    logp = alpha * ent - 0.5 * chi2 + 0.5 * float(np.sum(np.log(alpha / (alpha + gam))))
    return _Point(la, chi2, ent, logp, u, f, gam, qv)


def _variance(problem: _Problem, p: _Point) -> np.ndarray:
    """diag (α diag(1/f) + KᵀK/σ²)⁻¹ (n_Ω,) at ``p``, in the kept singular space (Woodbury)."""
    alpha = 10 ** p.la
    e = (np.sqrt(p.f)[:, None] * (problem.V * np.sqrt(problem.m_diag))) @ p.qv  # (n_Ω, r)
    return np.maximum(p.f / alpha * (1 - (e ** 2) @ (1 / (alpha + p.gam))), 0.0)


def _choose_alpha(problem: _Problem, rule: str):
    """(f, var f, α, χ², (α (K,), P (K,))) of one spectrum: descend α from α_max (f ≈ model).

    The descent lowers log10 α by a decade while χ² sits on its upper plateau, else by
    :data:`ALPHA_STEP`. It stops at χ² ≤ N (rule "chi2"), or once χ² has left the upper plateau
    (at least one good measurement, or χ² a decade down) and stopped falling (for "chi2": stopped
    approaching N, :data:`CHI2_GAP_FRACTION`); for the posterior rules also only once ln P is
    :data:`POSTERIOR_DEPTH` below its maximum. The upper plateau is
    recognized by the number of good measurements, not by χ²'s value, so a default model that
    already fits (χ² < 2N) does not end the search.
    """
    n_data = problem.y.size
    start = la = np.log10(100 * problem.m_diag[0] * problem.model.max())
    u = np.zeros(problem.s.size)
    path: list[_Point] = []
    levelled = None  # the first point where χ² fell by < PLATEAU_SLOPE over a decade, once fallen
    step = np.log10(ALPHA_STEP)
    while la > start - MAX_DECADES:
        p = _point(problem, la, u)
        u = p.u
        path.append(p)
        if rule == "chi2" and p.chi2 <= n_data:
            break
        fallen = p.good >= 1.0 or p.lc < path[0].lc - 1
        ago = [q for q in path if q.la >= la + 1 - 1e-9]  # a decade (or more) ago
        slope = PLATEAU_SLOPE if rule != "chi2" else min(PLATEAU_SLOPE, CHI2_GAP_FRACTION * (p.lc - np.log10(n_data)))
        plateau = fallen and ago and p.lc > ago[-1].lc - slope
        if levelled is None and fallen and ago and p.lc > ago[-1].lc - PLATEAU_SLOPE:
            levelled = p
        if rule in ("bryan", "classic"):
            top = max(q.logp for q in path)
            if fallen and p.logp < top - POSTERIOR_DEPTH and (plateau or top > path[0].logp):
                break
        elif plateau:
            break
        flat = len(path) > 1 and abs(path[-1].lc - path[-2].lc) < 1e-3  # still on the upper plateau
        la -= 1.0 if flat and not fallen else step
    if rule == "chi2":
        chosen = _chi2_point(problem, path, n_data, levelled)
    elif rule == "kink":
        target = _kink_alpha(np.array([q.la for q in path]), np.array([q.lc for q in path]))
        chosen = _point(problem, target, path[int(np.argmin([abs(q.la - target) for q in path]))].u)
    else:
        path = _resample(problem, path)
    las = np.array([q.la for q in path])
    logp = np.array([q.logp for q in path])
    order = np.argsort(las)
    las, logp = las[order], logp[order]
    prob = np.exp(logp - logp.max())
    weights = _trapezoid(las) * prob
    prob = prob / max(weights.sum(), np.finfo(np.float64).tiny) / np.log(10)  # per unit ln α
    posterior = (10 ** las, prob)
    if rule == "classic":
        chosen = _classic_point(path)
    if rule != "bryan":
        return chosen.f, _variance(problem, chosen), 10 ** chosen.la, chosen.chi2, posterior
    w = weights / weights.sum()
    pts = [path[j] for j in order]
    f = sum(wi * q.f for wi, q in zip(w, pts))
    var = sum(wi * (_variance(problem, q) + (q.f - f) ** 2) for wi, q in zip(w, pts) if wi > 1e-12)
    chi2 = float(np.sum((problem.k @ f - problem.y) ** 2)) / problem.sigma ** 2
    return f, var, float(np.sum(w * 10 ** las)), chi2, posterior


def _trapezoid(x: np.ndarray) -> np.ndarray:
    """Trapezoid weights on increasing nodes x (K,); a single node gets weight 1."""
    if x.size == 1:
        return np.ones(1)
    d = np.diff(x)
    w = np.zeros_like(x)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w


def _resample(problem: _Problem, path: list) -> list:
    """The scan, resampled every :data:`POSTERIOR_STEP` decades (at most :data:`POSTERIOR_POINTS` points)
    where ln P ≥ max − :data:`POSTERIOR_DEPTH`."""
    las = np.array([q.la for q in path])
    logp = np.array([q.logp for q in path])
    live = np.flatnonzero(logp >= logp.max() - POSTERIOR_DEPTH)
    lo = las[min(live.max() + 1, len(path) - 1)]  # one scan point beyond on each side (las decreases)
    hi = las[max(live.min() - 1, 0)]
    step = max(POSTERIOR_STEP, (hi - lo) / (POSTERIOR_POINTS - 1))
    grid = np.arange(hi, lo - 1e-12, -step)
    if grid.size < 2:
        return path
    out = []
    u = path[max(live.min() - 1, 0)].u
    for la in grid:
        p = _point(problem, float(la), u)
        u = p.u
        out.append(p)
    return out


def _classic_point(path: list) -> _Point:
    """The solution at the maximum of ln P(α|y) on the resampled grid (within POSTERIOR_STEP/2 decades)."""
    return path[int(np.argmax([q.logp for q in path]))]


def _chi2_point(problem: _Problem, path: list, n_data: int, levelled: _Point | None) -> _Point:
    """The point with χ² = N: bisection in log10 α between the last two scan points (never refuses).

    If χ² > N at the end of the scan (out of reach), the point where χ² levelled off (``levelled``,
    else the end) is returned; if χ² ≤ N already at α_max, that point.
    """
    last = path[-1]
    if last.chi2 > n_data:
        return last if levelled is None else levelled
    if len(path) == 1:
        return last
    lo, hi = last, path[-2]  # χ² ≤ N at lo (smaller α), > N at hi
    for _ in range(CHI2_BISECTIONS):
        if hi.la - lo.la < 1e-6:
            break
        mid = _point(problem, 0.5 * (lo.la + hi.la), lo.u)
        if mid.chi2 <= n_data:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda q: abs(np.log(q.chi2 / n_data)))
