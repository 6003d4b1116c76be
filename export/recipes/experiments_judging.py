"""How the accuracy experiments judge each method: records (one per test set, OOD shape or realistic
file, with the scores of :func:`rrim.export.recipes.evaluation.scores`) of the rRIM and its network alone,
of a learned y → x baseline, and of the classical solvers with their weights tuned on known glue.
"""
from __future__ import annotations

import logging

import numpy as np

from rrim.export.recipes.evaluation import (best_tikhonov_weight, classical_estimates, filled, measured_operator, rel_l2,
                                            rrim_estimates, scores, tuned_weights)
from rrim.export.recipes.experiments_design import (PRIOR, PRIOR_DC, RRIM, RRIM_NET, SWEEP_SIGMAS, TEST_SEED, TUNE_SEED,
                                                    Budget, Problem, sigmas_at)

log = logging.getLogger("rrim.experiments")


def _record(kind: str, method: str, seed, n, sigma: float, s: dict, item=None) -> dict:
    return {"set": kind, "method": method, "seed": seed, "n": n, "sigma": sigma, "item": item, **s}


def _ood_records(method, seed, n, sigma, names, x_hat, x) -> list[dict]:
    return [_record("ood", method, seed, n, sigma, scores(x_hat[i:i + 1], x[i:i + 1]), name) for i, name in enumerate(names)]


def _realistic_record(method, seed, n, f, x_hat, rows=None) -> dict:
    x = f.x if rows is None else f.x[:rows]
    s = scores(x_hat, x)
    return _record("realistic", method, seed, n, f.sigma, {**s, "rel_each": rel_l2(x_hat, x).tolist()}, f.name)


def judge_rrim(problem: Problem, model, seed: int, n: int, budget: Budget) -> dict:
    """Records of the rRIM (and of its network alone) on the test sets it is judged on at this N, and
    its estimates of the OOD shapes at σ = 1e-3 (``curves``, for the figure)."""
    return _judge_two_stage(problem, lambda y, op, mask=None: rrim_estimates(model, y, op, mask), (RRIM, RRIM_NET),
                            seed, n, budget)


def judge_prior(problem: Problem, seed: int, n: int, budget: Budget) -> dict:
    """Records of the Gaussian prior of the rRIM's (N, seed) training glue (:class:`rrim.inversion.prior.GaussianPrior`):
    its estimate, and that estimate after the judged rRIM's float64 data-consistency steps and polish
    (the same steps as :func:`rrim.export.recipes.evaluation.rrim_estimates`): the learned linear start and
    the physics after it, without the network."""
    from rrim.export.data.adaptive import data_splits
    from rrim.inversion.feeds import AdaptiveInputs
    from rrim.inversion.prior import GaussianPrior
    from rrim.inversion.regularization import POLISH_ITERATIONS, correct

    x, _ = problem.glue(n, seed)
    prior = GaussianPrior.fit(x[data_splits(problem.config.replace(data={"n": n, "seed": seed}))["train"]])
    steps = problem.config.model.correction_steps

    def estimates(y_meV, op, mask=None):
        m = np.ones(op.shape[0], bool) if mask is None else np.asarray(mask, bool)
        a = AdaptiveInputs.of(op, np.asarray(y_meV, dtype=np.float64) / op.scale, m, prior=prior)
        return correct(np.maximum(a.x0, 0.0), a.beta, a.svd, a.h, steps, POLISH_ITERATIONS), a.x0

    return _judge_two_stage(problem, estimates, (PRIOR_DC, PRIOR), seed, n, budget)


def _judge_two_stage(problem: Problem, estimates, names: tuple[str, str], seed: int, n: int, budget: Budget) -> dict:
    """Records of a method with a final estimate and an intermediate one (``names``), ``estimates(y_meV,
    operator, mask=None)`` → (final, intermediate) (k, n_Ω): test sets at this N, the OOD shapes at the
    largest N, the realistic set at ``bar_n``; the final OOD estimates at σ = 1e-3 as ``curves``."""
    final_name, inner_name = names
    op = problem.op
    out, curves = [], {}
    for sigma in sigmas_at(n, budget):
        x, y, noise = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
        final, inner = estimates(y, op)
        out.append(_record("test", final_name, seed, n, sigma, scores(final, x, op.forward(final), y, noise)))
        out.append(_record("test", inner_name, seed, n, sigma, scores(inner, x)))
    if n == max(budget.sizes):
        for sigma in SWEEP_SIGMAS:
            shapes, x, y, _ = problem.ood(seed, sigma)
            final, inner = estimates(y, op)
            out += (_ood_records(final_name, seed, n, sigma, shapes, final, x)
                    + _ood_records(inner_name, seed, n, sigma, shapes, inner, x))
            if sigma == 1e-3:
                curves[final_name] = final.tolist()
    if n == budget.bar_n:
        for f in problem.realistic(budget.n_per_file):
            final, inner = estimates(f.y, op.at_temperature(f.temperature), f.mask)
            out += [_realistic_record(final_name, seed, n, f, final), _realistic_record(inner_name, seed, n, f, inner)]
    return {"records": out, "curves": curves}


def judge_baseline(problem: Problem, method: str, predict, seed: int, n: int, sigma: float, budget: Budget) -> dict:
    """Records of a learned y → x model trained at σ (``predict``: spectra (k, n_ω) meV → glue), and
    its OOD estimates at σ = 1e-3 (``curves``)."""
    x, y, _ = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
    out, curves = [_record("test", method, seed, n, sigma, scores(predict(y), x))], {}
    if n == max(budget.sizes) and sigma in SWEEP_SIGMAS:
        names, x, y, _ = problem.ood(seed, sigma)
        est = predict(y)
        out += _ood_records(method, seed, n, sigma, names, est, x)
        if sigma == 1e-3:
            curves[method] = est.tolist()
    if n == budget.bar_n:
        omega = problem.op.omega.values
        out += [_realistic_record(method, seed, n, f, predict(filled(f.y, f.mask, omega)))
                for f in problem.realistic(budget.n_per_file) if f.sigma == sigma]
    return {"records": out, "curves": curves}


def judge_classical(problem: Problem, seed: int, sigma: float, budget: Budget) -> dict:
    """Weights tuned on the tuning set at σ, then the classical solvers on the test set (and the OOD
    shapes at σ ∈ :data:`SWEEP_SIGMAS`, with the same weights plus Tikhonov's best weight for them)."""
    op = problem.op
    xt, yt, _ = problem.noisy_set(budget.n_tune, TUNE_SEED, seed, sigma)
    weights = tuned_weights(op, yt, xt, budget.n_nnls_tune)
    x, y, noise = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
    found, failures = _failed(classical_estimates(op, y, noise, weights, budget.n_mem), f"test, seed {seed}, σ={sigma:g}")
    records = [_record("test", m, seed, None, sigma, scores(est, x[:k], op.forward(est), y[:k], noise[:k]))
               for m, (est, k) in found.items()]
    curves = {}
    if sigma in SWEEP_SIGMAS:
        names, x, y, noise = problem.ood(seed, sigma)
        found, more = _failed(classical_estimates(op, y, noise, weights, budget.n_mem), f"OOD, seed {seed}, σ={sigma:g}")
        failures += more
        found["Tikhonov (best weight)"] = (_tikhonov(op, y, best_tikhonov_weight(op, y, x)), len(y))
        for m, (est, k) in found.items():
            records += _ood_records(m, seed, None, sigma, names[:k], est, x[:k])
        curves = {m: est.tolist() for m, (est, k) in found.items() if k == len(y)}
    return {"records": records, "weights": weights, "curves": curves, "failures": failures}


def _failed(found: dict, where: str) -> tuple[dict, list[str]]:
    """(the methods that ran, ['method (where): error'] for those that raised)."""
    failures = [f"{m} ({where}): {v}" for m, v in found.items() if isinstance(v, str)]
    for message in failures:
        log.warning("failed: %s", message)
    return {m: v for m, v in found.items() if not isinstance(v, str)}, failures


def _tikhonov(op, y, weight):
    from rrim.solvers import Tikhonov

    return Tikhonov(op, rule="fixed", weight=weight).fit(y).x_


def judge_classical_realistic(problem: Problem, budget: Budget) -> dict:
    """The classical solvers on each file of the realistic set, on its measured points: Tikhonov with
    the best weight for the file (the bar's reference), GCV, discrepancy (noise given), NNLS with
    weights around the best Tikhonov weight chosen on the file, MEM on the first ``n_mem`` spectra."""
    records, failures = [], []
    for f in problem.realistic(budget.n_per_file):
        op = measured_operator(problem.op.at_temperature(f.temperature), f.mask)
        y = f.y[:, f.mask]
        noise = f.sigma * np.abs(problem.op.forward(f.x)).max(axis=1)
        best = best_tikhonov_weight(op, y, f.x)
        weights = tuned_weights(op, y, f.x, budget.n_nnls_tune)
        found, more = _failed(classical_estimates(op, y, noise, {**weights, "tikhonov": best}, budget.n_mem), f.name)
        failures += more
        found["Tikhonov (best weight per file)"] = found.pop("Tikhonov (tuned)")
        records += [_realistic_record(m, None, None, f, est, k) for m, (est, k) in found.items()]
    return {"records": records, "failures": failures}
