"""Accuracy against FLOPs for smaller rRIM update networks, and the leanest one that keeps the accuracy.

``python -m rrim.export.lean_models`` trains (seeded, fixed epochs, so the work does not depend on
the machine's load) the reference network and each candidate of :data:`CANDIDATES` (GRU width
``hidden``, steps N_t) on the same data at 100 K, exports each (baked form), counts its FLOPs per
spectrum from the ONNX graph, measures its held-out error against tuned Tikhonov at the noise
levels of :data:`EVAL_SIGMAS`, and its onnxruntime throughput side by side with the others (same
loop, rotating order). The leanest candidate whose error at every level is within
:data:`TOLERANCE` of the best network's and below tuned Tikhonov's is shipped as ``rrim-lean``
(card and index entry); docs/experiments/LEAN.md holds the table. Finished runs in ``--runs``
are reused.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..models import MODELS_DIR
from ..sessions import available_cpus, make_session
from ..solvers import Tikhonov, tune_tikhonov_weight
from ..synthetic import add_noise
from .config import Config, DataConfig, ModelConfig, OperatorConfig, TrainingConfig
from .default_model import TRAIN_SIGMAS, write_index
from .flops import gemm_rate, graph_counts
from .onnx_export import export_checkpoint, golden_path, machine_description
from .training import make_data, predict, trained

NAME = "rrim-lean"
MODEL_VERSION = "1.0.0"
REPORT = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "LEAN.md"
#: (hidden, n_steps): the reference first, then the candidates (narrower GRUs, fewer steps, both).
REFERENCE = (16, 15)
CANDIDATES = ((12, 15), (8, 15), (8, 10), (6, 15), (6, 10), (4, 15), (16, 4), (12, 5), (12, 4))
EVAL_SIGMAS = (1e-3, 1e-2)
#: A candidate keeps the accuracy if its test MSE ≤ (1 + TOLERANCE) × the best network's (lowest
#: geometric-mean MSE over σ) at each σ.
TOLERANCE = 0.05
EPOCHS = 20
EVAL_SEED = 2028
BATCH = 128


def training_config(hidden: int, n_steps: int, runs: Path) -> Config:
    """Same data, operator and schedule for every network; only the width and the steps differ."""
    return Config(model=ModelConfig(kind="rrim", hidden=hidden, n_steps=n_steps, x0="tikhonov", nonnegative=True),
                  data=DataConfig(n=4000, sigma=TRAIN_SIGMAS, seed=0), operator=OperatorConfig(),
                  training=TrainingConfig(lr=1e-3, batch_size=32, max_epochs=EPOCHS, patience=EPOCHS, seed=0,
                                          output_dir=str(runs / f"lean-h{hidden}-n{n_steps}")))


def throughput(paths: dict, y32: np.ndarray, rounds: int = 5) -> dict:
    """Median spectra/s per model at batch :data:`BATCH` through the runtime's sessions (all CPUs:
    concurrent one-thread calls, :meth:`rrim.sessions.Session.run_batches`), round-robin, rotating order."""
    sessions = {k: make_session(p, "cpu") for k, p in paths.items()}
    feeds = [{"y": y32[i:i + BATCH]} for i in range(0, len(y32), BATCH)]
    times = {k: [] for k in paths}
    names = list(paths)
    for r in range(rounds + 1):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            sessions[k].run_batches(feeds)
            if r:  # the first round warms up
                times[k].append(len(y32) / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in times.items()}


def build(runs: Path, models_dir: Path, command: str) -> dict:
    start = time.perf_counter()
    nets = [REFERENCE, *CANDIDATES]
    results, paths = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for hidden, n_steps in nets:
            model, cfg, extra, checkpoint = trained(training_config(hidden, n_steps, runs), retrain=False)
            key = f"hidden {hidden}, N_t {n_steps}"
            path = Path(tmp) / f"h{hidden}-n{n_steps}.onnx"
            export_checkpoint(checkpoint, path, form="baked", name=key, verify=False)
            paths[key] = path
            results[key] = {"hidden": hidden, "n_steps": n_steps, "checkpoint": checkpoint, "model": model,
                            "mflop": graph_counts(path)["flops"] / 1e6, "epochs": EPOCHS,
                            "best_val_mse": extra["best_val_loss"]}
        cfg = training_config(*REFERENCE, runs)
        op = cfg.operator.build()
        data = make_data(cfg, op)
        x_test, x_val = data.subset("test")[0], data.subset("val")[0]
        rng = np.random.default_rng(EVAL_SEED)
        tikhonov = {}
        for sigma in EVAL_SIGMAS:
            y = add_noise(op.forward(x_test), sigma, rng)
            weight = tune_tikhonov_weight(op, add_noise(op.forward(x_val), sigma, rng), x_val)
            tikhonov[f"{sigma:g}"] = float(np.mean((Tikhonov(op, rule="fixed", weight=weight).fit(y).x_ - x_test) ** 2))
            for r in results.values():
                r.setdefault("mse", {})[f"{sigma:g}"] = float(np.mean((predict(r["model"], y, op, cfg.training.h) - x_test) ** 2))
        y32 = (add_noise(op.forward(x_test), 1e-3, rng) / op.scale).astype(np.float32)
        y32 = np.tile(y32, (max(1, 2048 // len(y32)), 1))
        rate = throughput(paths, y32)
        gemm = statistics.median(gemm_rate(1024, 1024, 1024) for _ in range(5))
        for k, r in results.items():
            r["spectra_per_s"] = rate[k]
            r["floor_share"] = rate[k] * r["mflop"] * 1e6 / gemm
        # the best network: the lowest geometric-mean MSE over the noise levels; its MSE at each σ is the bar
        best_key = min(results, key=lambda k: np.mean(np.log(list(results[k]["mse"].values()))))
        best = dict(results[best_key]["mse"])
        for r in results.values():
            r["keeps_accuracy"] = all(r["mse"][s] <= (1 + TOLERANCE) * best[s] for s in best)
            r["beats_tikhonov"] = all(r["mse"][s] < tikhonov[s] for s in tikhonov)
        ref_mflop = results[f"hidden {REFERENCE[0]}, N_t {REFERENCE[1]}"]["mflop"]
        eligible = [k for k in list(results)[1:] if results[k]["keeps_accuracy"] and results[k]["beats_tikhonov"]]
        chosen = min(eligible, key=lambda k: results[k]["mflop"]) if eligible else None
        summary = None
        if chosen:
            out = Path(models_dir) / f"{NAME}.onnx"
            summary = export_checkpoint(results[chosen]["checkpoint"], out, form="baked", name=NAME,
                                        model_version=MODEL_VERSION, command=command,
                                        metrics={"test_mse": results[chosen]["mse"], "tuned_tikhonov_mse": tikhonov})
            write_index(out.parent, {"name": NAME, "file": out.name, "sha256": summary["sha256"], "form": "baked",
                                     "golden": golden_path(out).name, "card": f"{NAME}.md",
                                     "model_version": MODEL_VERSION, "bytes": summary["bytes"]})
    text = write_report(results, tikhonov, best, best_key, ref_mflop, chosen, summary, gemm, command,
                        time.perf_counter() - start)
    if chosen:
        (Path(models_dir) / f"{NAME}.md").write_text(text)  # the card: the sweep that chose it
    table = {k: {f: v for f, v in r.items() if f not in ("model", "checkpoint")} for k, r in results.items()}
    return {"chosen": chosen, "summary": summary, "results": table, "tuned_tikhonov_mse": tikhonov}


def write_report(results, tikhonov, best, best_key, ref_mflop, chosen, summary, gemm, command, wall_s) -> str:
    sig = list(tikhonov)
    rows = [f"| {k} | {r['mflop']:.2f} | {ref_mflop / r['mflop']:.1f}× | "
            + " | ".join(f"{r['mse'][s]:.4g} ({r['mse'][s] / best[s]:.2f})" for s in sig)
            + f" | {'yes' if r['keeps_accuracy'] else 'no'} | {'yes' if r['beats_tikhonov'] else 'no'} | "
              f"{r['spectra_per_s']:,.0f} | {100 * r['floor_share']:.0f} % |" for k, r in results.items()]
    verdict = (f"**Shipped: `{NAME}` = {chosen}** ({results[chosen]['mflop']:.2f} MFLOP per spectrum, "
               f"{ref_mflop / results[chosen]['mflop']:.1f}× fewer than the reference; sha256 `{summary['sha256']}`)."
               if chosen else "**No candidate kept the accuracy and beat tuned Tikhonov: nothing shipped.**")
    text = f"""# Leaner rRIM update networks: accuracy against FLOPs

Generated by `{command}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC ({wall_s:.0f} s; {machine_description()};
the machine is shared, so throughputs were measured round-robin in one loop and compare only with each other).

Every network: the same data (4000 noise-mixed Gaussian-mixture spectra at 100 K, seed 0), {EPOCHS} epochs,
Adam lr 1e-3, batch 32; only the GRU width (hidden) and the steps N_t differ. Test MSE on the
held-out split re-noised at each σ (seed {EVAL_SEED}), in brackets relative to the best network ({best_key}:
the lowest geometric-mean MSE over σ); tuned
Tikhonov (weight chosen on the validation split at the same σ): {', '.join(f'σ = {s}: {v:.4g}' for s, v in tikhonov.items())}.
Throughput: the runtime's session on all {available_cpus()} CPUs (concurrent one-thread calls), batch {BATCH}, median of 5 rounds; share of
the floor = spectra/s × FLOPs per spectrum over the float32 GEMM rate measured in the same run
({gemm / 1e9:.0f} GFLOP/s, 1024³).

| network | MFLOP/spectrum | fewer than reference | {' | '.join(f'MSE σ = {s}' for s in sig)} | within {100 * TOLERANCE:g} % of best | beats tuned Tikhonov | spectra/s | % of floor |
|---|---:|---:|{'---:|' * len(sig)}---|---|---:|---:|
{chr(10).join(rows)}

{verdict}

Rule: the leanest candidate whose MSE is within {100 * TOLERANCE:g} % of the best network's at every σ and below tuned
Tikhonov's at every σ. Issue 8 asks for ≥ 4× fewer FLOPs than the shipped network ({ref_mflop:.2f} MFLOP) and
≥ 10,000 spectra/s on this machine.
"""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rrim.export.lean_models", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="folder of the training runs (reused when finished)")
    parser.add_argument("--models-dir", default=str(MODELS_DIR))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = " ".join(["python -m rrim.export.lean_models", *(argv if argv is not None else sys.argv[1:])])
    print(json.dumps(build(Path(args.runs), Path(args.models_dir), command)["chosen"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
