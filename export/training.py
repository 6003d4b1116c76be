"""Training of the rRIM and the FCN/CNN baselines on seeded synthetic data; checkpoints; prediction.

Units: spectra y in meV enter scaled, y/s (s = ``operator.scale``); A is A/s and P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ,
both from :class:`rrim.ForwardOperator`, cast to float32. Glue functions x (batch, n_Ω) are dimensionless.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..operator import ForwardOperator
from ..synthetic import DatasetSettings, SyntheticDataset, add_noise, make_dataset
from .config import Config, ModelConfig, config_from_dict
from .nets import CNN, FCN, RRIM, RRIMSettings

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "rrim-checkpoint-1"


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


def build_model(model: ModelConfig, operator: ForwardOperator) -> nn.Module:
    """The network of ``model.kind`` for ``operator``'s grids (float32, freshly initialized)."""
    n_omega, n_Omega = operator.shape
    if model.kind == "rrim":
        return RRIM(RRIMSettings(hidden=model.hidden, n_steps=model.n_steps, x0=model.x0, nonnegative=model.nonnegative))
    if model.kind == "fcn":
        return FCN(n_omega, n_Omega, width=model.width, depth=model.depth)
    return CNN(n_omega, n_Omega, channels=model.channels, depth=model.depth)


def physics_tensors(operator: ForwardOperator, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A/s (n_ω, n_Ω), P (n_Ω, n_ω)) as float32 tensors, from the float64 operator."""
    return (torch.tensor(np.array(operator.scaled_matrix), dtype=torch.float32),
            torch.tensor(np.array(operator.preconditioner(h)), dtype=torch.float32))


def estimates(model: nn.Module, y_scaled: torch.Tensor, A: torch.Tensor, P: torch.Tensor) -> list[torch.Tensor]:
    """The model's estimates of x for scaled spectra (B, n_ω): all rRIM iterates, or [FCN/CNN output]."""
    if isinstance(model, RRIM):
        return model(y_scaled, A, P)
    return [model(y_scaled)]


def step_loss(xs: list[torch.Tensor], x_true: torch.Tensor, weights: tuple[float, ...] = ()) -> torch.Tensor:
    """Σ_t w_t·MSE(x_t, x_true) over the estimates ``xs`` (w_t = 1 when ``weights`` is empty)."""
    w = weights or (1.0,) * len(xs)
    return sum(wt * torch.mean((x - x_true) ** 2) for wt, x in zip(w, xs))


def make_data(config: Config, operator: ForwardOperator) -> SyntheticDataset:
    """The seeded dataset of ``config.data``. With several noise levels each spectrum gets one level
    drawn uniformly from the list (a fourth child stream of the data seed draws levels and noise)."""
    data = config.data
    if len(data.sigmas) == 1:
        return make_dataset(operator, DatasetSettings(n=data.n, sigma=data.sigmas[0], seed=data.seed))
    ds = make_dataset(operator, data.dataset_settings())
    rng = np.random.default_rng(np.random.SeedSequence(data.seed).spawn(4)[3])
    level = rng.integers(len(data.sigmas), size=data.n)
    y = ds.y_clean.copy()
    for i, s in enumerate(data.sigmas):
        y[level == i] = add_noise(ds.y_clean[level == i], s, rng)
    ds.y = y
    return ds


def _tensors(ds: SyntheticDataset, split: str, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = ds.subset(split)
    return (torch.as_tensor(y / scale, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32))


def physics_bank(config: Config, operator: ForwardOperator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A/s, P) tensors at each of ``config.operator.training_temperatures()`` (one for a fixed temperature)."""
    temps = config.operator.training_temperatures()
    if len(temps) == 1:
        return [physics_tensors(operator, config.training.h)]
    return [physics_tensors(operator.at_temperature(T), config.training.h) for T in temps]


def noisy_spectra(x: torch.Tensor, A: torch.Tensor, sigmas: tuple[float, ...], rng: np.random.Generator) -> torch.Tensor:
    """Scaled spectra A x + σ·max|A x|·ε (rows of ``x`` (B, n_Ω)), one σ of ``sigmas`` drawn per row."""
    y = x @ A.T
    level = torch.as_tensor(np.asarray(sigmas)[rng.integers(len(sigmas), size=len(x))], dtype=torch.float32)
    eps = torch.as_tensor(rng.standard_normal(tuple(y.shape)), dtype=torch.float32)
    return y + (level * y.abs().amax(dim=1))[:, None] * eps


def temperature_groups(x: torch.Tensor, bank, sigmas, rng: np.random.Generator) -> list[tuple]:
    """A fixed evaluation set for a multi-temperature model: each row of ``x`` gets one temperature of
    ``bank`` (drawn) and noise; returns [(y, x, A, P)] per temperature."""
    which = rng.integers(len(bank), size=len(x))
    groups = []
    for k, (A, P) in enumerate(bank):
        rows = torch.as_tensor(np.flatnonzero(which == k))
        if len(rows):
            groups.append((noisy_spectra(x[rows], A, sigmas, rng), x[rows], A, P))
    return groups


def evaluate_groups(model: nn.Module, groups: list[tuple]) -> np.ndarray:
    """:func:`evaluate` over several (y, x, A, P) groups, weighted by their sizes."""
    n = sum(len(g[0]) for g in groups)
    return sum(evaluate(model, *g) * len(g[0]) for g in groups) / n


@torch.no_grad()
def evaluate(model: nn.Module, y_scaled, x_true, A, P, batch_size: int = 256) -> np.ndarray:
    """MSE of every estimate (for the rRIM: each iterate x_1…x_N) over a split; shape (n_estimates,)."""
    model.eval()
    total, n = None, len(y_scaled)
    for i in range(0, n, batch_size):
        xs = estimates(model, y_scaled[i:i + batch_size], A, P)
        err = torch.stack([((x - x_true[i:i + batch_size]) ** 2).sum() for x in xs]).double()
        total = err if total is None else total + err
    return (total / (n * x_true.shape[1])).numpy()


def train(config: Config, operator: ForwardOperator | None = None, data: SyntheticDataset | None = None,
          checkpoint: bool = True) -> TrainResult:
    """Train ``config.model`` with Adam and BPTT through all steps; keep the best-validation weights.

    Gradients are clipped to norm ``training.clip_norm``. Early stopping: stop after ``training.patience`` epochs without a lower validation MSE of the
    final estimate, after ``max_epochs``, or once ``time_budget_s`` (if > 0) is spent (checked
    after every batch). Seeded: same config, same CPU → same weights. ``operator``/``data`` default
    to ``config.operator.build()`` and :func:`make_data` (pass them to share work across runs).
    Writes ``<output_dir>/model.pt`` and ``history.json`` when ``checkpoint``.
    """
    t = config.training
    operator = config.operator.build() if operator is None else operator
    data = make_data(config, operator) if data is None else data
    bank = physics_bank(config, operator)
    y_train, x_train = _tensors(data, "train", operator.scale)
    y_val, x_val = _tensors(data, "val", operator.scale)
    if len(y_train) == 0 or len(y_val) == 0:
        raise ValueError(f"data.n: {config.data.n} spectra leave an empty training or validation split")
    # several temperatures: spectra are made per batch at a drawn temperature (a child stream of the data seed)
    noise_rng = np.random.default_rng(np.random.SeedSequence(config.data.seed).spawn(5)[4])
    val_groups = (temperature_groups(x_val, bank, config.data.sigmas, noise_rng) if len(bank) > 1
                  else [(y_val, x_val, *bank[0])])

    torch.manual_seed(t.seed)
    model = build_model(config.model, operator)
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    order_rng = np.random.default_rng(t.seed)
    result = TrainResult(model=model, config=config)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    start, stale, out_of_time = time.perf_counter(), 0, False
    bar = _progress(t.max_epochs)
    for epoch in range(1, t.max_epochs + 1):
        model.train()
        order = order_rng.permutation(len(y_train))
        running = 0.0
        for i in range(0, len(order), t.batch_size):
            idx = torch.as_tensor(order[i:i + t.batch_size])
            if len(bank) > 1:
                A, P = bank[noise_rng.integers(len(bank))]
                y = noisy_spectra(x_train[idx], A, config.data.sigmas, noise_rng)
            else:
                (A, P), y = bank[0], y_train[idx]
            loss = step_loss(estimates(model, y, A, P), x_train[idx], t.step_weights)
            opt.zero_grad()
            loss.backward()
            if t.clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            opt.step()
            running += loss.item() * len(idx)
            if t.time_budget_s and time.perf_counter() - start > t.time_budget_s:
                out_of_time = True
                break
        val = float(evaluate_groups(model, val_groups)[-1])
        seen = min(i + t.batch_size, len(order))
        row = dict(epoch=epoch, train_loss=running / seen, val_mse=val, seconds=time.perf_counter() - start)
        result.history.append(row)
        if val < result.best_val_loss:
            result.best_val_loss, result.best_epoch, stale = val, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        log.info("epoch %d: train loss %.4g, val MSE %.4g (best %.4g at epoch %d), %.1f s",
                 epoch, row["train_loss"], val, result.best_val_loss, result.best_epoch, row["seconds"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(val_mse=f"{val:.3g}")
        if stale >= t.patience or out_of_time:
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - start
    test_y, test_x = _tensors(data, "test", operator.scale)
    if len(test_y):
        mse = evaluate_groups(model, temperature_groups(test_x, bank, config.data.sigmas, noise_rng) if len(bank) > 1
                              else [(test_y, test_x, *bank[0])])
        result.test_metrics = {"test_mse": float(mse[-1]), "step_mse": [float(m) for m in mse]}
    if checkpoint:
        out = Path(t.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        extra = {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                 "test_metrics": result.test_metrics, "seconds": result.seconds,
                 "operator": operator.describe()}
        result.checkpoint_path = save_checkpoint(out / "model.pt", model, config, extra)
        (out / "history.json").write_text(json.dumps(result.history, indent=1))
    return result


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


def save_checkpoint(path, model: nn.Module, config: Config, extra: dict | None = None) -> Path:
    """Save weights (a dict of tensors) with the configuration and ``extra`` as JSON strings."""
    path = Path(path)
    torch.save({"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(),
                "config": json.dumps(config.to_dict()), "extra": json.dumps(extra or {})}, path)
    return path


def load_checkpoint(path) -> tuple[nn.Module, Config, dict]:
    """(model in eval mode, config, extra) from :func:`save_checkpoint` output; loads with
    ``weights_only=True`` (no arbitrary pickles)."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: checkpoint not found") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an rrim checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    config = config_from_dict(json.loads(blob["config"]))
    model = build_model(config.model, config.operator.build())
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, config, json.loads(blob["extra"])


def predict(model: nn.Module, y_meV, operator: ForwardOperator, h: float) -> np.ndarray:
    """Glue functions (…, n_Ω) float64 for scattering rates ``y_meV`` (…, n_ω) in meV (final estimate)."""
    y = np.asarray(y_meV, dtype=np.float64)
    if y.ndim == 0 or y.shape[-1] != operator.shape[0]:
        raise ValueError(f"y_meV: last axis must have length {operator.shape[0]} (n_omega), got shape {y.shape}")
    A, P = physics_tensors(operator, h)
    flat = torch.as_tensor(y.reshape(-1, y.shape[-1]) / operator.scale, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        x = estimates(model, flat, A, P)[-1]
    return x.numpy().astype(np.float64).reshape(*y.shape[:-1], -1)
