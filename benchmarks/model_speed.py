"""Throughput and accuracy of the shipped models side by side with the models they replaced: writes
benchmarks/MODEL_SPEED.md.

    nice .venv/bin/python benchmarks/model_speed.py [--before COMMIT ...] [--spectra 2048] [--repeats 7] [--accuracy 600]

Speed: every model inverts the same synthetic spectra (σ = 1e-3) through `rrim.inversion.engine.invert`
(the whole runtime path: scaling, per-spectrum weights, the session, data-consistency steps, refit,
flags, OOD scores) at batch 64 on all CPUs, in one loop, round-robin with the order rotating each
round after a warm-up round; median and min–max spectra/s. Accuracy: MSE and median relative L2
error of every model on the same held-out glue functions of the realistic prior (drawn on a 2× finer
Ω grid, fully measured, 100 K) at each σ of :data:`SIGMAS`. "Before" models (and their calibrations)
are read from git at each ``--before`` commit (a model identical to today's is left out), so a fresh
clone reproduces the comparison.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rrim.inversion.engine import invert
from rrim.models.loading import load_model
from rrim.physics.glue_families import realistic_prior, refined_grid
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import DatasetSettings, make_dataset
from runtime_throughput import command_line, machine
from shipped_at import write_shipped

ROOT = Path(__file__).resolve().parents[1]
#: 50d843a: the models before the noise-adaptive ones (2.0.0's predecessors' speed, the issue's "today");
#: 35194d2: rrim-default 2.2.0 and rrim-lean 2.2.0.
BEFORE = ("50d843a", "35194d2")
NAMES = ("rrim-default", "rrim-lean")
SIGMAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
SEED = 2031


def models_to_compare(commits, folder: Path) -> dict:
    """Today's shipped models, then those of each commit whose file differs from today's, by table name."""
    now = {f"{n} (now)": load_model(n) for n in NAMES}
    seen = {m.sha256 for m in now.values()}
    out = dict(now)
    for commit in commits:
        for name in NAMES:
            model = load_model(write_shipped(commit, name, folder / commit))
            if model.sha256 not in seen:
                seen.add(model.sha256)
                out[f"{name} ({commit})"] = model
    return out


def throughput(models: dict, y: np.ndarray, repeats: int) -> dict:
    """Spectra/s of each model over ``repeats`` rotating rounds after a warm-up round."""
    names = list(models)
    rates = {k: [] for k in names}
    for r in range(repeats + 1):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            invert(y, models[k], provider="cpu", batch_size=64)
            if r:
                rates[k].append(len(y) / (time.perf_counter() - t))
    return rates


def accuracy(models: dict, n: int) -> dict:
    """{σ: {model: (MSE, median relative L2)}} on ``n`` held-out realistic glue functions."""
    op = next(iter(models.values())).info.base_operator()
    rng = np.random.default_rng(SEED)
    fine = refined_grid(op.Omega, 2)
    x_fine = realistic_prior(fine, n, rng)
    x = x_fine[:, ::2]
    clean = ForwardOperator(op.omega, fine, op.temperature, op.kernel, op.scale).forward(x_fine)
    out = {}
    for sigma in SIGMAS:
        y = clean + sigma * np.abs(clean).max(axis=1, keepdims=True) * rng.standard_normal(clean.shape)
        out[sigma] = {}
        for k, model in models.items():
            glue = invert(y, model, provider="cpu").glue
            rel = np.linalg.norm(glue - x, axis=1) / np.linalg.norm(x, axis=1)
            out[sigma][k] = (float(np.mean((glue - x) ** 2)), float(np.median(rel)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", nargs="*", default=list(BEFORE), metavar="COMMIT")
    ap.add_argument("--spectra", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--accuracy", type=int, default=600, help="held-out glue functions per σ for the accuracy table")
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "MODEL_SPEED.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = models_to_compare(args.before, Path(tmp))
        op = models["rrim-default (now)"].info.base_operator()
        y = make_dataset(op, DatasetSettings(n=args.spectra, sigma=1e-3, seed=5)).y
        rates = throughput(models, y, args.repeats)
        acc = accuracy(models, args.accuracy)
    names = list(models)
    med = {k: statistics.median(v) for k, v in rates.items()}
    default, lean = med["rrim-default (now)"], med["rrim-lean (now)"]
    replaced = [k for k in names if k.startswith("rrim-default (") and k != "rrim-default (now)"]
    lean_mse = [acc[s]["rrim-lean (now)"][0] / acc[s]["rrim-default (now)"][0] for s in SIGMAS]
    lines = [
        "# Model throughput and accuracy, side by side", "",
        f"Command: `{command_line(__file__, argv).strip()}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{time.perf_counter() - start:.0f} s; {machine()}.", "",
        "## Speed", "",
        f"{args.spectra} spectra (σ = 1e-3) through `rrim.inversion.engine.invert`, batch 64, all CPUs, "
        f"{args.repeats} rounds after a warm-up, order rotating; median (min–max).", "",
        "| model | sha256 | spectra/s | ratio to rrim-default (now) |", "|---|---|---:|---:|",
        *[f"| {k} | {models[k].sha256[:8]} | {med[k]:,.0f} ({min(rates[k]):,.0f}–{max(rates[k]):,.0f}) | "
          f"{med[k] / default:.2f} |" for k in names],
        "", "## Accuracy", "",
        f"{args.accuracy} held-out glue functions of the realistic prior (seed {SEED}, 2× finer Ω grid, fully measured, "
        "100 K) per σ; cells: MSE / median relative L2 error (MSE relative to rrim-default (now)).", "",
        "| σ | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
        *[f"| {s:g} | " + " | ".join(f"{acc[s][k][0]:.3g} / {acc[s][k][1]:.3f} ({acc[s][k][0] / acc[s]['rrim-default (now)'][0]:.2f})"
                                    for k in names) + " |" for s in SIGMAS],
        "", "## Goals", "",
        f"- rrim-default now: **{default:,.0f} spectra/s** (goal ≥ 4,000 on this 2-core machine); "
        + "; ".join(f"{default / med[k]:.2f}× {k}" for k in replaced) + " in the same loop.",
        f"- rrim-lean / rrim-default: **{lean / default:.2f}×** the speed (goal ≥ 2×) at "
        + ", ".join(f"{v:.2f}" for v in lean_mse) + f"× its MSE at σ = {', '.join(f'{s:g}' for s in SIGMAS)} (goal ≤ 1.10).", ""]
    args.report.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
