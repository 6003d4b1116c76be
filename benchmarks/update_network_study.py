"""Does the update network need a wider view? Writes docs/experiments/UPDATE_NETWORK.md.

    nice .venv/bin/python benchmarks/update_network_study.py [--seeds 0 1 2] [--work runs/session/work]

The experiments' rRIM at N = 1000 as it was when the study was made (:func:`rrim.export.recipes.experiments_design.rrim_config`
of :data:`RECIPE`, rrim-default's recipe from scratch before the coarse path and the prior start; one model for every σ) against the same recipe with the update network's coarse path
(``model.context`` = 8, as rrim-default 2.1.0 has), with a global path (``model.global_width`` = 64: a
dense layer over the whole Ω grid) and with both, each trained with the same data, seed and schedule.
Judged like the experiments on their test spectra (200 per seed and σ, fully measured) next to tuned
Tikhonov.
Cells: MSE averaged over the seeds / its ratio to tuned Tikhonov. Each training takes 3–15 minutes at
one thread on this machine; finished (variant, seed) pieces are kept in ``WORK/pieces`` and reused.
"""
from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np

from rrim.export.recipes.evaluation import rrim_estimates
from rrim.export.recipes.experiments import Pieces, fit
from rrim.export.recipes.experiments_design import PRESETS, SIGMAS, TEST_SEED, TUNE_SEED, Problem, rrim_config
from rrim.solvers import Tikhonov, tune_tikhonov_weight
from runtime_throughput import command_line, machine

ROOT = Path(__file__).resolve().parents[1]
#: the recipe the study varied (the experiments' rRIM when it was made)
RECIPE = "rrim_default_2.0.0.toml"
N = 1000
VARIANTS = {"as in the experiments": {}, "coarse path (context 8)": {"context": 8},
            "global path (width 64)": {"global_width": 64}, "coarse + global paths": {"context": 8, "global_width": 64}}


def variant_config(name: str, seed: int, budget, work: Path):
    config = rrim_config(N, seed, budget, work, RECIPE)
    change = VARIANTS[name]
    if not change:
        return config
    tag = "-".join(f"{k}{v}" for k, v in change.items())
    return config.replace(model=change, training={"output_dir": f"{config.training.output_dir}-{tag}"})


def judge(problem: Problem, pieces: Pieces, budget, name: str, seed: int, work: Path) -> dict:
    """{σ: {method: MSE}} of one variant and seed (tuned Tikhonov alongside), with the training notes;
    kept as a piece of the work folder (:class:`rrim.export.recipes.experiments.Pieces`)."""

    def make() -> dict:
        model, notes = fit(variant_config(name, seed, budget, work), problem.op)
        out = {"notes": notes, "mse": {}}
        for sigma in SIGMAS:
            xt, yt, _ = problem.noisy_set(budget.n_tune, TUNE_SEED, seed, sigma)
            x, y, _ = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
            final, network = rrim_estimates(model, y, problem.op)
            tikhonov = Tikhonov(problem.op, rule="fixed", weight=tune_tikhonov_weight(problem.op, yt, xt)).fit(y).x_
            out["mse"][f"{sigma:g}"] = {"rRIM": float(np.mean((final - x) ** 2)),
                                        "network only": float(np.mean((network - x) ** 2)),
                                        "Tikhonov (tuned)": float(np.mean((tikhonov - x) ** 2))}
        return out

    return pieces.get(f"update-network-{name.replace(' ', '_')}-seed{seed}", make)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "update-network-study")
    ap.add_argument("--report", type=Path, default=ROOT / "docs" / "experiments" / "UPDATE_NETWORK.md")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    problem, budget = Problem(), PRESETS["session"]
    pieces = Pieces(args.work, budget)
    found = {name: [] for name in VARIANTS}
    for seed in args.seeds:  # seed by seed: every variant of the first seed is done first
        for name in VARIANTS:
            found[name].append(judge(problem, pieces, budget, name, seed, args.work))
    keys = [f"{s:g}" for s in SIGMAS]

    def mean(name, sigma, method):
        return float(np.mean([r["mse"][sigma][method] for r in found[name]]))

    ref = {s: mean("as in the experiments", s, "Tikhonov (tuned)") for s in keys}
    lines = ["# The update network's view: coarse and global paths at N = 1000", "",
             f"Command: `{command_line(__file__, argv).strip()}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{(time.perf_counter() - start) / 60:.0f} min; {machine()}.", "",
             f"The experiments' rRIM recipe at N = {N} (seeds {', '.join(map(str, args.seeds))}) with the update network "
             "changed as named, judged on the experiments' test spectra (200 per seed and σ). Cells: MSE averaged over "
             "the seeds / ratio to tuned Tikhonov (the issue's bar: ≤ 1 at σ ≤ 1e-4, ≤ 0.5 above).", "",
             "| variant | " + " | ".join(f"σ = {s}" for s in keys) + " |", "|---|" + "---|" * len(keys),
             "| Tikhonov (tuned) | " + " | ".join(f"{ref[s]:.3g}" for s in keys) + " |"]
    for name in VARIANTS:
        for method in ("rRIM", "network only"):
            label = name if method == "rRIM" else f"{name}, network only"
            lines.append(f"| {label} | " + " | ".join(f"{mean(name, s, method):.3g} / {mean(name, s, method) / ref[s]:.2f}"
                                                      for s in keys) + " |")
    lines += ["", "Trainings (epochs, best epoch, stopped by, seconds):", ""]
    lines += [f"- {name}, seed {seed}: {r['notes']['epochs']} ({r['notes']['best_epoch']}), {r['notes']['stopped_by']}, "
              f"{r['notes']['seconds']:.0f} s" for name in VARIANTS for seed, r in zip(args.seeds, found[name])]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
