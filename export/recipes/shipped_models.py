"""Recipes of the shipped models: train (or resume) from the committed configuration, export, evaluate
through the runtime, write the card and the index entry.

    python -m rrim.export.recipes.shipped_models NAME --models-dir DIR [--checkpoint PATH] [--checkpoints-dir DIR]

NAME is one of :data:`RECIPES`. Training resumes from ``training.output_dir`` (the state is saved
every epoch); an unfinished run stops the build. The evaluation runs the exported ONNX file through
:func:`rrim.inversion.engine.invert` — exactly what users run — on the held-out glue functions of the
training configuration (spectra from the 2× finer grid), at every noise level of :data:`EVAL_SIGMAS`,
against Tikhonov with the validation-tuned weight (the bar) and with GCV; it also reports the
network's own output before the data-consistency steps (the ablation), the misfit in units of the
noise, partial ω coverage and the out-of-distribution shapes; a model with a ``compare_to`` is also
compared with that model on the same spectra.

Nothing is written where it was not asked for: the model, its golden file, card, metrics and index
entry go to ``--models-dir`` (the repository's copy is ``runtime/data/models``), and the finished
training is kept in ``--checkpoints-dir`` when given (the repository keeps them in
``export/checkpoints``, committed, so that export and evaluation rerun from a clone with
``--checkpoint export/checkpoints/NAME.pt`` and the benchmarks run PyTorch from them).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrim.export.data.adaptive import data_splits, draw_glue
from rrim.export.config import CONFIGS, Config, load_config
from rrim.export.recipes.evaluation import noisy as _noisy, rel_l2 as _rel, scores as _scores
from rrim.export.onnx.export import export_checkpoint, golden_path, machine_description
from rrim.export.recipes.ridge import Ridge
from rrim.export.training.loop import trained
from rrim.inversion.engine import invert
from rrim.inversion.feeds import model_feeds, physics_at
from rrim.inversion.regularization import POLISH_ITERATIONS, choose_weights, masked_svd, tikhonov_step
from rrim.models.loading import load_model
from rrim.physics.glue_families import coverage_masks, ood_shapes, refined_grid
from rrim.physics.operator import ForwardOperator
from rrim.solvers import Tikhonov, tune_tikhonov_weight

EVAL_SIGMAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
EVAL_SEED = 2026
#: Held-out glue functions evaluated per setting (the first of the test split).
N_EVAL = 400
#: Training pairs of the ridge baseline (the first of the training split), fitted at each σ.
N_RIDGE = 4000


@dataclass(frozen=True)
class Recipe:
    config: str
    version: str
    temperatures: tuple[float, ...] = (100.0,)
    compare_to: str | None = None
    summary: str = ""


RECIPES = {
    "rrim-default": Recipe("rrim_default.toml", "2.3.0", summary="the default model: 100 K, any measured ω range, noise 0…0.1"),
    "rrim-lean": Recipe("rrim_lean.toml", "2.4.0", compare_to="rrim-default",
                        summary="half the GRU width and 4 of the 8 steps of rrim-default: faster"),
    "rrim-any-temperature": Recipe("rrim_any_temperature.toml", "2.3.0", temperatures=(10.0, 20.0, 50.0, 100.0, 200.0, 300.0),
                                   summary="one model for 10–300 K (A(T) and its basis fed at run time)"),
}


def network_output(model, y_meV: np.ndarray, temperature: float) -> np.ndarray:
    """The graph's own output (before the data-consistency steps) for fully measured spectra."""
    op, a32, p32 = physics_at(model, temperature)
    return model.session("cpu").run(model_feeds(model, op, a32, p32, y_meV / op.scale)).astype(np.float64)


def evaluate(model, config: Config, temperatures, others=()) -> dict:
    """Held-out metrics through the runtime (module doc); ``others``: models compared on the same spectra."""
    base = model.info.base_operator()
    x_fine = draw_glue(config, base)
    splits = data_splits(config)
    k = config.data.fine_factor
    test, val = splits["test"][:N_EVAL], splits["val"][:N_EVAL]
    fine = refined_grid(base.Omega, k) if k > 1 else base.Omega
    rng = np.random.default_rng(EVAL_SEED)
    out = {"n_test": int(test.size), "held_out": {}, "coverage": {}, "ood": {}}
    for T in temperatures:
        op = base.at_temperature(T)
        op_fine = ForwardOperator(base.omega, fine, T, base.kernel, base.scale)
        x, xv = x_fine[test, ::k], x_fine[val, ::k]
        clean, clean_val = op_fine.forward(x_fine[test]), op_fine.forward(x_fine[val])
        train_rows = splits["train"][:N_RIDGE]
        clean_train = op_fine.forward(x_fine[train_rows])
        for sigma in EVAL_SIGMAS if len(temperatures) == 1 or T == 100.0 else (1e-3, 1e-2):
            noise = sigma * np.abs(clean).max(axis=1)
            y = clean + noise[:, None] * rng.standard_normal(clean.shape)
            yv = _noisy(clean_val, sigma, rng)
            r = invert(y, model, provider="cpu", temperature=T)
            cell = {"rrim": _scores(r.glue, x, r.scattering_rate_fit, y, noise),
                    "rrim_network_only": _scores(network_output(model, y, T), x),
                    "tikhonov_tuned": _scores(Tikhonov(op, rule="fixed", weight=tune_tikhonov_weight(op, yv, xv)).fit(y).x_, x),
                    "tikhonov_gcv": _scores(Tikhonov(op, rule="gcv").fit(y).x_, x),
                    "ridge": _scores(Ridge().fit(_noisy(clean_train, sigma, rng), x_fine[train_rows, ::k], yv, xv).predict(y), x)}
            for other in others:
                cell[other.name] = _scores(invert(y, other, provider="cpu", temperature=T).glue, x)
            out["held_out"][f"{T:g} K, σ={sigma:g}"] = cell
    out["coverage"] = _coverage(model, x_fine[test, ::k], ForwardOperator(base.omega, fine, base.temperature, base.kernel, base.scale).forward(x_fine[test]), rng)
    shapes = ood_shapes(base.Omega)
    xo = np.stack(list(shapes.values()))
    for sigma in (0.0, 1e-3):
        y = base.forward(xo)
        y = y + sigma * np.abs(y).max(axis=1, keepdims=True) * rng.standard_normal(y.shape)
        weight = tune_tikhonov_weight(base, y, xo)
        out["ood"][f"{sigma:g}"] = {"rrim": _rel(invert(y, model, provider="cpu").glue, xo).tolist(),
                                    "tikhonov_best_weight": _rel(Tikhonov(base, rule="fixed", weight=weight).fit(y).x_, xo).tolist(),
                                    "shapes": list(shapes)}
    return out


def _coverage(model, x, clean, rng, sigma: float = 1e-3, n_masks: int = 8) -> dict:
    """Partial ω coverage (masks of :func:`rrim.physics.glue_families.coverage_masks`), σ = 1e-3: the rRIM against
    Tikhonov (GCV) on the measured points; groups of spectra share a mask."""
    op = model.info.base_operator()
    masks = coverage_masks(op.omega, n_masks, rng, full_fraction=0.0)
    rows = np.array_split(np.arange(len(x)), n_masks)
    rr, tk = [], []
    for mask, idx in zip(masks, rows):
        noise = sigma * np.abs(clean[idx]).max(axis=1)
        y = (clean[idx] + noise[:, None] * rng.standard_normal(clean[idx].shape)) * mask
        rr.append(invert(y, model, provider="cpu", valid_omega=mask).glue)
        svd = masked_svd(op.scaled_matrix, mask)
        ys = y / op.scale
        tk.append(tikhonov_step(ys, svd, choose_weights(ys, svd, mask, clip=False)))
    return {"sigma": sigma, "rrim": _scores(np.concatenate(rr), x), "tikhonov_gcv_measured_points": _scores(np.concatenate(tk), x),
            "measured_fraction": float(masks.mean())}


def _cell(c: dict) -> str:
    text = f"{c['mse']:.3g} / {c['rel_l2']:.3f}"
    return text + (f" / {c['misfit_over_noise']:.2f}" if "misfit_over_noise" in c else "")


#: the start x₀ of each ``model.x0``, as the card words it
X0_TEXT = {"zeros": "0", "tikhonov": "P_h y", "prior": "the estimate of the Gaussian prior of the training glue"}


def _paths(model) -> str:
    """The update network's paths beside its local one, as the card words them."""
    paths = ([f"a coarse path (the state pooled by {model.context} points)"] if model.context else []) + \
            ([f"a global path (the whole Ω grid through a dense layer of width {model.global_width})"] if model.global_width else [])
    return " with " + " and ".join(paths) if paths else ""


def card(name: str, recipe: Recipe, summary: dict, metrics: dict, config: Config, extra: dict, command: str,
         wall_s: float) -> str:
    """The markdown model card."""
    op = config.operator.build()
    c, d, t = config.model, config.data, config.training
    held = metrics["held_out"]
    methods = [m for m in next(iter(held.values()))]
    rows = "\n".join(f"| {k} | " + " | ".join(_cell(v[m]) for m in methods) + " |" for k, v in held.items())
    ratio_rows = "\n".join(f"| {k} | {v['rrim']['mse'] / v['tikhonov_tuned']['mse']:.2f} | "
                           f"{v['rrim']['mse'] / v['rrim_network_only']['mse']:.2f} |" for k, v in held.items())
    cov = metrics["coverage"]
    ood = metrics["ood"]
    ood_rows = "\n".join(f"| {shape} | " + " | ".join(f"{ood[s]['rrim'][i]:.3f} / {ood[s]['tikhonov_best_weight'][i]:.3f}"
                                                       for s in ood) + " |" for i, shape in enumerate(ood["0"]["shapes"]))
    lo, hi = summary["temperature_range_K"]
    return f"""# {name} {recipe.version}

{recipe.summary[0].upper() + recipe.summary[1:]}. The noise-adaptive rRIM: scaled spectra y/s and, per
spectrum, the Tikhonov weight h chosen by GCV from the data itself (no noise level to give); the
singular basis of A/s on the measured ω points (any measured range, gaps) and A/s are graph inputs
(physics-as-input form), {c.n_steps} unrolled steps, then {c.correction_steps} float64 data-consistency steps
x ← max(0, x + P_h(y − A x)) and {POLISH_ITERATIONS} projected-gradient iterations (x ≥ 0) in the runtime, so
the glue explains the data to within the noise.

- **file**: `{name}.onnx`, {summary['bytes']} bytes, sha256 `{summary['sha256']}`; golden `{name}.golden.npz`;
  onnxruntime vs PyTorch at export: max|Δx| = {summary['parity_max_rel']:.2g}·max|x| (bar 1e-4)
- **regenerate**: `{command}` (config `export/configs/{recipe.config}`, seeded; the training resumes
  from its output folder). This build took {wall_s:.0f} s on {machine_description()}.
- Kernel {op.kernel.name}, T = {f"{lo:g} K" if lo == hi else f"{lo:g}…{hi:g} K (outside: flagged)"}, ω and Ω: {len(op.omega)} points {op.omega.values[0]:g}…{op.omega.values[-1]:g} meV,
  s = {op.scale:g} meV. Glue outside the Ω grid is not represented; output ≥ 0.

## Training

GRU width {c.hidden}{_paths(c)}, N_t = {c.n_steps}, x₀ = {X0_TEXT[c.x0]}; N = {d.n} glue functions of the '{d.prior}' prior
(split 0.8/0.1/0.1), spectra from a {d.fine_factor}× finer Ω grid, noise σ·max y with σ from {list(d.sigmas)}
(each jittered by ±{d.sigma_jitter_decades / 2:g} decade), ω coverage '{d.coverage}' (partial ranges 2–15 … 200–400 meV,
absorption bands, dead channels; a quarter fully measured), drawn afresh for every batch. Loss '{t.loss}'
with step weights {list(t.step_weights) or 'all 1'}; Adam lr {t.lr:g}, batch {t.batch_size}, reduce-on-plateau ×{t.lr_factor:g}
after {t.lr_patience} epochs, stop after {t.patience} epochs without improvement:
{extra.get('epochs', '?')} epochs, best at epoch {extra['best_epoch']} (validation {extra['best_val_loss']:.4g}), {extra['seconds']:.0f} s of training.

## Held-out spectra

{metrics['n_test']} held-out glue functions of the training prior, fully measured, seed {EVAL_SEED}. Cells: MSE / median
relative L2 error ‖x̂ − x‖/‖x‖ (/ median RMS misfit in units of the noise, rRIM only). `rrim` is what
`rrim invert` returns; `rrim_network_only` the graph's output before the data-consistency steps
(the ablation); `tikhonov_tuned` uses the weight with the lowest validation MSE at that σ (it knows
the truth: the bar); `tikhonov_gcv` chooses per spectrum; `ridge` is the learned linear estimator
y → x fitted at that σ on {N_RIDGE} training pairs of the same prior (weight on the validation split).

| setting | {' | '.join(methods)} |
|---|{'---|' * len(methods)}
{rows}

| setting | rRIM / tuned Tikhonov (MSE) | with / without the data-consistency steps |
|---|---|---|
{ratio_rows}

## Partial ω coverage

σ = {cov['sigma']:g}, {cov['measured_fraction']:.0%} of the ω points measured on average (8 masks of partial
ranges with gaps): rRIM {_cell(cov['rrim'])}; Tikhonov (GCV) on the measured points {_cell(cov['tikhonov_gcv_measured_points'])}.

## Out-of-distribution shapes

`rrim.physics.glue_families.ood_shapes`: relative L2 error of the rRIM / of Tikhonov with the best weight for these spectra.

| shape | {' | '.join(f'σ = {s}' for s in ood)} |
|---|{'---|' * len(ood)}
{ood_rows}
"""


def write_index(models_dir: Path, entry: dict) -> Path:
    """Add or replace ``entry`` (with a ``name``) in ``models_dir/index.json``; other models are kept."""
    path = Path(models_dir) / "index.json"
    index = json.loads(path.read_text()) if path.exists() else {}
    index = index.get("models", index)
    index[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
    path.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return path


def history_paths(checkpoint: Path) -> tuple[Path, Path]:
    """Where a training's epoch history may sit: beside it in its run folder, or as NAME.history.json
    beside a kept checkpoint NAME.pt."""
    return checkpoint.with_name("history.json"), checkpoint.with_suffix(".history.json")


def build(name: str, models_dir: Path, checkpoint=None, command: str = "", checkpoints_dir: Path | None = None) -> dict:
    """Train or resume (or take ``checkpoint``), export, evaluate, and write model, golden, card and index
    into ``models_dir``; keep the finished training as ``checkpoints_dir/NAME.pt`` when given."""
    start = time.perf_counter()
    recipe = RECIPES[name]
    config = load_config(CONFIGS / recipe.config)
    if checkpoint is None:
        checkpoint = trained(config)[3]
    from rrim.export.nets.checkpoints import load_checkpoint

    _, saved, extra = load_checkpoint(checkpoint)
    if saved != config:
        raise ValueError(f"{checkpoint}: trained with another configuration than export/configs/{recipe.config}")
    history = next((h for h in history_paths(Path(checkpoint)) if h.exists()), None)
    extra["epochs"] = len(json.loads(history.read_text())) if history else None
    if checkpoints_dir is not None:
        Path(checkpoints_dir).mkdir(parents=True, exist_ok=True)
        kept = Path(checkpoints_dir) / f"{name}.pt"
        if Path(checkpoint).resolve() != kept.resolve():
            shutil.copyfile(checkpoint, kept)
            if history:
                shutil.copyfile(history, history_paths(kept)[1])
    T = config.operator.training_temperatures()
    path = Path(models_dir) / f"{name}.onnx"
    summary = export_checkpoint(checkpoint, path, form="input", name=name, model_version=recipe.version,
                                temperature_range_K=(min(T), max(T)), command=command)
    summary["temperature_range_K"] = (min(T), max(T))
    write_index(path.parent, {"name": name, "file": path.name, "sha256": summary["sha256"], "form": "input",
                              "golden": golden_path(path).name, "card": f"{name}.md",
                              "model_version": recipe.version, "bytes": summary["bytes"]})
    model = load_model(path)
    others = [load_model(Path(models_dir) / f"{recipe.compare_to}.onnx")] if recipe.compare_to else []
    metrics = evaluate(model, config, recipe.temperatures, others)
    (path.parent / f"{name}.md").write_text(card(name, recipe, summary, metrics, config, extra, command,
                                                 time.perf_counter() - start))
    (path.parent / f"{name}.metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return {**summary, "metrics": metrics}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rrim.export.recipes.shipped_models", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--checkpoint", help="a finished training of the recipe's configuration (default: train/resume)")
    parser.add_argument("--models-dir", required=True, help="output folder of the model files (created)")
    parser.add_argument("--checkpoints-dir", help="keep the finished training here as NAME.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = " ".join(["python -m rrim.export.recipes.shipped_models", *(argv if argv is not None else sys.argv[1:])])
    Path(args.models_dir).mkdir(parents=True, exist_ok=True)
    summary = build(args.name, Path(args.models_dir), args.checkpoint, command,
                    Path(args.checkpoints_dir) if args.checkpoints_dir else None)
    print(json.dumps({k: summary[k] for k in ("path", "sha256", "bytes", "parity_max_rel")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
