"""Checkpoints of trained networks: a dict of weight tensors with the configuration and notes as JSON
strings (format :data:`CHECKPOINT_FORMAT`), read back with ``weights_only=True`` (no arbitrary pickles), and
the network a configuration describes."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rrim.export.config import Config, ModelConfig, config_from_dict
from rrim.export.nets.baselines import CNN, FCN
from rrim.export.nets.recurrent import RRIMSettings, build_rrim
from rrim.inversion.prior import GaussianPrior
from rrim.physics.operator import ForwardOperator

CHECKPOINT_FORMAT = "rrim-checkpoint-1"


def build_model(model: ModelConfig, operator: ForwardOperator) -> nn.Module:
    """The network of ``model.kind`` for ``operator``'s grids (float32, freshly initialized)."""
    n_omega, n_Omega = operator.shape
    if model.kind == "rrim":
        return build_rrim(RRIMSettings(hidden=model.hidden, n_steps=model.n_steps, x0=model.x0,
                                       nonnegative=model.nonnegative, regularization=model.regularization,
                                       correction_steps=model.correction_steps, context=model.context,
                                       global_width=model.global_width), n_Omega)
    if model.kind == "fcn":
        return FCN(n_omega, n_Omega, width=model.width, depth=model.depth)
    return CNN(n_omega, n_Omega, channels=model.channels, depth=model.depth)


def save_checkpoint(path, model: nn.Module, config: Config, extra: dict | None = None) -> Path:
    """Save weights (a dict of tensors) with the configuration, ``extra`` and the model's Gaussian prior
    (``x0 = "prior"``: :meth:`rrim.inversion.prior.GaussianPrior.describe`) as JSON strings."""
    path = Path(path)
    blob = {"format": CHECKPOINT_FORMAT, "state_dict": model.state_dict(),
            "config": json.dumps(config.to_dict()), "extra": json.dumps(extra or {})}
    if getattr(model, "prior", None) is not None:
        blob["prior"] = json.dumps(model.prior.describe())
    torch.save(blob, path)
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
    if config.model.x0 == "prior":
        if "prior" not in blob:
            raise ValueError(f"{path}: a model with x0 = 'prior' but no prior in the checkpoint")
        model.prior = GaussianPrior.from_description(json.loads(blob["prior"]))
    model.eval()
    return model, config, json.loads(blob["extra"])


def warm_start(model: nn.Module, path) -> None:
    """Load the weights of checkpoint ``path`` into ``model``; only the coarse and global paths (which
    start at zero) may be missing."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    try:
        missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    except RuntimeError as e:  # shapes differ
        raise ValueError(f"training.init_from: {path} does not fit the model ({e})") from None
    new = [k for k in missing if not k.startswith(("update.coarse.", "update.glob."))]
    if new or unexpected:
        raise ValueError(f"training.init_from: {path} does not fit the model (missing {new}, unexpected {unexpected})")
