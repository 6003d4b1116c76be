"""Test problems with known answers for the classical solvers (numpy and scipy; no tests here; also used by
``benchmarks/solver_rules.py``).

Regularization-Tools-style problems (Hansen, Numer. Algorithms 6, 1 (1994); midpoint rule on n
points): ``shaw`` (1-D image restoration), ``phillips`` (a convolution), ``gravity`` (gravity
surveying), each as a :class:`rrim.MatrixKernel` operator with the exact solution x on its grid.
``self_energy``: the electron self-energy of an Eliashberg function, −Im Σ(ω) = ∫ dΩ α²F(Ω)
π[2n(Ω) + f(Ω + ω) + f(Ω − ω)] (meV), at low T on a decreasing, partly negative ω grid
(binding energies through the Fermi level), as a :class:`rrim.FunctionKernel`. ``correlated_noise``:
noisy copies with a known covariance. ``reference_bryan``: Bryan's MaxEnt by brute force, and
``published_maxent_case`` a case it solves.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize

import rrim

K_B = rrim.K_B_MEV_PER_K


def _matrix_problem(kernel, s, t, x):
    """(operator, x): A = K(s, t)·(trapezoid weights of t) as ForwardOperator builds it."""
    op = rrim.ForwardOperator(s, t, kernel=rrim.MatrixKernel(kernel(s[:, None], t[None, :]), s, t))
    return op, x


def shaw(n: int = 64):
    t = (np.arange(n) + 0.5) * np.pi / n - np.pi / 2

    def k(s, t):
        u = np.pi * (np.sin(s) + np.sin(t))
        return (np.cos(s) + np.cos(t)) ** 2 * np.sinc(u / np.pi) ** 2

    return _matrix_problem(k, t, t, 2 * np.exp(-6 * (t - 0.8) ** 2) + np.exp(-2 * (t + 0.5) ** 2))


def phillips(n: int = 64):
    t = (np.arange(n) + 0.5) * 12.0 / n - 6.0

    def phi(z):
        return np.where(np.abs(z) < 3, 1 + np.cos(np.pi * z / 3), 0.0)

    return _matrix_problem(lambda s, t: phi(s - t), t, t, phi(t))


def gravity(n: int = 64, depth: float = 0.25):
    t = (np.arange(n) + 0.5) / n
    return _matrix_problem(lambda s, t: depth * (depth ** 2 + (s - t) ** 2) ** -1.5, t, t,
                           np.sin(np.pi * t) + 0.5 * np.sin(2 * np.pi * t))


def _fermi(e, t):
    return 0.5 * (1 - np.tanh(e / (2 * t)))  # 1/(e^{e/T} + 1), overflow-free


def _bose(e, t):
    return 1.0 / np.expm1(e / t)


def self_energy_kernel(omega, Omega, temperature_mev):
    """π[2n(Ω) + f(Ω + ω) + f(Ω − ω)]: −Im Σ(ω) per unit of α²F(Ω) dΩ (dimensionless); Ω > 0, any ω."""
    t = max(temperature_mev, 1e-12)
    return np.pi * (2 * _bose(Omega, t) + _fermi(Omega + omega, t) + _fermi(Omega - omega, t))


SELF_ENERGY = rrim.FunctionKernel("self-energy (test)", self_energy_kernel,
                                  "−Im Σ(ω) = ∫ α²F(Ω) π[2n(Ω) + f(Ω+ω) + f(Ω−ω)] dΩ", positive_Omega=True)


def self_energy(n_omega: int = 121, n_Omega: int = 80, temperature: float = 6.0):
    """(operator, α²F): ω from +10 to −110 meV (decreasing), Ω 0.5…80 meV; two phonon peaks, λ ≈ 0.5."""
    omega = np.linspace(10.0, -110.0, n_omega)
    Omega = np.linspace(0.5, 80.0, n_Omega)
    op = rrim.ForwardOperator(omega, Omega, temperature=temperature, kernel=SELF_ENERGY)
    a2f = (0.25 * np.exp(-0.5 * ((Omega - 20) / 4) ** 2) + 0.35 * np.exp(-0.5 * ((Omega - 55) / 6) ** 2)) \
        * (1 - np.exp(-(Omega / 5) ** 2))
    return op, a2f


def correlated_noise(y_clean, rel: float, corr_points: float, n: int, rng):
    """(n noisy copies (n, m), covariance (m, m) meV²): σ_i = rel·max|y|·(0.5 + i/m), AR-like correlation
    exp(−|i − j|/corr_points)."""
    m = y_clean.size
    sigma = rel * np.abs(y_clean).max() * (0.5 + np.arange(m) / m)
    idx = np.arange(m)
    cov = sigma[:, None] * sigma[None, :] * np.exp(-np.abs(idx[:, None] - idx[None, :]) / corr_points)
    noise = rng.standard_normal((n, m)) @ np.linalg.cholesky(cov).T
    return y_clean + noise, cov


def reference_bryan(op, y, sigma, d, log_alphas):
    """(x (n_Ω,), α at the posterior's maximum) of Bryan's MaxEnt by brute force, for one spectrum y (n_ω,)
    meV with white noise σ meV and default model d (n_Ω,): Q = ½χ² − αS minimized over all n_Ω values of
    ln(f/m) (trust-exact, exact Hessian) at each log10 α of ``log_alphas`` (a fine, decreasing grid), the
    posterior from the full-space eigenvalues, x averaged over it. A reference for
    :class:`rrim.solvers.MaxEnt`, which works in the kept singular space."""
    dW = op.Omega.weights
    k, b, m = op.matrix / dW / sigma, y / sigma, d * dW
    ktk = k.T @ k
    v, out = np.zeros(m.size), []
    for la in log_alphas:
        a = 10 ** la

        def fun(v):
            f = m * np.exp(v)
            r = k @ f - b
            return 0.5 * r @ r - a * np.sum(f - m - f * v), f * (k.T @ r) + a * f * v

        def hess(v):
            f = m * np.exp(v)
            return f[:, None] * ktk * f[None, :] + np.diag(f * (k.T @ (k @ f - b)) + a * f * (v + 1))

        v = scipy.optimize.minimize(fun, v, jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-10}).x
        f = m * np.exp(v)
        r = k @ f - b
        lam = np.maximum(np.linalg.eigvalsh(np.sqrt(f)[:, None] * ktk * np.sqrt(f)[None, :]), 0)
        out.append((a * np.sum(f - m - f * v) - 0.5 * r @ r + 0.5 * np.sum(np.log(a / (a + lam))), f))
    logp = np.array([o[0] for o in out])
    w = np.exp(logp - logp.max())
    return sum(wi * o[1] for wi, o in zip(w / w.sum(), out)) / dW, 10 ** log_alphas[np.argmax(logp)]


def published_maxent_case():
    """(operator, α²F, y (n_ω,) meV, σ meV, flat default model, reference x, α at the reference's posterior
    peak): a published-style MaxEnt case, −Im Σ(ω) at 6 K on 61 points through E_F (40 Ω points), white
    noise 0.5 % of max y, and :func:`reference_bryan` on 300 α."""
    op, a2f = self_energy(61, 40)
    y_clean = op.forward(a2f)
    sigma = 5e-3 * y_clean.max()
    y = y_clean + sigma * np.random.default_rng(3).standard_normal(y_clean.shape)
    d = np.full(a2f.size, a2f.mean())
    return (op, a2f, y, sigma, d, *reference_bryan(op, y, sigma, d, np.arange(4.0, -2.0, -0.02)))


PROBLEMS = {"shaw": shaw, "phillips": phillips, "gravity": gravity, "self_energy": self_energy}
