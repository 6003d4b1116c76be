"""Kernel K(ω, Ω, T): closed-form values, positivity, monotonicity, limits and unit invariance.

Energies in meV; tolerances are multiples of float64 ε measured against the size of the
largest term that enters K (rounding is relative to that, not to K itself).
"""
from __future__ import annotations

import numpy as np
import pytest

import rrim
from rrim.physics.kernels import allen_kernel, shulga_kernel

EPS = np.finfo(np.float64).eps
T100 = rrim.kelvin_to_mev(100.0)  # k_B·100 K = 8.617333262 meV


def u_n(u, t):
    """u·n_B(u) = u/(e^{u/T} − 1), written out independently of rrim (T > 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(u == 0, t, u / np.expm1(u / t))


def term_scale(omega, Omega, t):
    """Σ|terms| of the stable form, 2π(1 + Ω/ω) + (2π/ω)[2ω n(Ω) + (ω+Ω)n(ω+Ω) + |ω−Ω|n(|ω−Ω|)]:
    float64 rounding of K is a few ε times this (≫ εK for ω ≪ Ω, where the bracket cancels)."""
    allen = 2 * np.pi * (1 + Omega / omega)
    if t == 0:
        return allen + 0 * omega
    thermal = 2 * omega / Omega * u_n(Omega, t) + u_n(omega + Omega, t) + u_n(np.abs(omega - Omega), t)
    return allen + 2 * np.pi / omega * thermal


def coth(z):
    """coth z for z > 0 without overflow: 1 + 2/(e^{2z} − 1)."""
    return 1 + 2 / np.expm1(2 * z)


# docs/ARCHITECTURE.md §1: Einstein mode c = 1 at Ω0 = 40 meV, 1/τ(ω) = K(ω, Ω0, T).
EINSTEIN_OMEGA = np.array([10.0, 50.0, 100.0, 300.0])
EINSTEIN_T0 = np.array([0.0, 1.256637061436, 3.769911184308, 5.445427266222])
EINSTEIN_T100 = np.array([0.625463338411, 1.952076873996, 3.895804407336, 5.567749558922])


def test_einstein_table_zero_temperature():
    k = shulga_kernel(EINSTEIN_OMEGA, 40.0, 0.0)
    assert k[0] == 0.0  # ω = 10 < Ω0: exactly no phase space at T = 0
    np.testing.assert_allclose(k[1:], EINSTEIN_T0[1:], rtol=1e-10, atol=0)


def test_einstein_table_100_kelvin():
    np.testing.assert_allclose(shulga_kernel(EINSTEIN_OMEGA, 40.0, T100), EINSTEIN_T100, rtol=1e-10, atol=0)


def test_registered_kernels_evaluate_the_functions():
    w, W = np.array([5.0, 40.0, 300.0]), np.array([2.0, 40.0, 90.0, 400.0])
    np.testing.assert_array_equal(rrim.get_kernel("shulga").evaluate(w, W, T100), shulga_kernel(w[:, None], W[None], T100))
    np.testing.assert_array_equal(rrim.get_kernel("allen").evaluate(w, W, T100), allen_kernel(w[:, None], W[None]))
    assert rrim.get_kernel("shulga").evaluate(w, W, T100).shape == (3, 4)


# T in meV: from far below any float64-representable Boltzmann factor (naive coth gives 0·inf
# there) up to 10⁴ meV ≫ Ω where the thermal term dominates and the ω-dependence is a tiny
# correction of 4πT/Ω.
@pytest.mark.parametrize("t", [1e-300, 1e-6, 0.1, T100, 100.0, 1e4])
@pytest.mark.parametrize("Omega", [1e-3, 0.5, 2.0, 40.0, 400.0])
def test_non_negative_and_non_decreasing_in_omega(t, Omega):
    w = np.linspace(1e-3, 2000.0, 20001)
    k = shulga_kernel(w, Omega, t)
    assert np.all(np.isfinite(k))
    assert np.all(k >= 0)
    # non-decreasing up to rounding (where K barely depends on ω, neighbours differ by noise only)
    assert np.all(np.diff(k) >= -8 * EPS * term_scale(w[1:], Omega, t))


def test_omega_equal_Omega_is_finite_at_all_temperatures():
    for t in [0.0, 1e-300, 1e-3, T100, 1e3]:
        k = shulga_kernel(40.0, 40.0, t)
        assert np.isfinite(k) and k >= 0


@pytest.mark.parametrize("t", [1e-1, 1e-3, 1e-6])
def test_zero_temperature_limit_is_allen(t):
    """|K − K_Allen| ≤ (2π/ω)(2ωT/Ω + 2T) since u·n(u) ≤ T: → 0 linearly in T."""
    w = np.geomspace(1.0, 500.0, 301)[:, None]
    W = np.geomspace(1.0, 500.0, 257)[None, :]
    diff = np.abs(shulga_kernel(w, W, t) - allen_kernel(w, W))
    assert np.all(diff <= 4 * np.pi * t * (1 / W + 1 / w) * (1 + 1e-12))


def test_zero_temperature_is_exactly_allen():
    w = np.geomspace(1.0, 500.0, 101)[:, None]
    W = np.geomspace(1.0, 500.0, 97)[None, :]
    np.testing.assert_array_equal(shulga_kernel(w, W, 0.0), allen_kernel(w, W))
    # far below every energy the Boltzmann factors underflow to 0: Allen, except the 2πT/ω left
    # at ω = Ω exactly (|ω−Ω|·n(|ω−Ω|) → T), and no NaN from 0·inf
    k = shulga_kernel(w, W, 1e-300)
    diagonal = w == W
    np.testing.assert_array_equal(k[~diagonal], allen_kernel(w, W)[~diagonal])
    np.testing.assert_allclose(k[diagonal], (2 * np.pi * 1e-300 / w * (w == W))[diagonal], rtol=1e-12)


@pytest.mark.parametrize("lam", [rrim.CM1_PER_MEV, 1 / rrim.K_B_MEV_PER_K, 1e3, 1e-3])
@pytest.mark.parametrize("t", [0.0, 0.01, T100, 100.0])
def test_unit_invariance(lam, t, rng):
    """K(λω, λΩ, λT) = K(ω, Ω, T): switching energy units leaves K unchanged."""
    w = 10 ** rng.uniform(-2, 3, 400)
    W = 10 ** rng.uniform(-2, 3, 400)
    k = shulga_kernel(w, W, t)
    k_lam = shulga_kernel(lam * w, lam * W, lam * t)
    assert np.all(np.abs(k_lam - k) <= 32 * EPS * term_scale(w, W, t))


@pytest.mark.parametrize("t", [0.5, T100, 50.0])
@pytest.mark.parametrize("Omega", [0.1, 10.0, 40.0, 300.0])
def test_large_omega_limit(t, Omega):
    """ω → ∞: K → 2π coth(Ω/2T) − 2πΩ/ω; beyond ω = Ω + 60T the rest is below e^{−60}."""
    w = Omega + t * np.array([60.0, 100.0, 1e3, 1e6])
    limit = 2 * np.pi * coth(Omega / (2 * t)) - 2 * np.pi * Omega / w
    np.testing.assert_allclose(shulga_kernel(w, Omega, t), limit, rtol=16 * EPS * (1 + 2 * t / Omega), atol=0)


def test_large_omega_limit_zero_temperature():
    w = np.array([41.0, 100.0, 1e4])
    np.testing.assert_allclose(shulga_kernel(w, 40.0, 0.0), 2 * np.pi * (1 - 40.0 / w), rtol=4 * EPS)


@pytest.mark.parametrize("t", [0.5, T100, 50.0])
@pytest.mark.parametrize("Omega", [0.1, 10.0, 40.0, 200.0])
def test_small_omega_limit(t, Omega):
    """ω → 0: K → (πΩ/T)/sinh²(Ω/2T). K is even in ω, so the correction is O(ω²); the rounding
    error of the bracket (a difference of size O(ω)) is ~ε·min(Ω, T)/ω."""
    limit = (np.pi * Omega / t) / np.sinh(Omega / (2 * t)) ** 2
    scale = min(Omega, t)
    for delta in [1e-1, 1e-2, 1e-3, 1e-4]:  # measured: truncation ≤ 0.17·δ² on these cases
        k = shulga_kernel(delta * scale, Omega, t)
        assert abs(k / limit - 1) <= 0.25 * delta**2 + 100 * EPS / delta


def test_thermal_divergence_at_small_Omega():
    """K ~ 4πT/Ω as Ω → 0 at T > 0: why the Ω grid never contains 0."""
    W = np.array([1e-6, 1e-8])
    np.testing.assert_allclose(shulga_kernel(100.0, W, T100) * W / (4 * np.pi * T100), 1.0, rtol=1e-6)


def test_negative_or_nan_temperature_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        shulga_kernel(10.0, 20.0, -1.0)
    with pytest.raises(ValueError, match="temperature"):
        shulga_kernel(10.0, 20.0, float("nan"))
    with pytest.raises(ValueError, match="temperature"):
        allen_kernel(10.0, 20.0, -1.0)


def test_registry():
    assert {"shulga", "allen"} <= set(rrim.KERNELS)
    assert rrim.get_kernel("shulga") is rrim.KERNELS["shulga"]
    with pytest.raises(ValueError, match="kernel.*'nope'.*registered"):
        rrim.get_kernel("nope")
    with pytest.raises(ValueError, match="kernel.*already registered"):
        rrim.register_kernel(rrim.KERNELS["shulga"])
    with pytest.raises(ValueError, match="kernel"):
        rrim.get_kernel(3.0)


def test_matrix_kernel_validation():
    w, W = np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    m = rrim.MatrixKernel(np.ones((2, 3)), w, W)
    np.testing.assert_array_equal(m.evaluate(w, W), np.ones((2, 3)))
    with pytest.raises(ValueError, match="matrix.*shape"):
        rrim.MatrixKernel(np.ones((3, 2)), w, W)
    with pytest.raises(ValueError, match="matrix.*NaN"):
        rrim.MatrixKernel(np.full((2, 3), np.nan), w, W)
    with pytest.raises(ValueError, match="matrix.*grids"):
        m.evaluate(w, W + 1)
