"""Does the update network's global path pay at the shipped models' scale? Writes docs/experiments/GLOBAL_PATH.md.

    nice .venv/bin/python benchmarks/global_path_ablation.py

Two trainings that differ only in ``model.global_width``: rrim-default 2.3.0's first run
(export/configs/rrim_default_2.3.0_part1.toml: warm-started from 2.2.0, 20,000 new glue functions,
38 epochs) and the same run without the global path (export/configs/rrim_default_2.3.0_part1_no_global.toml).
Train both first (``rrim train CONFIG``; ~25 min each on one core); this script reads their
``model.pt`` and ``history.json`` from the configurations' output folders. It reports the validation
loss per epoch side by side and each model's MSE per σ on the same held-out spectra (600 realistic
glue functions, seed 2031, 2× finer Ω grid, fully measured, 100 K: the spectra of
benchmarks/MODEL_SPEED.md), through the same float64 data-consistency steps as the runtime (PyTorch).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from rrim.export.config import CONFIGS, load_config
from rrim.export.nets.checkpoints import load_checkpoint
from rrim.export.recipes.evaluation import rrim_estimates
from rrim.physics.glue_families import realistic_prior, refined_grid
from rrim.physics.operator import ForwardOperator
from runtime_throughput import command_line, machine

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"with the global path": "rrim_default_2.3.0_part1.toml", "without": "rrim_default_2.3.0_part1_no_global.toml"}
SIGMAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
SEED, N_TEST = 2031, 600


def runs() -> dict:
    """{label: (config, output folder)}; the configurations may differ only in global_width and output_dir."""
    out = {k: load_config(CONFIGS / f) for k, f in RUNS.items()}
    a, b = out.values()
    if a.replace(model={"global_width": 0}, training={"output_dir": ""}) != b.replace(training={"output_dir": ""}):
        raise ValueError(f"{RUNS}: the two configurations must differ only in model.global_width and training.output_dir")
    return {k: (c, ROOT / c.training.output_dir) for k, c in out.items()}


def held_out(op: ForwardOperator) -> tuple[np.ndarray, dict]:
    """x (n, n_Ω) and {σ: y (n, n_ω) meV}."""
    rng = np.random.default_rng(SEED)
    fine = refined_grid(op.Omega, 2)
    x_fine = realistic_prior(fine, N_TEST, rng)
    clean = ForwardOperator(op.omega, fine, op.temperature, op.kernel, op.scale).forward(x_fine)
    return x_fine[:, ::2], {s: clean + s * np.abs(clean).max(axis=1, keepdims=True) * rng.standard_normal(clean.shape)
                            for s in SIGMAS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs/experiments/GLOBAL_PATH.md"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    found = runs()
    histories = {k: json.loads((d / "history.json").read_text()) for k, (_, d) in found.items()}
    op = next(iter(found.values()))[0].operator.build()
    x, ys = held_out(op)
    mse = {}
    for k, (_, d) in found.items():
        model, _, _ = load_checkpoint(d / "model.pt")
        mse[k] = {s: float(np.mean((rrim_estimates(model, y, op)[0] - x) ** 2)) for s, y in ys.items()}
    (w, wo) = found
    best = {k: min((e["val_mse"], e["epoch"]) for e in h) for k, h in histories.items()}
    epochs = min(len(h) for h in histories.values())
    lower = sum(histories[w][i]["val_mse"] < histories[wo][i]["val_mse"] for i in range(epochs))
    lines = [
        "# The global path at the shipped scale",
        "",
        f"Command: `{command_line(__file__, argv)}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{(time.perf_counter() - start) / 60:.0f} min; {machine()}.",
        "",
        f"Two trainings that differ only in the update network's global path (`model.global_width`): "
        f"`export/configs/{RUNS[w]}` (width {found[w][0].model.global_width}) and `export/configs/{RUNS[wo]}` (none); "
        f"both warm-started from rrim-default 2.2.0 (the global path starts at zero, so both start from the same "
        f"function) on the same {found[w][0].data.n} glue functions, seeds and schedule. Validation loss: the "
        "trainings' relative loss on the same validation spectra (history.json of each output folder).",
        "",
        f"- best validation loss: {best[w][0]:.4f} (epoch {best[w][1]}) {w}, {best[wo][0]:.4f} (epoch {best[wo][1]}) "
        f"{wo}: ratio {best[w][0] / best[wo][0]:.3f}; lower {w} at {lower} of {epochs} epochs",
        "",
        f"## MSE per σ ({N_TEST} held-out realistic glue functions, seed {SEED}, fully measured; final estimate after "
        "the data-consistency steps)",
        "",
        f"| σ | {w} | {wo} | ratio |",
        "|---|---|---|---|",
        *(f"| {s:g} | {mse[w][s]:.3g} | {mse[wo][s]:.3g} | {mse[w][s] / mse[wo][s]:.3f} |" for s in SIGMAS),
        "",
        "## Validation loss per epoch",
        "",
        f"| epoch | {w} | {wo} | lr |",
        "|---|---|---|---|",
        *(f"| {i + 1} | {histories[w][i]['val_mse']:.4f} | {histories[wo][i]['val_mse']:.4f} | {histories[w][i]['lr']:.3g} |"
          for i in range(epochs)),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
