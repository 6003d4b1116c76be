"""The shipped any-temperature model and its temperature table.

``python -m rrim.export.any_temperature_model`` trains (seeded, fixed epoch count, so the work does
not depend on the machine's load) one physics-as-input rRIM over 10–300 K and, with the same
network, data and epochs, one model at each fixed temperature of :data:`FIXED_T`; exports the
any-temperature model (input form) to ``runtime/models/rrim-any-temperature.onnx`` with its golden
file, card and index entry; and writes the card's temperature table: error at each temperature of
:data:`EVAL_T` against the fixed-temperature models and tuned Tikhonov at the same temperature.
Finished trainings in ``--runs`` are reused (``--retrain`` redoes them).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..models import MODELS_DIR
from ..solvers import Tikhonov, tune_tikhonov_weight
from ..synthetic import add_noise
from .config import Config, DataConfig, ModelConfig, OperatorConfig, TrainingConfig
from .default_model import TRAIN_SIGMAS, write_index
from .onnx_export import export_checkpoint, golden_path, machine_description
from .training import make_data, predict, trained

NAME = "rrim-any-temperature"
MODEL_VERSION = "1.0.0"
#: Temperature range of the model (K): the training draws from 16 log-spaced temperatures in it.
RANGE_K = (10.0, 300.0)
#: Temperatures (K) of the fixed-temperature models trained for comparison.
FIXED_T = (20.0, 100.0, 300.0)
#: Temperatures (K) of the table; 20, 50 and 200 K are not among the 16 training temperatures.
EVAL_T = (10.0, 20.0, 50.0, 100.0, 200.0, 300.0)
#: Noise levels of the table (σ·max y).
EVAL_SIGMAS = (1e-3, 1e-2)
EVAL_SEED = 2027
EPOCHS = 20


def training_config(temperature: float | None, runs: Path) -> Config:
    """The shared training setup: hidden 16, N_t 15, N = 4000 mixed-noise spectra, 8 epochs; over
    :data:`RANGE_K` when ``temperature`` is None, else at that temperature."""
    operator = (OperatorConfig(temperature_range=RANGE_K) if temperature is None
                else OperatorConfig(temperature=temperature))
    tag = "any" if temperature is None else f"{temperature:g}K"
    return Config(model=ModelConfig(kind="rrim", hidden=16, n_steps=15, x0="tikhonov", nonnegative=True),
                  data=DataConfig(n=4000, sigma=TRAIN_SIGMAS, seed=0), operator=operator,
                  training=TrainingConfig(lr=1e-3, batch_size=32, max_epochs=EPOCHS, patience=EPOCHS, seed=0,
                                          output_dir=str(runs / f"temperature-{tag}")))


def _rel_l2(x_hat, x) -> float:
    return float(np.median(np.linalg.norm(x_hat - x, axis=-1) / np.linalg.norm(x, axis=-1)))


def temperature_table(any_model, fixed: dict, cfg: Config) -> dict:
    """{σ: {T: {method: median relative L2 error}}} on the test split's glue functions, spectra made
    at each T; methods: the any-temperature model, the fixed model trained at T (if any), the
    100 K model used at T, tuned Tikhonov at T (weight tuned on the validation split at T and σ)."""
    base = cfg.operator.build()
    data = make_data(cfg, base)
    x_test, x_val = data.subset("test")[0], data.subset("val")[0]
    h = cfg.training.h
    rng = np.random.default_rng(EVAL_SEED)
    table = {}
    for sigma in EVAL_SIGMAS:
        rows = table[f"{sigma:g}"] = {}
        for T in EVAL_T:
            op = base.at_temperature(T)
            y = add_noise(op.forward(x_test), sigma, rng)
            weight = tune_tikhonov_weight(op, add_noise(op.forward(x_val), sigma, rng), x_val)
            row = rows[f"{T:g}"] = {"any-temperature rRIM": _rel_l2(predict(any_model, y, op, h), x_test),
                                    "tuned Tikhonov": _rel_l2(Tikhonov(op, rule="fixed", weight=weight).fit(y).x_, x_test)}
            if T in fixed:
                row["rRIM trained at T"] = _rel_l2(predict(fixed[T], y, op, h), x_test)
            row["100 K rRIM used at T"] = _rel_l2(predict(fixed[100.0], y, base.at_temperature(100.0), h), x_test)
    return table


def table_markdown(table: dict) -> str:
    methods = ("any-temperature rRIM", "rRIM trained at T", "100 K rRIM used at T", "tuned Tikhonov")
    lines = []
    for sigma, rows in table.items():
        lines += [f"**σ = {sigma}**", "", "| T (K) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for T, row in rows.items():
            best = min(row.values())
            cells = [("**%.3f**" if row[m] == best else "%.3f") % row[m] if m in row else "—" for m in methods]
            lines.append(f"| {T} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def card(summary: dict, table: dict, cfg: Config, extra: dict, command: str, wall_s: float) -> str:
    op = cfg.operator.build()
    om = op.omega.values
    return f"""# {NAME} {MODEL_VERSION}

One rRIM for any temperature from {RANGE_K[0]:g} to {RANGE_K[1]:g} K: physics-as-input form (inputs y/s, A(T)/s and
P(T); the runtime computes A and P from the shared physics once per temperature present in an
archive, spectra of one archive may differ). Output: glue I²χ(Ω) ≥ 0 on the Ω grid.

- **file**: `{NAME}.onnx`, {summary['bytes']} bytes, sha256 `{summary['sha256']}`; golden
  `{NAME}.golden.npz`; onnxruntime vs PyTorch at export: max|Δx| = {summary['parity_max_rel']:.2g}·max|x|
- **use**: `rrim invert FILE --model {NAME}` (or `reprocess … --model {NAME}`); the archive's
  temperatures (K, per spectrum or per file) are used; outside {RANGE_K[0]:g}–{RANGE_K[1]:g} K spectra are flagged
  `temperature_out_of_range`.
- **regenerate**: `{command}` (trainings are seeded and run a fixed {EPOCHS} epochs).
- Kernel {op.kernel.name}, ω {len(om)} points {om[0]:g}…{om[-1]:g} meV, Ω the same, s = {op.scale:g} meV, h = {cfg.training.h:g}.

## Training

rRIM hidden = {cfg.model.hidden}, N_t = {cfg.model.n_steps}, x₀ = P y; N = {cfg.data.n} Gaussian-mixture glue functions
(split 0.8/0.1/0.1), noise σ per spectrum from {list(cfg.data.sigmas)}; for each batch one of
{cfg.operator.n_temperatures} log-spaced temperatures in {RANGE_K[0]:g}–{RANGE_K[1]:g} K is drawn and the batch's spectra are
made with A(T) (`temperature_range` in `rrim.export.config.OperatorConfig`). Adam lr {cfg.training.lr:g}, batch
{cfg.training.batch_size}, {EPOCHS} epochs (best validation MSE {extra['best_val_loss']:.4g} at epoch {extra['best_epoch']}, {extra['seconds']:.0f} s).
The fixed-temperature models of the table use the same network, data, seeds and epochs.
This command took {wall_s:.0f} s on {machine_description()} (shared).

This is a small, short training (2 shared CPU cores): absolute errors are higher than those of
the longer-trained `rrim-default` at 100 K. The table compares like with like.

## Error across temperatures

Median relative error ‖x̂ − x‖₂/‖x‖₂ over the {len(make_data(cfg, op).subset('test')[0])} test glue functions, spectra made
at each T with the shared physics and noise σ·max(y) (seed {EVAL_SEED}); best per row in bold.
"rRIM trained at T": the model trained only at that temperature (same budget); "100 K rRIM used
at T": a fixed 100 K model applied to spectra at T (what a baked model does when the temperature
is wrong); tuned Tikhonov: weight chosen on the validation split at the same T and σ.

{table_markdown(table)}"""


def build(models_dir: Path, runs: Path, retrain: bool, command: str) -> dict:
    start = time.perf_counter()
    fixed = {T: trained(training_config(T, runs), retrain)[0] for T in FIXED_T}
    any_model, cfg, extra, checkpoint = trained(training_config(None, runs), retrain)
    table = temperature_table(any_model, fixed, cfg)
    path = Path(models_dir) / f"{NAME}.onnx"
    summary = export_checkpoint(checkpoint, path, form="input", name=NAME, model_version=MODEL_VERSION,
                                temperature_range_K=RANGE_K, metrics={"median_rel_l2_by_sigma_and_T": table},
                                command=command)
    (path.parent / f"{NAME}.md").write_text(card(summary, table, cfg, extra, command, time.perf_counter() - start))
    write_index(path.parent, {"name": NAME, "file": path.name, "sha256": summary["sha256"], "form": "input",
                              "golden": golden_path(path).name, "card": f"{NAME}.md",
                              "model_version": MODEL_VERSION, "bytes": summary["bytes"]})
    return {**summary, "table": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rrim.export.any_temperature_model", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(MODELS_DIR), help="output folder (default: the package's models/)")
    parser.add_argument("--runs", default="runs", help="folder of the training runs (reused when finished)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = " ".join(["python -m rrim.export.any_temperature_model", *(argv if argv is not None else sys.argv[1:])])
    summary = build(Path(args.models_dir), Path(args.runs), args.retrain, command)
    print(json.dumps({k: summary[k] for k in ("path", "sha256", "bytes", "parity_max_rel")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
