"""Throughput of the shipped models side by side with the models they replaced: writes benchmarks/MODEL_SPEED.md.

    nice .venv/bin/python benchmarks/model_speed.py [--before COMMIT] [--spectra 2048] [--repeats 7]

Every model inverts the same synthetic spectra (σ = 1e-3) through `rrim.inversion.engine.invert` (the whole
runtime path: scaling, per-spectrum weights, the session, data-consistency steps, refit, flags) at
batch 64 on all CPUs, in one loop, round-robin with the order rotating each round after a warm-up
round; median and min–max spectra/s. "Before" models are read from git at ``--before`` (default: the
commit before the noise-adaptive models), so a fresh clone reproduces the comparison. The accuracy
side of the lean model comes from its card's evaluation (the same held-out spectra as rrim-default).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

from rrim.inversion.engine import invert
from runtime_throughput import command_line, machine
from shipped_at import model_bytes
from rrim.models.loading import MODELS_DIR, load_model
from rrim.physics.synthetic import DatasetSettings, make_dataset

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "e0d954a"
NAMES = ("rrim-default", "rrim-lean")


def old_models(commit: str, folder: Path) -> dict:
    """The shipped models of ``commit`` (ONNX files from git), loaded by path."""
    out = {}
    for name in NAMES:
        (folder / f"{name}.onnx").write_bytes(model_bytes(commit, name))
        out[f"{name} (before, {commit})"] = load_model(folder / f"{name}.onnx")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--spectra", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "MODEL_SPEED.md")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = {**{f"{n} (now)": load_model(n) for n in NAMES}, **old_models(args.before, Path(tmp))}
        op = models["rrim-default (now)"].info.base_operator()
        y = make_dataset(op, DatasetSettings(n=args.spectra, sigma=1e-3, seed=5)).y
        names = list(models)
        rates = {k: [] for k in names}
        for r in range(args.repeats + 1):
            for k in names[r % len(names):] + names[:r % len(names)]:
                t = time.perf_counter()
                invert(y, models[k], provider="cpu", batch_size=64)
                if r:
                    rates[k].append(len(y) / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in rates.items()}
    lean_metrics = json.loads((MODELS_DIR / "rrim-lean.metrics.json").read_text())["held_out"]
    acc = {s: c["rrim"]["mse"] / c["rrim-default"]["mse"] for s, c in lean_metrics.items()}
    new_default, new_lean = med["rrim-default (now)"], med["rrim-lean (now)"]
    old_default = med[f"rrim-default (before, {args.before})"]
    cmd = command_line(__file__, argv)
    lines = [
        "# Model throughput, side by side", "",
        f"Command: `{cmd.strip()}`; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {time.perf_counter() - start:.0f} s; "
        f"{machine()}. {args.spectra} spectra (σ = 1e-3) through `rrim.inversion.engine.invert`, batch 64, all CPUs, "
        f"{args.repeats} rounds after a warm-up, order rotating; median (min–max).", "",
        "| model | spectra/s | ratio to rrim-default (now) |", "|---|---:|---:|",
        *[f"| {k} | {med[k]:,.0f} ({min(rates[k]):,.0f}–{max(rates[k]):,.0f}) | {med[k] / new_default:.2f} |" for k in names],
        "",
        f"- rrim-default now: **{new_default:,.0f} spectra/s** (goal ≥ 4,000 on this 2-core machine; "
        f"{new_default / old_default:.2f}× the model it replaced, measured in the same loop).",
        f"- rrim-lean / rrim-default: **{new_lean / new_default:.2f}×** the speed (goal ≥ 2×); its MSE relative to "
        "rrim-default's on the same held-out spectra (from its card): "
        + ", ".join(f"{s}: {v:.2f}" for s, v in acc.items()) + " (goal ≤ 1.10).", ""]
    args.report.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
