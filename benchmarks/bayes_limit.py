"""How close can any estimator come at high noise? The Bayes limit on the experiments' test spectra:
writes docs/experiments/BAYES_LIMIT.md.

    nice .venv/bin/python benchmarks/bayes_limit.py [--draws 4000000] [--chunk 50000] [--seeds 0 1 2]

No estimator has a lower mean-squared error on glue drawn from a prior than the posterior mean
E[x | y]. For the experiments' prior (the realistic families drawn on the 2× finer Ω grid, 100 K;
:class:`rrim.export.recipes.experiments_design.Problem`) it is estimated by self-normalised importance
sampling over ``--draws`` fresh prior draws (streams :data:`PRIOR_STREAM` + chunk, which no training,
tuning or test set draws): w_i ∝ p(y | x_i) = Π_ω N(y_ω; (A x_i)_ω, s_i²), s_i = σ·max|A x_i| (the test
spectra's noise model). Two estimates of the limit are given: the MSE of that mean against the truth, and
the mean posterior variance (the Bayes risk, which needs no truth); the sampling error of the first is
about the posterior variance over the effective sample size (ESS), given as "IS excess". The MSE after
a quarter and half of the draws shows the convergence. Side by side on the same spectra (200 per seed;
docs/experiments/RESULTS.md uses the same): tuned Tikhonov (weight of least MSE on 100 tuning spectra,
as in the experiments), the shipped models through the runtime, and the experiments' rRIM, CNN, FCN and
ridge at N = 1000 from docs/experiments/results.json (checked to be on the same spectra through
Tikhonov's MSE).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from rrim.export.recipes.experiments_design import PRESETS, TEST_SEED, TUNE_SEED, Problem
from rrim.inversion.engine import invert
from rrim.models.loading import load_model
from rrim.solvers import Tikhonov, tune_tikhonov_weight
from runtime_throughput import command_line, machine
from shipped_at import shipped_label

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (1e-3, 1e-2, 1e-1)
#: data seeds of the prior draws: chunk c draws from stream PRIOR_STREAM + c
PRIOR_STREAM = 700_000
MODELS = ("rrim-default", "rrim-lean")
LEARNED = ("rRIM", "CNN", "FCN", "ridge")
TIKHONOV = "Tikhonov (tuned)"
#: a noise level's limit is stated only where 90 % of the test spectra have at least this effective sample size
MIN_ESS = 20


class Posterior:
    """Running importance-sampling sums for spectra y (n, n_ω) meV at noise level σ."""

    def __init__(self, y: np.ndarray, sigma: float):
        self.y, self.sigma = y, sigma
        self.y2 = np.einsum("ij,ij->i", y, y)
        self.top = np.full(len(y), -np.inf)
        self.w = np.zeros(len(y))
        self.w2 = np.zeros(len(y))
        self.wx = 0.0
        self.wxx = np.zeros(len(y))

    def add(self, x: np.ndarray, clean: np.ndarray) -> None:
        """Fold in prior draws: glue x (m, n_Ω) and their clean spectra (m, n_ω) meV."""
        s = self.sigma * np.abs(clean).max(axis=1)
        d2 = np.maximum(self.y2[:, None] + np.einsum("ij,ij->i", clean, clean)[None, :] - 2.0 * self.y @ clean.T, 0.0)
        logw = -0.5 * d2 / s ** 2 - clean.shape[1] * np.log(s)
        top = np.maximum(self.top, logw.max(axis=1))
        rescale = np.exp(self.top - top)
        w = np.exp(logw - top[:, None])
        self.w = self.w * rescale + w.sum(axis=1)
        self.w2 = self.w2 * rescale ** 2 + np.einsum("ij,ij->i", w, w)
        self.wx = self.wx * rescale[:, None] + w @ x
        self.wxx = self.wxx * rescale + w @ np.einsum("ij,ij->i", x, x)
        self.top = top

    def mean(self) -> np.ndarray:
        """E[x | y] (n, n_Ω)."""
        return self.wx / self.w[:, None]

    def variance(self) -> np.ndarray:
        """Posterior variance summed over Ω (n,)."""
        m = self.mean()
        return np.maximum(self.wxx / self.w - np.einsum("ij,ij->i", m, m), 0.0)

    def ess(self) -> np.ndarray:
        """Effective sample size (n,)."""
        return self.w ** 2 / self.w2


def experiments_means(path: Path, seeds, n: int = 1000) -> dict:
    """{method: {σ: MSE mean over ``seeds``}} of the learned methods at N = ``n`` and tuned Tikhonov."""
    found: dict = {}
    for r in json.loads(path.read_text())["records"]:
        wanted = (r["method"] in LEARNED and r["n"] == n) or r["method"] == TIKHONOV
        if r["set"] == "test" and wanted and r["seed"] in seeds and r["sigma"] in SIGMAS:
            found.setdefault(r["method"], {}).setdefault(r["sigma"], []).append(r["mse"])
    return {m: {s: float(np.mean(v)) for s, v in by.items()} for m, by in found.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4_000_000, help="prior draws of the importance sampling")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "experiments" / "results.json")
    ap.add_argument("--report", type=Path, default=ROOT / "docs" / "experiments" / "BAYES_LIMIT.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    problem, budget = Problem(), PRESETS["session"]
    models = {m: load_model(m) for m in MODELS}
    labels = {m: shipped_label(m, model) for m, model in models.items()}
    rows: dict[str, dict[float, float]] = {TIKHONOV: {}, **{label: {} for label in labels.values()}}
    truth, posteriors = {}, {}
    for sigma in SIGMAS:
        xs, ys, tik = [], [], []
        for seed in args.seeds:
            xt, yt, _ = problem.noisy_set(budget.n_tune, TUNE_SEED, seed, sigma)
            x, y, _ = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
            tik.append(Tikhonov(problem.op, rule="fixed", weight=tune_tikhonov_weight(problem.op, yt, xt)).fit(y).x_)
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        truth[sigma], posteriors[sigma] = x, Posterior(y, sigma)
        rows[TIKHONOV][sigma] = float(np.mean((np.concatenate(tik) - x) ** 2))
        for m, model in models.items():
            rows[labels[m]][sigma] = float(np.mean((invert(y, model, provider="cpu").glue - x) ** 2))
    n_chunks = -(-args.draws // args.chunk)
    checkpoints = {max(1, n_chunks // 4): "¼", max(1, n_chunks // 2): "½"}
    partial: dict[str, dict[float, float]] = {}
    for c in range(n_chunks):
        xp, clean = problem.draw(args.chunk, PRIOR_STREAM + c)
        for post in posteriors.values():
            post.add(xp, clean)
        if c + 1 in checkpoints:
            partial[checkpoints[c + 1]] = {s: float(np.mean((p.mean() - truth[s]) ** 2)) for s, p in posteriors.items()}
        print(f"chunk {c + 1}/{n_chunks}: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    n_omega = truth[SIGMAS[0]].shape[1]
    limit = {s: float(np.mean((p.mean() - truth[s]) ** 2)) for s, p in posteriors.items()}
    risk = {s: float(np.mean(p.variance()) / n_omega) for s, p in posteriors.items()}
    excess = {s: float(np.mean(p.variance() / p.ess()) / n_omega) for s, p in posteriors.items()}
    ess = {s: (float(np.median(p.ess())), float(np.percentile(p.ess(), 10))) for s, p in posteriors.items()}
    reported = experiments_means(args.results, args.seeds)
    same = all(abs(reported.get(TIKHONOV, {}).get(s, np.nan) / rows[TIKHONOV][s] - 1) < 1e-6 for s in SIGMAS)
    table = {f"posterior mean ({args.draws:,} prior draws)": limit, "posterior variance (Bayes risk)": risk, **rows}
    if same:
        table.update({f"{m}, N = 1000 (experiments)": v for m, v in reported.items() if m != TIKHONOV})
    ref = rows[TIKHONOV]
    best_learned = {s: min(reported[m][s] for m in ("CNN", "FCN", "ridge")) for s in SIGMAS} if same else None

    cols = " | ".join(f"σ = {s:g}" for s in SIGMAS)
    lines = ["# High noise: the Bayes limit", "",
             f"Command: `{command_line(__file__, argv).strip()}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{(time.perf_counter() - start) / 60:.0f} min; {machine()}.", "",
             f"No estimator has a lower MSE on glue drawn from the prior than the posterior mean E[x | y]. "
             f"It is estimated here by importance sampling over {args.draws:,} fresh draws of the experiments' prior, "
             f"on the experiments' test spectra (200 per seed, seeds {', '.join(map(str, args.seeds))}; "
             f"docs/experiments/RESULTS.md uses the same). Cells: MSE (mean over spectra and Ω) / ratio to tuned Tikhonov.", "",
             f"| method | {cols} |", "|---|" + "---|" * len(SIGMAS)]
    lines += [f"| {name} | " + " | ".join(f"{v[s]:.3g} / {v[s] / ref[s]:.2f}" for s in SIGMAS) + " |" for name, v in table.items()]
    if not same:
        lines += ["", f"{args.results.relative_to(ROOT)} is not on these spectra (its tuned Tikhonov differs): its rows are left out."]
    lines += ["", "Convergence of the importance sampling:", "",
              f"| | {cols} |", "|---|" + "---|" * len(SIGMAS)]
    lines += [f"| MSE of the posterior mean after {k} of the draws | " + " | ".join(f"{v[s]:.3g}" for s in SIGMAS) + " |"
              for k, v in partial.items()]
    lines += ["| MSE after all draws | " + " | ".join(f"{limit[s]:.3g}" for s in SIGMAS) + " |",
              "| IS excess (mean posterior variance / ESS) | " + " | ".join(f"{excess[s]:.2g}" for s in SIGMAS) + " |",
              "| ESS, median (10th percentile) | " + " | ".join(f"{ess[s][0]:.0f} ({ess[s][1]:.0f})" for s in SIGMAS) + " |",
              "", f"The bars against the limit, where the sampling converged (10th percentile of the ESS ≥ {MIN_ESS}; "
              "no estimator has a lower MSE than the limit):", ""]
    for s in SIGMAS:
        if ess[s][1] < MIN_ESS:
            lines.append(f"- σ = {s:g}: not converged (the likelihood is too narrow for prior draws to reach it); no bound.")
            continue
        low, high = sorted((risk[s] / ref[s], limit[s] / ref[s]))
        line = f"- σ = {s:g}: the limit is {low:.2f}–{high:.2f}× tuned Tikhonov (bar ≤ 0.5×)"
        if best_learned:
            line += (f"; 0.7× the best of CNN, FCN and ridge at N = 1000 is {0.7 * best_learned[s] / ref[s]:.2f}× "
                     f"tuned Tikhonov, {0.7 * best_learned[s] / risk[s]:.2f}× the Bayes risk")
        lines.append(line + ".")
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
