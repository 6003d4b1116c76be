"""The maximum entropy method: Bryan's algorithm in the singular basis, weight α by χ² = N or by the χ²-kink.

With f_j = x_j ΔΩ_j (the glue's weight in each Ω cell) the data are y/s = K f, K = (A/s) diag(1/ΔΩ);
MaxEnt minimizes Q = ½χ² − αS with χ² = ‖K f − y/s‖²/σ² and the Shannon–Jaynes entropy
S = Σ_j [f_j − m_j − f_j ln(f_j/m_j)] = ∫dΩ [x − d − x ln(x/d)] relative to a default model d
(m = d·ΔΩ). Bryan (Eur. Biophys. J. 18, 165 (1990)): at the optimum ln(f/m) lies in the span of the
first singular vectors V of K = U Σ Vᵀ, so f = m·exp(V u) with u in the singular space (its
dimension is the number of singular values that carry signal); f > 0 by construction. For fixed α,
Levenberg–Marquardt solves αu + g(u) = 0, g = Σ Uᵀ(K f − y)/σ², with the symmetric eigen-form of
Jarrell & Gubernatis (Phys. Rep. 269, 133 (1996), §5) and a trust region on the step.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize

from . import parameter_choice as pc
from .base import Projection, check_choice, check_noise, check_operator, check_spectra, unflatten

MAXENT_RULES = ("chi2", "kink")
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
#: Most decades of α searched below α_max.
MAX_DECADES = 24
#: ln(f/m) is clipped to ±LOG_RANGE so that trial steps cannot overflow χ² (e^±200 ≈ 10^±87).
LOG_RANGE = 200.0
#: χ²-kink rule: α = 10^(c − KINK_POSITION/d) for the logistic fit a + b/(1 + e^{−d(log10 α − c)})
#: of log10 χ² (Bergeron & Tremblay, PRE 94, 023303 (2016); Kaufmann & Held's ana_cont default 2.5).
KINK_POSITION = 2.5


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

    try:
        (a, b, c, d), _ = scipy.optimize.curve_fit(logistic, log_alpha, log_chi2, p0=(lo, hi - lo, mid, 1.0),
                                                   maxfev=10000)
    except RuntimeError:  # no logistic shape: fall back to the point of steepest change
        return float(log_alpha[np.argmax(np.abs(np.gradient(log_chi2, log_alpha)))])
    if not (d > 0 and b > 0):
        return float(log_alpha[np.argmax(np.abs(np.gradient(log_chi2, log_alpha)))])
    return float(np.clip(c - KINK_POSITION / d, log_alpha.min(), log_alpha.max()))


class MaxEnt:
    """Maximum entropy inversion with Bryan's algorithm, one spectrum at a time.

    Parameters
    ----------
    operator : rrim.ForwardOperator
    rule : {"chi2", "kink"}
        α such that χ² = N (N = n_ω data points, historic MaxEnt), or the χ²-kink rule: the point
        where log χ²(α) leaves its noise-fitting plateau (:data:`KINK_POSITION`).
    noise : float or array (n,), optional
        Noise std of y in meV; estimated per spectrum when None
        (:func:`rrim.solvers.parameter_choice.estimate_noise`). State it for (nearly) noiseless
        data: there the estimate is a rounding-level floor, χ² = N is out of reach and the α
        search runs down to its end (slow, and the result fits the data as closely as it can).
    default_model : float or array (n_Ω,) or (n, n_Ω), optional
        The default model d(Ω) > 0 (units of x). None: flat, at the constant whose forward model
        fits y best in least squares (d = Σ_i (A1)_i y_i / ‖A1‖²).

    Attributes
    ----------
    x_ : (n, n_Ω) or (n_Ω,) glue functions, > 0.
    alpha_ : (n,) or () the chosen α (χ² is in units of the scaled noise).
    chi2_ : (n,) or () χ² at the solution (rule ``"chi2"``: N where reachable; if even the
        noise-fitting plateau lies above N, the plateau's end is returned and χ² > N says so).
    noise_ : (n,) or () the noise std used, meV.
    """

    def __init__(self, operator, rule: str = "chi2", noise=None, default_model=None):
        self.operator = operator
        self.rule = rule
        self.noise = noise
        self.default_model = default_model

    def fit(self, y) -> "MaxEnt":
        op = check_operator(self.operator)
        rule = check_choice(self.rule, "rule", MAXENT_RULES)
        rows = check_spectra(y, op)
        n = rows.shape[0]
        noise = check_noise(self.noise, n)
        y_scaled = rows / op.scale
        if noise is None:
            noise = pc.estimate_noise(Projection.of(op, y_scaled))
        else:
            noise = noise / op.scale
        models = self._default_models(op, y_scaled)
        dOmega = op.Omega.weights
        k = op.scaled_matrix / dOmega
        U, s, Vt = np.linalg.svd(k, full_matrices=False)
        keep = s > pc.NOISE_SINGULAR_CUTOFF * s[0]
        U, s, V = U[:, keep], s[keep], Vt[keep].T
        x, alpha, chi2 = np.empty((n, op.shape[1])), np.empty(n), np.empty(n)
        for i in range(n):
            problem = _Problem(k, U, s, V, y_scaled[i], noise[i], models[i] * dOmega)
            f, alpha[i], chi2[i] = _choose_alpha(problem, rule)
            x[i] = f / dOmega
        self.x_ = unflatten(x, np.shape(y))
        self.alpha_ = unflatten(alpha, np.shape(y))
        self.chi2_ = unflatten(chi2, np.shape(y))
        self.noise_ = unflatten(noise * op.scale, np.shape(y))
        return self

    def _default_models(self, op, y_scaled: np.ndarray) -> np.ndarray:
        """Default models (n, n_Ω) > 0."""
        n, n_Omega = y_scaled.shape[0], op.shape[1]
        if self.default_model is None:
            ones = op.scaled_matrix.sum(axis=1)
            level = y_scaled @ ones / (ones @ ones)
            bad = np.flatnonzero(level <= 0)
            if bad.size:
                raise ValueError(f"y: spectra {bad[:10].tolist()} have no positive flat fit; pass default_model")
            return np.repeat(level[:, None], n_Omega, axis=1)
        d = np.asarray(self.default_model, dtype=np.float64)
        if d.ndim > 2 or (d.ndim >= 1 and d.shape[-1] != n_Omega) or (d.ndim == 2 and d.shape[0] != n):
            raise ValueError(f"default_model: expected a scalar, ({n_Omega},) or ({n}, {n_Omega}), got shape {d.shape}")
        if not np.all(np.isfinite(d) & (d > 0)):
            raise ValueError("default_model: must be finite and > 0 everywhere")
        return np.broadcast_to(d, (n, n_Omega))


def _choose_alpha(problem: _Problem, rule: str):
    """(f, α, χ²) of one spectrum: descend α from α_max (f ≈ model) by :data:`ALPHA_STEP`."""
    n_data = problem.y.size
    # α_max = 100‖M T‖ at f = model: the entropy dominates and f stays within ~1 % of the model
    start = log_alpha = np.log10(100 * problem.m_diag[0] * problem.model.max())
    u = np.zeros(problem.s.size)
    path = []  # (log10 α, log10 χ², u)
    step = np.log10(ALPHA_STEP)
    while log_alpha > start - MAX_DECADES:
        u, chi2, f = problem.solve(10 ** log_alpha, u)
        path.append((log_alpha, np.log10(chi2), u))
        if rule == "chi2" and chi2 <= n_data:
            break
        ago = [p[1] for p in path if p[0] >= log_alpha + 1 - 1e-9]  # χ² a decade (or more) ago
        fallen = path[-1][1] < max(path[0][1] - 1, np.log10(2 * n_data))
        if fallen and ago and path[-1][1] > ago[-1] - PLATEAU_SLOPE:
            break  # χ² stopped falling: the noise-fitting plateau
        flat = len(path) > 1 and abs(path[-1][1] - path[-2][1]) < 1e-3  # still on the upper plateau
        log_alpha -= 1.0 if flat and not fallen else step
    la = np.array([p[0] for p in path])
    lc = np.array([p[1] for p in path])
    if rule == "kink":
        target = _kink_alpha(la, lc)
        u0 = path[int(np.argmin(np.abs(la - target)))][2]
        u, chi2, f = problem.solve(10 ** target, u0)
        return f, 10 ** target, chi2
    if lc[-1] > np.log10(n_data) or len(path) == 1:  # χ² = N out of reach, or met at α_max
        return f, 10 ** la[-1], chi2
    warm = {"u": path[-2][2]}

    def excess(log_a):
        warm["u"], c2, _ = problem.solve(10 ** log_a, warm["u"])
        return np.log10(c2) - np.log10(n_data)

    try:
        target = scipy.optimize.brentq(excess, la[-1], la[-2], xtol=1e-4)
    except ValueError:
        # re-solved from another warm start, χ² at the bracket ends can land on the same side of N
        # (seen on noiseless spectra): keep the last point of the path, which met χ² ≤ N
        return f, 10 ** la[-1], chi2
    u, chi2, f = problem.solve(10 ** target, warm["u"])
    return f, 10 ** target, chi2
