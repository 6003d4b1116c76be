"""Training of the rRIM and the FCN/CNN baselines (the loop, its resumable state, prediction) on the data of
:mod:`rrim.export.data.fixed` or :mod:`rrim.export.data.adaptive`; checkpoints: :mod:`rrim.export.nets.checkpoints`.

Units: spectra y in meV enter scaled, y/s (s = ``operator.scale``); A is A/s and P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ,
both from :class:`rrim.ForwardOperator`, cast to float32. Glue functions x (batch, n_Ω) are dimensionless.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rrim.export.config import Config, config_from_dict
from rrim.export.data.adaptive import adaptive_physics
from rrim.export.data.fixed import physics_tensors, training_data
from rrim.export.nets.baselines import CNN, FCN
from rrim.export.nets.checkpoints import build_model, load_checkpoint, save_checkpoint, warm_start
from rrim.export.nets.recurrent import RRIM, AdaptiveRRIM
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import SyntheticDataset

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history``: one dict per epoch (epoch, train_loss, val_mse, seconds);
    ``test_metrics``: ``test_mse`` of the final estimate (and ``step_mse`` per rRIM iterate)."""

    model: nn.Module
    config: Config
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    checkpoint_path: Path | None = None
    test_metrics: dict = field(default_factory=dict)
    seconds: float = 0.0
    finished: bool = True


def estimates(model: nn.Module, y_scaled: torch.Tensor, *physics: torch.Tensor) -> list[torch.Tensor]:
    """The model's estimates of x for scaled spectra (B, n_ω): all rRIM iterates (``physics`` = (A, P),
    or :func:`adaptive_physics` for the adaptive rRIM), or [FCN/CNN output] (physics unused)."""
    if isinstance(model, (RRIM, AdaptiveRRIM)):
        return model(y_scaled, *physics)
    return [model(y_scaled)]


def step_loss(xs: list[torch.Tensor], x_true: torch.Tensor, weights: tuple[float, ...] = (),
              row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_t w_t·MSE(x_t, x_true) over the estimates ``xs`` (w_t = 1 when ``weights`` is empty); with
    ``row_weights`` (B,) each spectrum's squared error is weighted (mean over the batch)."""
    w = weights or (1.0,) * len(xs)
    if row_weights is None:
        return sum(wt * torch.mean((x - x_true) ** 2) for wt, x in zip(w, xs))
    return sum(wt * torch.mean(((x - x_true) ** 2).mean(1) * row_weights) for wt, x in zip(w, xs))


def relative_weights(y: torch.Tensor, x_true: torch.Tensor, physics) -> torch.Tensor:
    """1/(MSE(x_T, x) + 1e-4·mean x²) per spectrum (B,) of the adaptive rRIM's inputs β = y (B, r) and
    physics (S, Vt, h, …), x_T = max(0, P_h y) the Tikhonov solution at the spectrum's weight: a
    noise-level scale, whatever the model starts from (a start much closer to the truth, the prior's,
    would weigh a few spectra by 10⁵)."""
    S, Vt, h = physics[:3]
    with torch.no_grad():
        err = ((torch.relu((y * (S / (S * S + h))) @ Vt) - x_true) ** 2).mean(1)
        return 1.0 / (err + 1e-4 * (x_true ** 2).mean(1))


def evaluate_groups(model: nn.Module, groups: list[tuple], relative: bool = False) -> np.ndarray:
    """:func:`evaluate` over several (y, x, physics) groups, weighted by their sizes."""
    n = sum(len(g[0]) for g in groups)
    return sum(evaluate(model, y, x, *physics, relative=relative) * len(y) for y, x, physics in groups) / n


@torch.no_grad()
def evaluate(model: nn.Module, y_scaled, x_true, *physics, batch_size: int = 256, relative: bool = False) -> np.ndarray:
    """MSE of every estimate (for the rRIM: each iterate x_1…x_N) over a split; shape (n_estimates,).
    With ``relative``, each spectrum's squared error is weighted as by the 'relative' loss
    (:func:`relative_weights`). Per-spectrum physics (the positions ``model.PER_SPECTRUM``: the
    adaptive rRIM's h…) is sliced with the batch."""
    model.eval()
    total, n = None, len(y_scaled)
    rows = getattr(model, "PER_SPECTRUM", ())
    for i in range(0, n, batch_size):
        part = [p[i:i + batch_size] if k in rows else p for k, p in enumerate(physics)]
        y, x = y_scaled[i:i + batch_size], x_true[i:i + batch_size]
        w = relative_weights(y, x, part) if relative else torch.ones(len(y))
        err = torch.stack([(((e - x) ** 2).mean(1) * w).sum() for e in estimates(model, y, *part)]).double()
        total = err if total is None else total + err
    return (total / n).numpy()


def _rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)


def train(config: Config, operator: ForwardOperator | None = None, data: SyntheticDataset | None = None,
          checkpoint: bool = True) -> TrainResult:
    """Train ``config.model`` with Adam and BPTT through all steps; keep the best-validation weights.

    Gradients are clipped to norm ``training.clip_norm``; the learning rate follows the plateau
    schedule of :class:`rrim.export.config.TrainingConfig`. Stops after ``training.patience`` epochs
    without a lower validation MSE of the final estimate, after ``max_epochs``, when the rate falls
    below ``min_lr``, or once ``time_budget_s`` (if > 0) is spent (checked after every batch).
    With ``checkpoint``, the whole state is saved to ``<output_dir>/state.pt`` after every epoch and
    a run with the same configuration resumes from it; ``chunk_s`` > 0 ends the call early,
    unfinished (``result.finished`` False, no ``model.pt``). A finished run writes
    ``<output_dir>/model.pt`` and ``history.json``. Seeded: same config, same CPU → same weights.
    ``operator``/``data`` default to ``config.operator.build()`` and :func:`make_data`.
    """
    t = config.training
    operator = config.operator.build() if operator is None else operator
    source = training_data(config, operator, data)
    train_rows = source.splits["train"]
    if len(train_rows) == 0 or len(source.splits["val"]) == 0:
        raise ValueError(f"data.n: {config.data.n} spectra leave an empty training or validation split")
    noise_rng = np.random.default_rng(np.random.SeedSequence(config.data.seed).spawn(5)[4])
    val_groups = source.groups("val", noise_rng)
    test_groups = source.groups("test", noise_rng)

    torch.manual_seed(t.seed)
    model = build_model(config.model, operator)
    if isinstance(model, (FCN, CNN)):
        model.standardize(source.y[torch.as_tensor(train_rows)])
    if t.init_from:
        warm_start(model, t.init_from)
    if getattr(source, "prior", None) is not None:
        model.prior = source.prior
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=t.lr_factor, patience=t.lr_patience) if t.lr_patience else None
    order_rng = np.random.default_rng(t.seed)
    result = TrainResult(model=model, config=config)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    stale, first_epoch = 0, 1
    out = Path(t.output_dir)
    state_path = out / "state.pt"
    if checkpoint and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if _same_config(state.get("config"), config):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(json.loads(state["scheduler"]))
            best_state, stale = state["best_state"], int(state["stale"])
            result.history = json.loads(state["history"])
            result.best_val_loss, result.best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
            _set_rng_state(order_rng, state["order_rng"])
            _set_rng_state(noise_rng, state["noise_rng"])
            first_epoch = len(result.history) + 1
            log.info("resuming %s at epoch %d", state_path, first_epoch)
    start, out_of_time, finished = time.perf_counter(), False, True
    spent = result.history[-1]["seconds"] if result.history else 0.0
    bar = _progress(t.max_epochs)
    for epoch in range(first_epoch, t.max_epochs + 1):
        if t.chunk_s and time.perf_counter() - start > t.chunk_s:
            finished = False
            break
        model.train()
        order = order_rng.permutation(len(train_rows))
        while -(-len(order) // t.batch_size) < t.min_epoch_steps:
            order = np.concatenate([order, order_rng.permutation(len(train_rows))])
        running = 0.0
        for i in range(0, len(order), t.batch_size):
            y, x, physics = source.batch(train_rows[order[i:i + t.batch_size]], noise_rng)
            rw = relative_weights(y, x, physics) if t.loss == "relative" else None
            loss = step_loss(estimates(model, y, *physics), x, t.step_weights, rw)
            opt.zero_grad()
            loss.backward()
            if t.clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            opt.step()
            running += loss.item() * len(y)
            if t.time_budget_s and spent + time.perf_counter() - start > t.time_budget_s:
                out_of_time = True
                break
        val = float(evaluate_groups(model, val_groups, relative=t.loss == "relative")[-1])
        seen = min(i + t.batch_size, len(order))
        row = dict(epoch=epoch, train_loss=running / seen, val_mse=val, seconds=spent + time.perf_counter() - start,
                   lr=opt.param_groups[0]["lr"])
        result.history.append(row)
        if val < result.best_val_loss:
            result.best_val_loss, result.best_epoch, stale = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if sched is not None:
            sched.step(val)
        log.info("epoch %d: train loss %.4g, val MSE %.4g (best %.4g at epoch %d), lr %.3g, %.1f s",
                 epoch, row["train_loss"], val, result.best_val_loss, result.best_epoch, row["lr"], row["seconds"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_mse=f"{val:.3g}")
        if checkpoint:
            out.mkdir(parents=True, exist_ok=True)
            _save_state(state_path, config, model, opt, sched, best_state, stale, result, order_rng, noise_rng)
        if stale >= t.patience or out_of_time or opt.param_groups[0]["lr"] < t.min_lr:
            break
    if bar is not None:
        bar.close()
    result.finished = finished
    result.seconds = result.history[-1]["seconds"] if result.history else 0.0
    if not finished:
        return result
    model.load_state_dict(best_state)
    model.eval()
    if test_groups:
        mse = evaluate_groups(model, test_groups)
        result.test_metrics = {"test_mse": float(mse[-1]), "step_mse": [float(m) for m in mse]}
    if checkpoint:
        out.mkdir(parents=True, exist_ok=True)
        extra = {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                 "test_metrics": result.test_metrics, "seconds": result.seconds,
                 "operator": operator.describe()}
        result.checkpoint_path = save_checkpoint(out / "model.pt", model, config, extra)
        (out / "history.json").write_text(json.dumps(result.history, indent=1))
    return result


def _same_config(saved: str | None, config: Config) -> bool:
    """Whether a state's configuration (JSON) is ``config``; settings added since it was saved count as
    their defaults, so a newer rrim resumes an older run."""
    try:
        return saved is not None and config_from_dict(json.loads(saved)) == config
    except ValueError:
        return False


def _save_state(path: Path, config, model, opt, sched, best_state, stale, result, order_rng, noise_rng) -> None:
    """Everything :func:`train` needs to resume, written atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": json.dumps(config.to_dict()), "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": json.dumps(sched.state_dict() if sched is not None else {}),
                "best_state": best_state, "stale": stale, "history": json.dumps(result.history),
                "best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                "order_rng": _rng_state(order_rng), "noise_rng": _rng_state(noise_rng)}, tmp)
    os.replace(tmp, path)


def trained(config: Config, retrain: bool = False):
    """(model, config, extra, checkpoint path) of ``config``'s finished run in its output folder,
    training it first when there is none, it was made with another configuration, or ``retrain``."""
    path = Path(config.training.output_dir) / "model.pt"
    if retrain or not path.exists() or load_checkpoint(path)[1] != config:
        train(config)
    return (*load_checkpoint(path), path)


def _progress(total: int):
    """A tqdm bar on stderr only when stderr is a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="epoch", file=sys.stderr, leave=False)


def predict(model: nn.Module, y_meV, operator: ForwardOperator, h: float) -> np.ndarray:
    """Glue functions (…, n_Ω) float64 for scattering rates ``y_meV`` (…, n_ω) in meV (final estimate),
    measured on every ω point. The adaptive rRIM chooses its weight per spectrum (``h`` unused)."""
    y = np.asarray(y_meV, dtype=np.float64)
    if y.ndim == 0 or y.shape[-1] != operator.shape[0]:
        raise ValueError(f"y_meV: last axis must have length {operator.shape[0]} (n_omega), got shape {y.shape}")
    flat = y.reshape(-1, y.shape[-1]) / operator.scale
    if isinstance(model, AdaptiveRRIM):
        first, *physics = adaptive_physics(operator, flat, prior=model.prior)
    else:
        first, physics = torch.as_tensor(flat, dtype=torch.float32), physics_tensors(operator, h)
    model.eval()
    with torch.no_grad():
        x = estimates(model, first, *physics)[-1]
    return x.numpy().astype(np.float64).reshape(*y.shape[:-1], -1)
