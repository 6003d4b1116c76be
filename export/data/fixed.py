"""Training data of the paper's rRIM (one h for every spectrum) and the FCN/CNN baselines: one seeded
dataset (:func:`make_data`), its batches (:class:`FixedData`; at a drawn temperature when the model is
trained over several, with new noise per batch when ``data.fresh_noise``), and the choice between it
and the noise-adaptive rRIM's per-batch data (:func:`training_data`).

Spectra enter scaled, y/s; A is A/s and P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ, both from :class:`rrim.ForwardOperator`, as
float32 tensors.
"""
from __future__ import annotations

import numpy as np
import torch

from rrim.export.data.adaptive import AdaptiveData
from rrim.export.config import Config
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import DatasetSettings, SyntheticDataset, add_noise, make_dataset


def physics_tensors(operator: ForwardOperator, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A/s (n_ω, n_Ω), P (n_Ω, n_ω)) as float32 tensors, from the float64 operator."""
    return (torch.tensor(np.array(operator.scaled_matrix), dtype=torch.float32),
            torch.tensor(np.array(operator.preconditioner(h)), dtype=torch.float32))


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


def physics_bank(config: Config, operator: ForwardOperator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A/s, P) tensors at each of ``config.operator.training_temperatures()`` (one for a fixed temperature)."""
    temps = config.operator.training_temperatures()
    if len(temps) == 1:
        return [physics_tensors(operator, config.training.h)]
    return [physics_tensors(operator.at_temperature(T), config.training.h) for T in temps]


def noisy_spectra(x: torch.Tensor, A: torch.Tensor, sigmas: tuple[float, ...], rng: np.random.Generator) -> torch.Tensor:
    """Scaled spectra A x + σ·max|A x|·ε (rows of ``x`` (B, n_Ω)), one σ of ``sigmas`` drawn per row."""
    return with_noise(x @ A.T, sigmas, rng)


def with_noise(y: torch.Tensor, sigmas: tuple[float, ...], rng: np.random.Generator) -> torch.Tensor:
    """Spectra y (B, n_ω) + σ·max|y|·ε, one σ of ``sigmas`` drawn per row."""
    level = torch.as_tensor(np.asarray(sigmas)[rng.integers(len(sigmas), size=len(y))], dtype=torch.float32)
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


class FixedData:
    """Batches for the paper's rRIM (fixed h) and the FCN/CNN: the seeded dataset of
    :func:`make_data`; with several training temperatures, spectra are made per batch at a drawn one;
    with ``data.fresh_noise`` the training batches get new noise on the dataset's clean spectra."""

    def __init__(self, config: Config, operator: ForwardOperator, data: SyntheticDataset | None = None):
        self.config = config
        data = make_data(config, operator) if data is None else data
        self.splits = data.splits
        self.x = torch.as_tensor(data.x, dtype=torch.float32)
        self.y = torch.as_tensor(data.y / operator.scale, dtype=torch.float32)
        self.y_clean = torch.as_tensor(data.y_clean / operator.scale, dtype=torch.float32)
        self.bank = physics_bank(config, operator)

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> tuple:
        """(y/s, x, (A, P)) of the dataset rows ``rows``."""
        rows = torch.as_tensor(rows)
        if len(self.bank) > 1:
            A, P = self.bank[rng.integers(len(self.bank))]
            return noisy_spectra(self.x[rows], A, self.config.data.sigmas, rng), self.x[rows], (A, P)
        if self.config.data.fresh_noise:
            return with_noise(self.y_clean[rows], self.config.data.sigmas, rng), self.x[rows], self.bank[0]
        return self.y[rows], self.x[rows], self.bank[0]

    def groups(self, split: str, rng: np.random.Generator) -> list[tuple]:
        """The split as fixed evaluation groups [(y, x, physics)]."""
        rows = torch.as_tensor(self.splits[split])
        if len(self.bank) > 1:
            return [(y, x, (A, P)) for y, x, A, P in temperature_groups(self.x[rows], self.bank, self.config.data.sigmas, rng)]
        return [(self.y[rows], self.x[rows], self.bank[0])] if len(rows) else []


def training_data(config: Config, operator: ForwardOperator, data: SyntheticDataset | None = None):
    """:class:`rrim.export.data.adaptive.AdaptiveData` for the adaptive rRIM, else :class:`FixedData`."""
    if config.model.kind == "rrim" and config.model.regularization == "adaptive":
        if data is not None:
            raise ValueError("data: the adaptive rRIM draws its spectra per batch; pass no dataset")
        return AdaptiveData(config, operator)
    return FixedData(config, operator, data)
