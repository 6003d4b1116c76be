"""How much better than Tikhonov can anything learned get at high noise? Writes docs/experiments/HIGH_NOISE.md.

    nice .venv/bin/python benchmarks/high_noise_headroom.py [--n 20000] [--seeds 0 1 2]

On the experiments' test spectra (:class:`rrim.export.recipes.experiments_design.Problem`, 200 per seed,
σ = 1e-3, 1e-2 and 0.1) it puts side by side: tuned Tikhonov (the weight with the lowest MSE on 100
tuning spectra, as in the experiments), the experiments' chosen FCN (1024×2, lr 3e-4, the same
schedule) and ridge y → x trained at that σ on ``--n`` glue functions of the same prior (data seed 7,
a stream no test draws) instead of the experiments' 1000, the same FCN trained once for every σ
(noise level drawn per spectrum from the experiments' six, σ = 0 … 0.1, validation likewise: one
model for all, as the rRIM is), and the shipped models through the runtime. Cells: MSE (mean over
spectra and Ω) averaged over the seeds, and its ratio to tuned Tikhonov. The FCNs train at 1 torch
thread; about 6–10 minutes each on this machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from rrim.export.recipes.experiments import fit
from rrim.export.recipes.evaluation import noisy
from rrim.export.recipes.experiments_design import PRESETS, SIGMAS as LEVELS, TEST_SEED, TUNE_SEED, Problem, baseline_config
from rrim.export.recipes.ridge import Ridge
from rrim.export.training.loop import predict
from rrim.inversion.engine import invert
from rrim.models.loading import load_model
from rrim.solvers import Tikhonov, tune_tikhonov_weight
from runtime_throughput import command_line, machine
from shipped_at import shipped_label

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (1e-3, 1e-2, 1e-1)
FCN = ("FCN", 1024, 2, 3e-4)
MODELS = ("rrim-default", "rrim-lean")


def every_sigma(problem: Problem, n: int, seed: int, budget, work: Path):
    """The FCN of one model for every σ: its configuration (training noise redrawn per batch at a level
    of :data:`LEVELS` per spectrum) and data (the glue of ``training_set``, each spectrum at a drawn level)."""
    data = problem.training_set(n, LEVELS[-1], seed)
    rng = np.random.default_rng([seed, n, len(LEVELS)])
    sigma = np.asarray(LEVELS)[rng.integers(len(LEVELS), size=n)][:, None]
    config = baseline_config(FCN, n, LEVELS[-1], seed, budget, work).replace(data={"sigma": list(LEVELS)})
    return config, dataclasses.replace(data, y=noisy(data.y_clean, sigma, rng))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="training glue functions of the FCN and ridge")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--report", type=Path, default=ROOT / "docs" / "experiments" / "HIGH_NOISE.md")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    problem, budget = Problem(), PRESETS["session"]
    models = {name: load_model(name) for name in MODELS}
    rows: dict[str, dict[float, float]] = {}
    notes = []
    with tempfile.TemporaryDirectory() as work:
        config, data = every_sigma(problem, args.n, 7, budget, Path(work) / "every-sigma")
        shared, info = fit(config, problem.op, data)
        notes.append(f"FCN for every σ: {info['epochs']} epochs (best {info['best_epoch']}), stopped by {info['stopped_by']}")
        for sigma in SIGMAS:
            data = problem.training_set(args.n, sigma, 7)
            (xa, ya), (xv, yv) = data.subset("train"), data.subset("val")
            ridge = Ridge().fit(ya, xa, yv, xv)
            net, info = fit(baseline_config(FCN, args.n, sigma, 7, budget, Path(work)), problem.op, data)
            notes.append(f"FCN at σ = {sigma:g}: {info['epochs']} epochs (best {info['best_epoch']}), stopped by {info['stopped_by']}")
            found: dict[str, list] = {}
            for seed in args.seeds:
                xt, yt, _ = problem.noisy_set(budget.n_tune, TUNE_SEED, seed, sigma)
                weight = tune_tikhonov_weight(problem.op, yt, xt)
                x, y, _ = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
                estimates = {"Tikhonov (tuned)": Tikhonov(problem.op, rule="fixed", weight=weight).fit(y).x_,
                             f"FCN trained at that σ, N = {args.n}": np.maximum(predict(net, y, problem.op, 0.01), 0.0),
                             f"FCN for every σ, N = {args.n}": np.maximum(predict(shared, y, problem.op, 0.01), 0.0),
                             f"ridge trained at that σ, N = {args.n}": ridge.predict(y),
                             **{shipped_label(n, m): invert(y, m, provider="cpu").glue for n, m in models.items()}}
                for name, est in estimates.items():
                    found.setdefault(name, []).append(float(np.mean((est - x) ** 2)))
            for name, values in found.items():
                rows.setdefault(name, {})[sigma] = float(np.mean(values))
    cmd = command_line(__file__, argv)
    ref = rows["Tikhonov (tuned)"]
    lines = ["# High noise: what a learned estimator reaches", "",
             f"Command: `{cmd.strip()}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{(time.perf_counter() - start) / 60:.0f} min; {machine()}.", "",
             f"Test spectra of the experiments (200 per seed, seeds {', '.join(map(str, args.seeds))}; "
             f"docs/experiments/RESULTS.md uses the same). Cells: MSE / ratio to tuned Tikhonov.", "",
             "| method | " + " | ".join(f"σ = {s:g}" for s in SIGMAS) + " |", "|---|" + "---|" * len(SIGMAS)]
    lines += [f"| {name} | " + " | ".join(f"{v[s]:.3g} / {v[s] / ref[s]:.2f}" for s in SIGMAS) + " |" for name, v in rows.items()]
    lines += [""] + [f"- {n}" for n in notes]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
