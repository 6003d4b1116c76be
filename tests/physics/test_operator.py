"""ForwardOperator: A·x against closed forms with the trapezoid's convergence order, the dot test
for every kernel, iterated Tikhonov against its SVD formulas, the preconditioner P, descriptions,
λ and ω_ln. Energies in meV, temperatures in K unless a name says otherwise."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import erf, spence

import rrim

EPS = np.finfo(np.float64).eps
T100 = rrim.kelvin_to_mev(100.0)

# --- closed forms of docs/ARCHITECTURE.md §1 -------------------------------------------------------

BOX = dict(c=0.7, lo=40.0, hi=120.0)
GAUSS = dict(a=0.8, centre=120.0, width=15.0)  # e^{−Ω0²/2s²} = e^{−32}: nothing missed below Ω_min


def box_zero_t(w, c, lo, hi):
    """Box I²χ = c on [lo, hi], T = 0."""
    return np.where(w <= lo, 0.0, np.where(w <= hi, np.pi * c * (w - lo) ** 2 / w,
                                           2 * np.pi * c * (hi - lo) * (1 - (lo + hi) / (2 * w))))


def _F(u, t):
    """(2T)²[x²/2 + x ln(1 − e^{−2x}) − ½Li₂(e^{−2x}) + π²/12], x = u/2T, u > 0."""
    x = u / (2 * t)
    return (2 * t) ** 2 * (x**2 / 2 + x * np.log(-np.expm1(-2 * x)) - 0.5 * spence(1 - np.exp(-2 * x)) + np.pi**2 / 12)


def _G(v, t):
    return np.sign(v) * _F(np.abs(v), t)


def _ln_sinh(z):
    return z + np.log1p(-np.exp(-2 * z)) - np.log(2)


def box_finite_t(w, c, lo, hi, t):
    """Box I²χ = c on [lo, hi] at k_B·T = t (meV); ω must differ from lo and hi."""
    log_ratio = _ln_sinh(hi / (2 * t)) - _ln_sinh(lo / (2 * t))
    return (np.pi * c / w) * (4 * t * w * log_ratio - (_F(w + hi, t) - _F(w + lo, t)) + (_G(w - lo, t) - _G(w - hi, t)))


def box_infinite_omega(w, c, lo, hi, t):
    """1/τ(∞) − 2πM1/ω = 2π∫c coth(Ω/2T)dΩ − 2πc(hi² − lo²)/(2ω) for a box."""
    return 2 * np.pi * c * 2 * t * (_ln_sinh(hi / (2 * t)) - _ln_sinh(lo / (2 * t))) - np.pi * c * (hi**2 - lo**2) / w


def gaussian_zero_t(w, a, centre, width):
    r2 = np.sqrt(2) * width
    g1 = a * width * np.sqrt(np.pi / 2) * (erf((w - centre) / r2) + erf(centre / r2))
    g2 = centre * g1 + a * width**2 * (np.exp(-centre**2 / (2 * width**2)) - np.exp(-(w - centre) ** 2 / (2 * width**2)))
    return 2 * np.pi / w * (w * g1 - g2)


# --- convergence under grid refinement ---------------------------------------------------------

# ω on nodes of the coarsest Ω grid, so the kink of K at Ω = ω and the box edges sit on nodes of
# every refined grid and the trapezoid rule shows its clean asymptotic order.
OMEGA = np.array([20.0, 60.0, 100.0, 148.0, 300.0, 5000.0])
N_POINTS = [100, 200, 400, 800, 1600]


def refined_results(temperature_k, glue):
    """A·x on Ω grids Ω_j = j·400/N, j = 1…N, for each N in N_POINTS → (len(N_POINTS), len(OMEGA))."""
    out = []
    for n in N_POINTS:
        Omega = np.arange(1, n + 1) * (400.0 / n)
        op = rrim.ForwardOperator(OMEGA, Omega, temperature=temperature_k)
        out.append(op.forward(glue(Omega)))
    return np.array(out)


def box(Omega, edge_value):
    x = BOX["c"] * ((Omega >= BOX["lo"]) & (Omega <= BOX["hi"]))
    edges = np.isin(Omega, [BOX["lo"], BOX["hi"]])
    assert edges.sum() == 2
    return np.where(edges, edge_value, x)


def observed_orders(results, reference):
    err = np.abs(results - reference)
    return np.log2(err[:-1] / err[1:]), err


def test_box_zero_temperature_unresolved_edges_converges_at_order_one():
    """x = c on the edge nodes too: the trapezoid adds half a cell of K at each edge, O(h)."""
    ref = box_zero_t(OMEGA, **BOX)
    res = refined_results(0.0, lambda W: box(W, BOX["c"]))
    assert np.all(res[:, 0] == 0)  # ω ≤ Ω1: exactly no phase space
    orders, err = observed_orders(res[:, 1:], ref[1:])
    np.testing.assert_allclose(orders, 1.0, atol=0.1)
    # the leading error term is exactly that half cell: (h/2)·c·[K(ω, Ω1) + K(ω, Ω2)]
    h = 400.0 / N_POINTS[-1]
    half_cells = h / 2 * BOX["c"] * rrim.allen_kernel(OMEGA[1:], np.array([[BOX["lo"]], [BOX["hi"]]])).sum(0)
    np.testing.assert_allclose(res[-1, 1:] - ref[1:], half_cells, rtol=1e-9)


def test_box_zero_temperature_with_half_edges_is_exact():
    """With x = c/2 on the edge nodes the trapezoid integrates c·1_[Ω1,Ω2] exactly against the
    piecewise-linear Allen kernel (kink on a node): only rounding remains."""
    ref = box_zero_t(OMEGA, **BOX)
    res = refined_results(0.0, lambda W: box(W, BOX["c"] / 2))
    np.testing.assert_allclose(res, np.broadcast_to(ref, res.shape), rtol=8 * EPS * N_POINTS[-1] ** 0.5, atol=0)


def test_box_finite_temperature_converges_at_order_one_then_two():
    ref = box_finite_t(OMEGA, t=T100, **BOX)
    orders, _ = observed_orders(refined_results(100.0, lambda W: box(W, BOX["c"])), ref)
    np.testing.assert_allclose(orders, 1.0, atol=0.1)  # unresolved edges
    orders, err = observed_orders(refined_results(100.0, lambda W: box(W, BOX["c"] / 2)), ref)
    np.testing.assert_allclose(orders, 2.0, atol=0.1)  # trapezoid on a smooth integrand
    assert np.all(err[-1] / ref < 1e-4)  # at h = 0.25 meV


def test_large_omega_limit_of_A_x_at_finite_temperature():
    """1/τ(ω) → 2π∫I²χ coth(Ω/2T)dΩ − 2πM1/ω (exact beyond ω = Ω_max + 60T), at order 2."""
    ref = box_infinite_omega(OMEGA[-1], t=T100, **BOX)
    res = refined_results(100.0, lambda W: box(W, BOX["c"] / 2))[:, -1]
    np.testing.assert_allclose(ref, box_finite_t(OMEGA[-1], t=T100, **BOX), rtol=1e-12)
    orders, err = observed_orders(res, ref)
    np.testing.assert_allclose(orders, 2.0, atol=0.1)
    # and A x is the trapezoid sum of that limit's integrand: the identity holds to rounding
    Omega = np.arange(1, 401) * 1.0
    w = np.array([5000.0, 1e4])
    op = rrim.ForwardOperator(w, Omega, temperature=100.0)
    x = box(Omega, BOX["c"] / 2)
    coth = 1 + 2 / np.expm1(Omega / T100)
    expected = 2 * np.pi * (x * coth) @ op.Omega.weights - 2 * np.pi * (x * Omega) @ op.Omega.weights / w
    np.testing.assert_allclose(op.forward(x), expected, rtol=32 * EPS)


def test_gaussian_zero_temperature_converges_at_order_two():
    ref = gaussian_zero_t(OMEGA, **GAUSS)
    res = refined_results(0.0, lambda W: GAUSS["a"] * np.exp(-0.5 * ((W - GAUSS["centre"]) / GAUSS["width"]) ** 2))
    inside = (OMEGA > 40) & (OMEGA < 200)  # the kink of K at Ω = ω crosses the glue: O(h²)
    orders, err = observed_orders(res[:, inside], ref[inside])
    np.testing.assert_allclose(orders, 2.0, atol=0.1)
    # beyond the support the integrand is smooth and ~0 at both ends: spectrally accurate
    np.testing.assert_allclose(res[:, OMEGA >= 300], np.broadcast_to(ref[OMEGA >= 300], (len(N_POINTS), 2)), rtol=1e-12)


def test_moment_line_beyond_support_at_zero_temperature():
    """T = 0, ω beyond the glue's support: A x = 2πM0 − 2πM1/ω with the trapezoid moments (to
    rounding), which for a Gaussian equal the exact moments a s √(2π)·(1, Ω0)."""
    Omega = np.linspace(1.0, 400.0, 400)
    w = np.array([400.0, 450.0, 1e3, 1e5])
    op = rrim.ForwardOperator(w, Omega, temperature=0.0)
    x = GAUSS["a"] * np.exp(-0.5 * ((Omega - GAUSS["centre"]) / GAUSS["width"]) ** 2)
    m0, m1 = x @ op.Omega.weights, (Omega * x) @ op.Omega.weights
    np.testing.assert_allclose(op.forward(x), 2 * np.pi * m0 - 2 * np.pi * m1 / w, rtol=32 * EPS)
    m0_exact = GAUSS["a"] * GAUSS["width"] * np.sqrt(2 * np.pi)
    np.testing.assert_allclose([m0, m1], [m0_exact, GAUSS["centre"] * m0_exact], rtol=1e-12)


# --- the dot test, for every kernel ------------------------------------------------------------

def _matrix_kernel_operator():
    w, W = np.linspace(2.0, 400.0, 37), np.geomspace(1.0, 300.0, 29)
    matrix = np.random.default_rng(7).uniform(0.0, 6.0, (37, 29))
    return rrim.ForwardOperator(w, W, kernel=rrim.MatrixKernel(matrix, w, W))  # a matrix has no temperature


OPERATORS = {name: (lambda name=name: rrim.ForwardOperator(np.linspace(2.0, 400.0, 37), np.geomspace(1.0, 300.0, 29),
                                                           temperature=30.0, kernel=name))
             for name in rrim.KERNELS}
OPERATORS["matrix"] = _matrix_kernel_operator


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_dot_test(name, rng):
    """⟨Ax, y⟩ = ⟨x, Aᵀy⟩ through ForwardOperator.forward/adjoint, batched, to rounding."""
    op = OPERATORS[name]()
    x = rng.standard_normal((3, op.shape[1]))
    y = rng.standard_normal((3, op.shape[0]))
    lhs = np.sum(op.forward(x) * y, axis=-1)
    rhs = np.sum(x * op.adjoint(y), axis=-1)
    bound = sum(op.shape) * EPS * np.einsum("bi,ij,bj->b", np.abs(y), np.abs(op.matrix), np.abs(x))
    assert np.all(np.abs(lhs - rhs) <= bound)
    assert op.matrix.shape == op.shape and np.all(np.isfinite(op.matrix))
    np.testing.assert_allclose(op.scaled_matrix * op.scale, op.matrix, rtol=EPS)


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_public_dot_test_passes_for_every_kernel_and_fails_for_a_wrong_adjoint(name):
    from scipy.sparse.linalg import LinearOperator

    op = OPERATORS[name]()
    assert rrim.dot_test(op, rng=1)
    a = op.matrix
    wrong = LinearOperator(op.shape, matvec=lambda x: a @ x, rmatvec=lambda y: (a + 1e-9 * np.abs(a).max()).T @ y,
                           dtype=np.float64)
    assert not rrim.dot_test(wrong, rng=1)


def test_forward_operator_is_a_scipy_linear_operator(small_operator, rng):
    """scipy's solvers take a ForwardOperator as it is: columns in, columns out, the same A."""
    from scipy.sparse.linalg import aslinearoperator, lsqr

    op = small_operator
    lin = aslinearoperator(op)
    x = rng.uniform(0.0, 1.0, (op.shape[1], 2))
    assert lin.shape == op.shape and lin.dtype == np.float64
    np.testing.assert_allclose(lin.matvec(x[:, 0]), op.forward(x[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(lin.matmat(x), op.forward(x.T).T, rtol=1e-14)
    np.testing.assert_allclose(lin.rmatmat(op.matmat(x)), op.adjoint(op.forward(x.T)).T, rtol=1e-14)
    y = op.matvec(x[:, 0])
    sol = lsqr(op, y, damp=1e-3, atol=1e-12, btol=1e-12)[0]
    assert np.linalg.norm(op.matvec(sol) - y) <= 1e-3 * np.linalg.norm(y)


def test_quadrature_weights_sit_inside_A(small_operator):
    np.testing.assert_allclose(small_operator.matrix, small_operator.kernel_matrix * small_operator.Omega.weights, rtol=0)


# --- iterated Tikhonov (docs/ARCHITECTURE.md §2) -----------------------------------------------------

H = rrim.DEFAULT_H
N_STEPS = 15


@pytest.fixture(scope="module")
def tikhonov_case(default_operator):
    """The default operator (200 × 200, 100 K) and a scaled, slightly noisy spectrum y/s."""
    op = default_operator
    W = op.Omega.values
    x_true = (0.6 * np.exp(-0.5 * ((W - 60) / 20) ** 2) + 0.3 * np.exp(-0.5 * ((W - 250) / 60) ** 2)) * -np.expm1(-(W / 5) ** 2)
    y = op.forward(x_true) / op.scale
    y = y + 1e-3 * y.max() * np.random.default_rng(3).standard_normal(y.shape)
    iterates, x = [], np.zeros(op.shape[1])
    for _ in range(N_STEPS):
        x = x + op.preconditioned_residual(y, x, H)  # x_{k+1} = x_k + P(y_s − A_s x_k)
        iterates.append(x)
    # rounding grows with the condition number of AᵀA + hI, (s_max² + h)/h (~3·10³ here), per step
    cond = (op.svd.s[0] ** 2 + H) / H
    return op, y, np.array(iterates), cond


def test_iterated_tikhonov_matches_svd_filter_factors(tikhonov_case):
    op, y, iterates, cond = tikhonov_case
    U, s, Vt = op.svd.U, op.svd.s, op.svd.Vt
    coef = (U.T @ y) / s
    for k, xk in enumerate(iterates, start=1):
        filt = -np.expm1(-k * np.log1p(s**2 / H))  # 1 − (h/(s² + h))^k without cancellation
        expected = Vt.T @ (filt * coef)
        assert np.linalg.norm(xk - expected) <= k * cond * EPS * np.linalg.norm(expected)


def test_first_step_is_plain_tikhonov(tikhonov_case):
    op, y, iterates, cond = tikhonov_case
    a = op.scaled_matrix
    n = op.shape[1]
    # reference without normal equations: least squares on [A; √h I] x = [y; 0]
    ref = np.linalg.lstsq(np.vstack([a, np.sqrt(H) * np.eye(n)]), np.concatenate([y, np.zeros(n)]), rcond=None)[0]
    assert np.linalg.norm(iterates[0] - ref) <= cond * EPS * np.linalg.norm(ref)


def test_iterated_tikhonov_residual(tikhonov_case):
    """y − A x_k = [h(AAᵀ + hI)⁻¹]^k y."""
    op, y, iterates, cond = tikhonov_case
    a = op.scaled_matrix
    gram = a @ a.T + H * np.eye(op.shape[0])
    r = y.copy()
    for k, xk in enumerate(iterates, start=1):
        r = H * np.linalg.solve(gram, r)
        assert np.linalg.norm((y - a @ xk) - r) <= k * cond * EPS * np.linalg.norm(y)
    assert np.linalg.norm(r) < np.linalg.norm(y) / 10  # and it does converge in scaled units


# --- the preconditioner ------------------------------------------------------------------------

@pytest.mark.parametrize("h", [1e-1, 1e-2, 1e-4])
def test_preconditioner_matches_least_squares_reference(default_operator, h):
    """P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ (Cholesky) against lstsq of [Aₛ; √h I] P = [I; 0] (float64)."""
    op = default_operator
    n_w, n_W = op.shape
    aug = np.vstack([op.scaled_matrix, np.sqrt(h) * np.eye(n_W)])
    ref = np.linalg.lstsq(aug, np.vstack([np.eye(n_w), np.zeros((n_W, n_w))]), rcond=None)[0]
    p = op.preconditioner(h)
    assert p.shape == (n_W, n_w) and p.dtype == np.float64
    cond = (op.svd.s[0] ** 2 + h) / h
    assert np.linalg.norm(p - ref) <= 2 * cond * EPS * np.linalg.norm(ref)


def test_preconditioner_cache_and_immutability(small_operator):
    p = small_operator.preconditioner(0.01)
    assert small_operator.preconditioner(0.01) is p
    assert small_operator.preconditioner() is p  # DEFAULT_H = 0.01
    assert small_operator.preconditioner(0.1) is not p
    assert not np.allclose(small_operator.preconditioner(0.1), p)
    for arr in (p, small_operator.matrix, small_operator.scaled_matrix, small_operator.kernel_matrix):
        assert not arr.flags.writeable
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="h"):
            small_operator.preconditioner(bad)


def test_gradient_is_preconditioned_residual(small_operator, rng):
    op = small_operator
    x = rng.uniform(size=(4, op.shape[1]))
    y = rng.uniform(size=(4, op.shape[0]))
    np.testing.assert_allclose(op.preconditioned_residual(y, x), (y - x @ op.scaled_matrix.T) @ op.preconditioner().T, rtol=1e-12)
    # one y against a batch of x broadcasts
    np.testing.assert_allclose(op.preconditioned_residual(y[0], x), op.preconditioned_residual(np.broadcast_to(y[0], y.shape), x), rtol=1e-14)


# --- descriptions and temperatures -------------------------------------------------------------

@pytest.mark.parametrize("Omega", [np.linspace(2.0, 400.0, 50), np.geomspace(0.5, 400.0, 41), np.arange(1.0, 300.0, 7.3)])
def test_describe_round_trip(Omega):
    op = rrim.ForwardOperator(np.linspace(2.0, 400.0, 60), Omega, temperature=42.0, kernel="shulga", scale=250.0)
    desc = json.loads(json.dumps(op.describe()))
    back = rrim.ForwardOperator.from_description(desc)
    assert back.omega == op.omega and back.Omega == op.Omega
    assert (back.temperature, back.kernel.name, back.scale) == (42.0, "shulga", 250.0)
    np.testing.assert_array_equal(back.matrix, op.matrix)
    assert rrim.ForwardOperator.from_description(desc, temperature=10.0).temperature == 10.0


def test_description_errors(small_operator):
    desc = _matrix_kernel_operator().describe()  # identifies the matrix (hash, shape) but cannot rebuild it
    assert desc["kernel"]["kind"] == "matrix" and desc["temperature_K"] is None
    with pytest.raises(ValueError, match="kernel.*not portable"):
        rrim.ForwardOperator.from_description(json.loads(json.dumps(desc)))
    # an unregistered user function is described as such, never by a name that would rebuild another kernel
    user = rrim.ForwardOperator(-small_operator.omega.values, small_operator.Omega,
                                kernel=rrim.FunctionKernel("shulga", lambda w, W, t: np.exp(-np.abs(w - W))))
    desc = json.loads(json.dumps(user.describe()))
    assert desc["kernel"] == {"kind": "function", "name": "shulga", "description": "", "registered": False}
    with pytest.raises(ValueError, match="kernel: the function kernel 'shulga' is not portable"):
        rrim.ForwardOperator.from_description(desc)
    desc = small_operator.describe()
    del desc["scale_meV"]
    with pytest.raises(ValueError, match="scale_meV"):
        rrim.ForwardOperator.from_description(desc)
    with pytest.raises(ValueError, match="kernel.*unknown"):
        rrim.ForwardOperator.from_description({**small_operator.describe(), "kernel": "nope"})


def test_at_temperature(small_operator):
    op20 = small_operator.at_temperature(20.0)
    assert op20.omega is small_operator.omega and op20.Omega is small_operator.Omega
    assert (op20.temperature, op20.scale, op20.kernel) == (20.0, small_operator.scale, small_operator.kernel)
    fresh = rrim.ForwardOperator(small_operator.omega.values, small_operator.Omega.values, temperature=20.0)
    np.testing.assert_array_equal(op20.matrix, fresh.matrix)
    assert small_operator.temperature == 100.0  # unchanged
    allen = rrim.ForwardOperator(small_operator.omega, small_operator.Omega, kernel="allen")
    np.testing.assert_array_equal(small_operator.at_temperature(0.0).matrix, allen.matrix)


# --- bad input ---------------------------------------------------------------------------------

def test_shape_mismatches_name_the_argument(small_operator):
    op = small_operator
    n_w, n_W = op.shape
    with pytest.raises(ValueError, match=r"x: last axis must have length 50"):
        op.forward(np.zeros(n_W + 1))
    with pytest.raises(ValueError, match=r"x: last axis"):
        op.forward(1.0)
    with pytest.raises(ValueError, match=r"y: last axis must have length 60"):
        op.adjoint(np.zeros((2, n_W)))
    with pytest.raises(ValueError, match=r"y: last axis"):
        op.preconditioned_residual(np.zeros(n_W), np.zeros(n_W))
    with pytest.raises(ValueError, match=r"x: last axis"):
        op.preconditioned_residual(np.zeros(n_w), np.zeros(n_w))
    with pytest.raises(ValueError, match=r"y, x: batch shapes \(3,\) and \(2,\)"):
        op.preconditioned_residual(np.zeros((3, n_w)), np.zeros((2, n_W)))


@pytest.mark.parametrize("kwargs, name", [
    (dict(Omega=[0.0, 1.0, 2.0]), "Omega"),
    (dict(Omega=[-1.0, 1.0, 2.0]), "Omega"),
    (dict(Omega=[1.0, 3.0, 2.0]), "Omega.*increasing"),
    (dict(Omega=[1.0, np.nan, 2.0]), "Omega.*NaN"),
    (dict(omega=[0.0, 1.0, 2.0]), "omega"),
    (dict(omega=[2.0, 2.0, 3.0]), "omega.*increasing"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature="warm"), "temperature"),
    (dict(scale=0.0), "scale"),
    (dict(kernel="coth"), "kernel"),
])
def test_operator_refuses_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        rrim.ForwardOperator(**kwargs)


# --- λ and ω_ln --------------------------------------------------------------------------------

def test_lambda_and_omega_log_of_an_einstein_mode():
    """A narrow normalized Gaussian c·δ(Ω − Ω0): λ = 2c/Ω0 (1 + O(s²/Ω0²)), ω_ln = Ω0 (1 + O(s²/Ω0²))."""
    Omega = rrim.boson_grid(np.linspace(0.5, 100.0, 4000))
    c, centre, width = 3.0, 40.0, 0.5
    x = c * np.exp(-0.5 * ((Omega.values - centre) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(rrim.coupling_lambda(x, Omega), 2 * c / centre, rtol=2 * (width / centre) ** 2)
    np.testing.assert_allclose(rrim.omega_log(x, Omega), centre, rtol=2 * (width / centre) ** 2)


def test_lambda_and_omega_log_of_a_box():
    """I²χ = c on [a, b]: λ = 2c ln(b/a), ω_ln = √(ab) (by hand: ∫lnΩ dΩ/Ω = (ln²b − ln²a)/2)."""
    a, b, c = 20.0, 80.0, 0.5
    Omega = rrim.boson_grid(np.linspace(a, b, 6001))
    x = np.full(len(Omega), c)
    h = Omega.values[1] - Omega.values[0]
    np.testing.assert_allclose(rrim.coupling_lambda(x, Omega), 2 * c * np.log(b / a), rtol=(h / a) ** 2)
    np.testing.assert_allclose(rrim.omega_log(x, Omega), np.sqrt(a * b), rtol=(h / a) ** 2)


def test_lambda_is_linear_and_omega_log_scale_free(rng):
    Omega = rrim.default_boson_grid()
    x = rng.uniform(size=(3, len(Omega)))
    lam = rrim.coupling_lambda(x, Omega)
    assert lam.shape == (3,)
    np.testing.assert_allclose(rrim.coupling_lambda(2.5 * x, Omega), 2.5 * lam, rtol=1e-14)
    np.testing.assert_allclose(rrim.omega_log(2.5 * x, Omega), rrim.omega_log(x, Omega), rtol=1e-14)
    assert np.all((rrim.omega_log(x, Omega) > Omega.values[0]) & (rrim.omega_log(x, Omega) < Omega.values[-1]))
    assert np.isnan(rrim.omega_log(np.zeros(len(Omega)), Omega))
    with pytest.raises(ValueError, match="x: last axis"):
        rrim.coupling_lambda(np.ones(3), Omega)
    np.testing.assert_array_equal(rrim.omega_log(x, Omega.values), rrim.omega_log(x, Omega))  # plain arrays too
    with pytest.raises(ValueError, match="Omega"):
        rrim.omega_log(x, -Omega.values)
