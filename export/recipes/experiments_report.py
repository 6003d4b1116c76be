"""The experiments' report (:mod:`rrim.export.recipes.experiments`): tables over N, σ, OOD shapes and the
realistic set as mean ± std over seeds, the bar check of issue 14's bars, the figures and RESULTS.md,
all from the raw records of :func:`rrim.export.recipes.experiments.run_pieces`."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rrim.export.config import CONFIGS, load_config
from rrim.export.recipes.experiments_design import (LEARNED, PRIOR, PRIOR_DC, RRIM, RRIM_CONFIG, RRIM_NET, SEARCH_SIGMA, SIGMAS,
                                                    SWEEP_SIGMAS, Budget, Problem)
from rrim.physics.synthetic import NOISE_LEVELS

log = logging.getLogger("rrim.experiments")


def select(records, kind: str, method: str, **where) -> list[dict]:
    """Records of one method in one set matching ``where`` (a classical record, n None, matches any n)."""
    return [r for r in records if r["set"] == kind and r["method"] == method
            and all(r[k] == v or (k == "n" and r[k] is None) for k, v in where.items())]


def per_seed(rows: list[dict], key: str, how=np.mean) -> list[float]:
    """One number per seed (``how`` over the items of a seed; the seed-independent None counts once)."""
    seeds = sorted({r["seed"] for r in rows}, key=lambda s: -1 if s is None else s)
    return [float(how([r[key] for r in rows if r["seed"] == s])) for s in seeds]


def _median_all(rows: list[dict]) -> list[float]:
    """Per seed: the median relative L2 error over every spectrum of the rows (realistic set)."""
    seeds = sorted({r["seed"] for r in rows}, key=lambda s: -1 if s is None else s)
    return [float(np.median(np.concatenate([r["rel_each"] for r in rows if r["seed"] == s]))) for s in seeds]


def fmt(values: list[float], digits: str = ".3g") -> str:
    if not values:
        return "n/a"
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return format(v[0], digits)
    return f"{format(v.mean(), digits)} ± {v.std(ddof=1):.1g}"


def methods_of(records, kind: str) -> list[str]:
    seen = list(dict.fromkeys(r["method"] for r in records if r["set"] == kind))
    return [m for m in LEARNED if m in seen] + [m for m in seen if m not in LEARNED]


def sweep_table(records, kind: str, key: str, columns: list, column: str, digits: str, **where) -> str:
    """Markdown table: methods × columns (``column`` = 'n' or 'sigma'), cells mean ± std over seeds."""
    head = {"n": "N", "sigma": "σ"}[column]
    lines = [f"| method | {' | '.join(f'{head} = {c:g}' for c in columns)} |", "|---" * (len(columns) + 1) + "|"]
    for m in methods_of(records, kind):
        cells = [fmt(per_seed(select(records, kind, m, **{column: c}, **where), key), digits) for c in columns]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ood_tables(records, budget: Budget) -> str:
    n = max(budget.sizes)
    methods = methods_of(records, "ood")
    lines = ["| method | " + " | ".join(f"σ = {s:g}: MSE | σ = {s:g}: rel. L2" for s in SWEEP_SIGMAS) + " |",
             "|---" * (2 * len(SWEEP_SIGMAS) + 1) + "|"]
    for m in methods:
        cells = []
        for s in SWEEP_SIGMAS:
            rows = select(records, "ood", m, n=n, sigma=s)
            cells += [fmt(per_seed(rows, "mse")), fmt(per_seed(rows, "rel_l2", np.median), ".3f")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    out = ["\n".join(lines)]
    for s in SWEEP_SIGMAS:
        shapes = list(dict.fromkeys(r["item"] for r in select(records, "ood", RRIM, sigma=s)))
        cols = [m for m in methods if m != RRIM_NET]
        t = [f"Relative L2 error per shape, σ = {s:g} (mean over seeds):", "",
             "| shape | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for shape in shapes:
            t.append(f"| {shape} | " + " | ".join(
                fmt([np.mean(v)] if (v := [r["rel_l2"] for r in select(records, "ood", m, n=n, sigma=s) if r["item"] == shape])
                    else [], ".3f") for m in cols) + " |")
        out.append("\n".join(t))
    return "\n\n".join(out)


def realistic_tables(records) -> str:
    from rrim.physics.realistic_set import SIGMAS as FILE_SIGMAS

    lines = ["| method | " + " | ".join(f"σ = {s:g}: MSE | rel. L2" for s in FILE_SIGMAS) + " | all: MSE | all: rel. L2 |",
             "|---" * (2 * len(FILE_SIGMAS) + 3) + "|"]
    for m in methods_of(records, "realistic"):
        cells = []
        for s in (*FILE_SIGMAS, None):
            rows = [r for r in select(records, "realistic", m) if s is None or r["sigma"] == s]
            cells += [fmt(per_seed(rows, "mse")), fmt(_median_all(rows), ".3f")]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_of(records, kind, method, key="mse", how=np.mean, **where) -> float | None:
    v = per_seed(select(records, kind, method, **where), key, how)
    return float(np.mean(v)) if v else None


def bar_check(records, budget: Budget) -> list[dict]:
    """Issue 14's bars from the means over seeds that the tables print (N = bar_n)."""
    n, bars = budget.bar_n, []

    def bar(name, sigma, value, reference, limit, what):
        ratio = value / reference if value is not None and reference else None
        bars.append({"bar": name, "sigma": sigma, "value": value, "reference": reference, "reference_is": what,
                     "ratio": ratio, "limit": limit, "met": None if ratio is None else bool(ratio <= limit)})

    for sigma in SIGMAS:
        r = mean_of(records, "test", RRIM, n=n, sigma=sigma)
        bar("rRIM / tuned Tikhonov (MSE)", sigma, r, mean_of(records, "test", "Tikhonov (tuned)", n=n, sigma=sigma),
            0.5 if sigma >= 1e-3 else 1.0, "Tikhonov (tuned)")
        learned = {m: mean_of(records, "test", m, n=n, sigma=sigma) for m in ("CNN", "FCN", "ridge")}
        learned = {m: v for m, v in learned.items() if v is not None}
        best = min(learned, key=learned.get) if learned else None
        bar("rRIM / best of CNN, FCN, ridge (MSE)", sigma, r, learned.get(best), 0.7, best)
    for sigma in SIGMAS:
        if sigma >= 1e-4:
            bar("rRIM misfit / noise (median RMS)", sigma, mean_of(records, "test", RRIM, "misfit_over_noise", n=n, sigma=sigma),
                1.0, 1.2, "the noise")
    rr = _median_all(select(records, "realistic", RRIM))
    tk = _median_all(select(records, "realistic", "Tikhonov (best weight per file)"))
    bar("realistic set: rRIM / Tikhonov best weight per file (median rel. L2)", None,
        float(np.mean(rr)) if rr else None, float(np.mean(tk)) if tk else None, 0.8, "Tikhonov (best weight per file)")
    return bars


def bar_table(bars: list[dict]) -> str:
    lines = ["| bar | σ | rRIM | reference | ratio | limit | met |", "|---|---|---|---|---|---|---|"]
    for b in bars:
        ratio = "n/a" if b["ratio"] is None else f"{b['ratio']:.3g}"
        met = "n/a" if b["met"] is None else ("yes" if b["met"] else "**no**")
        value = "n/a" if b["value"] is None else f"{b['value']:.3g}"
        ref = "n/a" if b["reference"] is None else f"{b['reference']:.3g} ({b['reference_is']})"
        lines.append(f"| {b['bar']} | {'all' if b['sigma'] is None else format(b['sigma'], 'g')} | {value} | {ref} "
                     f"| {ratio} | ≤ {b['limit']:g} | {met} |")
    return "\n".join(lines)


def figures(records, budget: Budget, curves: dict, out: Path) -> list[str]:
    """mse_vs_n.png, mse_vs_sigma.png, ood_shapes.png (seed 0, σ = 1e-3); the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def sweep(ax, column, columns, **where):
        for m in methods_of(records, "test"):
            cs = [c for c in columns if select(records, "test", m, **{column: c}, **where)]
            v = [per_seed(select(records, "test", m, **{column: c}, **where), "mse") for c in cs]
            xs = [c if c > 0 else min(x for x in columns if x > 0) / 10 for c in cs]
            ax.errorbar(xs, [np.mean(a) for a in v], yerr=[np.std(a) for a in v], marker="o", ms=3, capsize=2, label=m)
        ax.set(xscale="log", yscale="log", ylabel="test MSE")

    fig, axes = plt.subplots(1, len(SWEEP_SIGMAS), figsize=(11, 4))
    for ax, s in zip(axes, SWEEP_SIGMAS):
        sweep(ax, "n", list(budget.sizes), sigma=s)
        ax.set(xlabel="training-set size N", title=f"σ = {s:g}")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "mse_vs_n.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sweep(ax, "sigma", list(SIGMAS), n=budget.bar_n)
    ax.set(xlabel=f"noise level σ (σ = 0 drawn at {min(NOISE_LEVELS) / 10:g})", title=f"N = {budget.bar_n}")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "mse_vs_sigma.png", dpi=110)
    plt.close(fig)
    names = ["mse_vs_n.png", "mse_vs_sigma.png"]
    if curves.get("0.001") and curves.get("learned"):
        problem_names, x, _, _ = Problem().ood(0, 1e-3)
        W = load_config(CONFIGS / RRIM_CONFIG).operator.build().Omega.values
        learned = curves.get("learned", {})
        fig, axes = plt.subplots(2, 5, figsize=(16, 6), sharex=True)
        for ax, (i, name) in zip(axes.flat, enumerate(problem_names)):
            ax.plot(W, x[i], "k", lw=2, label="truth")
            for m, est in {**learned, **curves["0.001"]}.items():
                if m in (RRIM, "CNN", "ridge", "Tikhonov (tuned)", "Tikhonov (GCV)"):
                    ax.plot(W, np.asarray(est)[i], lw=1, label=m)
            ax.set_title(name, fontsize=9)
        axes[1, 0].set(xlabel="Ω (meV)", ylabel="I²χ(Ω)")
        axes[0, 0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "ood_shapes.png", dpi=100)
        plt.close(fig)
        names.append("ood_shapes.png")
    return names


def machine(threads: int) -> str:
    from rrim.export.onnx.export import machine_description

    return (f"{machine_description()}, {threads} torch thread(s), shared with other jobs "
            f"(load average at the end {os.getloadavg()[0]:.1f})")


def report(result: dict, budget: Budget, command: str, wall_s: float, mach: str, started: str) -> str:
    records, bars = result["records"], result["bars"]
    n, search = budget.bar_n, result["search"]
    trained = result["training"]
    flagged = [f"{k}: {v['stopped_by']}" for k, v in trained.items() if "flagged" in v["stopped_by"]]
    flagged = "; ".join(flagged[:8]) + (f"; and {len(flagged) - 8} more (results.json)" if len(flagged) > 8 else "")
    cap_note = (f"every training capped at {budget.max_epochs} epochs (smoke budget: numbers meaningless)"
                if budget.max_epochs else "no epoch cap besides the configurations' 400")
    search_lines = "\n".join(
        f"  - {family}: tried " + "; ".join(f"{t['candidate'][1]}×{t['candidate'][2]}, lr {t['candidate'][3]:g} → "
                                          f"{t['best_val']:.3g} ({t['epochs']} epochs)" for t in s["tried"])
        + f"; **chosen {s['chosen'][1]}×{s['chosen'][2]}, lr {s['chosen'][3]:g}**" for family, s in search.items())
    sections = []
    for s in SWEEP_SIGMAS:
        sections.append(f"### σ = {s:g}\n\nMSE:\n\n{sweep_table(records, 'test', 'mse', list(budget.sizes), 'n', '.3g', sigma=s)}"
                        f"\n\nMedian relative L2 error:\n\n{sweep_table(records, 'test', 'rel_l2', list(budget.sizes), 'n', '.3f', sigma=s)}")
    rrim_runs = "; ".join(f"{k[5:]}: {v['epochs']} (best {v['best_epoch']})" for k, v in trained.items() if k.startswith("rRIM"))
    return f"""# Accuracy experiments ({budget.name} budget)

Generated by `{command}` (from the repository root; seeded and resumable: rerunning the same command
reuses the finished pieces and trainings in its work folder).

- started {started}; wall time of this invocation {wall_s / 60:.1f} min ({result['pieces']['made']} pieces made,
  {result['pieces']['reused']} reused from earlier invocations); all {len(result['invocations'])} invocation(s) on this work
  folder: {sum(i['wall_s'] for i in result['invocations']) / 60:.1f} min of wall time; training time recorded over all
  trainings {sum(v['seconds'] for v in trained.values()) / 60:.1f} min{''.join(f"{chr(10)}- invocation of {i['started']}: {i['note']}" for i in result['invocations'] if i.get('note'))}
- machine: {mach}
- budget `{budget.name}`: `{json.dumps(asdict(budget))}`
- {cap_note}; safety caps: rRIM {budget.rrim_time_cap_s or 'none'} s, CNN/FCN {budget.baseline_time_cap_s or 'none'} s
  per training; trainings that reached one (or whose best epoch was the last allowed): {flagged or 'none'}
- methods that failed: {'; '.join(result['failures']) or 'none'}
- rRIM trainings, epochs (best epoch): {rrim_runs}; each stopped by patience or lr unless listed above.

## Methods

- **rRIM**: `export/configs/{RRIM_CONFIG}` (the rRIM's recipe from scratch) unchanged but for N, the seed and the output folder:
  one noise-adaptive model per (N, seed) for every σ, starting from the estimate of the Gaussian prior of its
  training glue; `{RRIM_NET}` is the same model's output before its float64 data-consistency steps (the ablation).
- **{PRIOR}**: that start alone (mean and covariance of the (N, seed) training glue; h per spectrum by GCV in
  the prior's whitened basis), and **{PRIOR_DC}**: the start followed by the rRIM's data-consistency steps
  and polish: the rRIM without its network (the ablation of the network).
- **CNN, FCN**: searched at N = {n}, σ = {SEARCH_SIGMA:g}, seed 0 over the same number of
  configurations each (validation MSE of the best epoch; the rRIM got no search):
{search_lines}
  The chosen configuration is trained per (N, σ, seed) on the rRIM's glue functions of that (N, seed)
  with spectra at σ (noise drawn afresh for every training batch, as for the rRIM; validation: one draw), with the rRIM's schedule (plateau ×0.5 after 4 epochs,
  stop after 12 without improvement or below lr 1e-5, at most 400 epochs), best-validation weights.
- **ridge** y → x on the same pairs (λ on their validation split).
- **Tikhonov (tuned)**: the weight with the lowest MSE on {budget.n_tune} separate spectra of the prior at
  that σ (it knows their truth: the bar); **(GCV)**, **(discrepancy)** per spectrum (true noise given;
  estimated at σ = 0); **NNLS (tuned weight)** among Tikhonov's ×10^(−2…2 by ½) on {budget.n_nnls_tune} of them;
  **MEM (χ²)** (`rrim.solvers.MaxEnt`, rule chi2) on the first {budget.n_mem} test spectra only (slow).
- Test spectra: per seed {budget.n_test} glue functions of the realistic prior from a stream no training
  draws, spectra from the 2× finer Ω grid, fully measured; the same for every method and N.
  Classical methods do not depend on N: their row repeats over N. Cells: mean ± standard
  deviation over {budget.n_seeds} seeds of the MSE (mean over spectra and Ω) or of the median relative
  L2 error ‖x̂ − x‖/‖x‖.

## Bar check (issue 14; N = {n}, means over seeds of the table entries below)

{bar_table(bars)}

## Test error vs training-set size N

{(chr(10) * 2).join(sections)}

![MSE vs N](mse_vs_n.png)

## Test error vs noise level σ (N = {n})

MSE:

{sweep_table(records, 'test', 'mse', list(SIGMAS), 'sigma', '.3g', n=n)}

Median relative L2 error:

{sweep_table(records, 'test', 'rel_l2', list(SIGMAS), 'sigma', '.3f', n=n)}

rRIM misfit: median RMS of A x̂ − y in units of the noise:
{' · '.join(f"σ = {s:g}: {fmt(per_seed(select(records, 'test', RRIM, n=n, sigma=s), 'misfit_over_noise'), '.3g')}" for s in SIGMAS if s > 0)}

![MSE vs sigma](mse_vs_sigma.png)

## Out-of-distribution shapes (models of N = {max(budget.sizes)})

`rrim.physics.glue_families.ood_shapes` drawn on the 2× finer grid. MSE: mean over the shapes; rel. L2: median
over the shapes. Tikhonov (tuned) and NNLS use the weights tuned on the prior at that σ; Tikhonov
(best weight) is the oracle for these shapes.

{ood_tables(records, budget)}

![OOD shapes](ood_shapes.png)

## Realistic set (`rrim.physics.realistic_set`, models of N = {n})

15 files (5 families × σ ∈ {{1e-4, 1e-3, 1e-2}}, {budget.n_per_file} spectra each, FTIR-like partial coverage, 100 K).
The rRIM gets the measured-ω mask; CNN, FCN and ridge (trained at the file's σ, fully measured) get
the measured values filled across gaps and held beyond the ends; classical solvers see the measured
points only. Tikhonov (best weight per file) is the oracle of `benchmarks/realistic_benchmark.py`;
NNLS's weight is chosen on the file too. Cells: MSE (mean over spectra) and median relative L2 over
the spectra at that σ, mean ± std over seeds (classical methods: one number).

{realistic_tables(records)}
"""
