"""The shipped default model: train (seeded), export (baked form), card and index.

``python -m rrim.export.default_model`` trains :func:`default_config` with
:func:`rrim.export.training.train` (or reuses ``--checkpoint``), exports it with
:func:`rrim.export.onnx_export.export_onnx` into ``runtime/models/rrim-default.onnx`` (+
``rrim-default.golden.npz``), measures held-out and OOD-shape metrics and writes the model card
``rrim-default.md`` and ``index.json``.

``index.json`` (read by :mod:`rrim.models`): ``{NAME: {"file": "NAME.onnx", "sha256": "<hex>",
"form": "baked"|"input", "golden": "NAME.golden.npz", "card": "NAME.md", "model_version": "…",
"bytes": N}}``; the runtime needs only ``file``, ``sha256`` and ``form``, the rest is informative.
"""
from __future__ import annotations

from .config import Config, DataConfig, ModelConfig, OperatorConfig, TrainingConfig

NAME = "rrim-default"
MODEL_VERSION = "1.0.0"
#: Noise levels mixed in training (σ·max(y), one level per spectrum): the paper's range up to 1e-2.
TRAIN_SIGMAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
#: Wall-clock cap of the training (s): the development machine has 2 shared cores.
TIME_BUDGET_S = 1200.0


def default_config(output_dir: str = "runs/rrim-default-model") -> Config:
    """The shipped model's training: DESIGN defaults (N_t = 15, h = 0.01, Shulga, 100 K, 2…400 meV × 200)
    with hidden = 16 and N = 6000 spectra so that it trains in ≤ 20 min on 2 shared cores."""
    return Config(model=ModelConfig(kind="rrim", hidden=16, n_steps=15, x0="tikhonov", nonnegative=True),
                  data=DataConfig(n=6000, sigma=TRAIN_SIGMAS, seed=0),
                  operator=OperatorConfig(),
                  training=TrainingConfig(lr=1e-3, batch_size=32, max_epochs=60, patience=6, seed=0,
                                          time_budget_s=TIME_BUDGET_S, output_dir=output_dir))
