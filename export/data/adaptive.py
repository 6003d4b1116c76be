"""Training data of the noise-adaptive rRIM, drawn afresh for every batch from the shared physics.

Each batch: one temperature of the training bank, one measured-ω mask
(:func:`rrim.physics.glue_families.coverage_masks`, or every point), a noise level per spectrum, the spectra
y = A_fine x_fine + noise computed on a finer Ω grid than the model's (``data.fine_factor``), and
h chosen per spectrum from the noisy data by :func:`rrim.inversion.regularization.choose_weights`, exactly as
the runtime chooses it. Tensors are float32: y/s (B, n_ω) zero where unmeasured, x (B, n_Ω) the glue
on the model's grid, and the physics (S, Vt, h in float32 for the network; U, S, Vt, A/s, h as chosen
and y in float64 for the data-consistency steps) of :class:`rrim.export.nets.recurrent.AdaptiveRRIM`.
In place of y/s the network takes β = Uᵀy/s, computed in float64.
"""
from __future__ import annotations

import numpy as np
import torch

from rrim.export.config import Config
from rrim.inversion.prior import GaussianPrior
from rrim.inversion.regularization import H_MAX, H_MIN, MaskedBases, choose_weights, masked_svd
from rrim.physics.glue_families import coverage_masks, realistic_prior, refined_grid
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import DatasetSettings, gaussian_mixture, split_indices

#: Spectra per fixed validation/test group (one mask, temperature and noise draw per group).
GROUP_SIZE = 50


def draw_glue(config: Config, operator: ForwardOperator) -> np.ndarray:
    """The seeded glue functions (n, n_fine) of ``config.data`` on the refined Ω grid."""
    d = config.data
    rng = np.random.default_rng(np.random.SeedSequence(d.seed).spawn(3)[0])
    fine = refined_grid(operator.Omega, d.fine_factor) if d.fine_factor > 1 else operator.Omega
    if d.prior == "realistic":
        return realistic_prior(fine, d.n, rng)
    return gaussian_mixture(fine, d.n, rng, DatasetSettings().glue)


def data_splits(config: Config) -> dict:
    """The seeded train/val/test indices of ``config.data`` (its own child stream of the data seed)."""
    d = config.data
    rng = np.random.default_rng(np.random.SeedSequence(d.seed).spawn(3)[2])
    return split_indices(d.n, DatasetSettings(n=d.n).split, rng)


class AdaptiveData:
    """Seeded glue functions, their split, and per-batch physics for ``config`` (module doc)."""

    def __init__(self, config: Config, operator: ForwardOperator):
        d = config.data
        self.config, self.operator = config, operator
        self.x_fine = draw_glue(config, operator)
        self.x = self.x_fine[:, ::d.fine_factor]
        self.splits = data_splits(config)
        fine = refined_grid(operator.Omega, d.fine_factor) if d.fine_factor > 1 else operator.Omega
        self.temperatures = config.operator.training_temperatures()
        self.fine_ops = [ForwardOperator(operator.omega, fine, T, operator.kernel, operator.scale) for T in self.temperatures]
        self.ops = [operator.at_temperature(T) for T in self.temperatures]
        self.bases = MaskedBases(maxsize=4 * len(self.ops))
        self.sigmas = np.asarray(d.sigmas, dtype=np.float64)
        #: ``model.x0 = "prior"``: the Gaussian prior of the training split's glue (on the model's grid)
        self.prior = GaussianPrior.fit(self.x[self.splits["train"]]) if config.model.x0 == "prior" else None

    def _mask(self, rng: np.random.Generator) -> np.ndarray:
        n_w = self.operator.shape[0]
        if self.config.data.coverage == "full":
            return np.ones(n_w, bool)
        return coverage_masks(self.operator.omega, 1, rng)[0]

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """(y/s, x, physics) for the glue functions ``rows``, with a drawn temperature, mask and noise."""
        k = int(rng.integers(len(self.ops)))
        mask = self._mask(rng)
        y = self.x_fine[rows] @ self.fine_ops[k].scaled_matrix.T
        sigma = self.sigmas[rng.integers(self.sigmas.size, size=rows.size)]
        jitter = self.config.data.sigma_jitter_decades
        if jitter:
            sigma = sigma * 10 ** rng.uniform(-jitter / 2, jitter / 2, size=rows.size)
        y = (y + (sigma * np.abs(y).max(axis=1))[:, None] * rng.standard_normal(y.shape)) * mask
        svd = self.bases.basis(self.ops[k], mask)
        h = choose_weights(y, svd, mask, clip=False)
        beta = y @ svd.U
        physics = (torch.as_tensor(svd.s, dtype=torch.float32), torch.as_tensor(svd.Vt, dtype=torch.float32),
                   torch.as_tensor(np.clip(h, H_MIN, H_MAX)[:, None], dtype=torch.float32),
                   *(torch.as_tensor(a) for a in (beta, svd.s, svd.Vt, h[:, None])))
        if self.prior:
            physics += (torch.as_tensor(self.prior.estimate(self.ops[k], y, mask), dtype=torch.float32),)
        return torch.as_tensor(beta, dtype=torch.float32), torch.as_tensor(self.x[rows], dtype=torch.float32), physics

    def groups(self, split: str, rng: np.random.Generator) -> list[tuple]:
        """A fixed evaluation set: the split in groups of :data:`GROUP_SIZE`, each one :meth:`batch`."""
        rows = self.splits[split]
        return [self.batch(rows[i:i + GROUP_SIZE], rng) for i in range(0, rows.size, GROUP_SIZE)]


def adaptive_physics(operator: ForwardOperator, y_scaled: np.ndarray, mask: np.ndarray | None = None,
                     prior: GaussianPrior | None = None) -> tuple:
    """(β, S, Vt, h, β, S, Vt, h_correction[, x0]) tensors of the adaptive rRIM for scaled spectra (n, n_ω)
    measured on ``mask`` (default: every point), as the runtime computes them: the network's β = Uᵀy,
    S, Vt, h (clipped) in float32; the data-consistency steps' in float64; with a ``prior`` (a model
    with ``x0 = "prior"``) its estimate x0 in float32."""
    mask = np.ones(operator.shape[0], bool) if mask is None else np.asarray(mask, bool)
    svd = operator.svd if mask.all() else masked_svd(operator.scaled_matrix, mask)
    y = np.asarray(y_scaled, dtype=np.float64) * mask
    h = choose_weights(y, svd, mask, clip=False)
    beta = y @ svd.U
    f32 = (beta, svd.s, svd.Vt, np.clip(h, H_MIN, H_MAX)[:, None])
    f64 = (beta, svd.s, svd.Vt, h[:, None])
    x0 = () if prior is None else (torch.tensor(prior.estimate(operator, y, mask), dtype=torch.float32),)
    return (*(torch.tensor(a, dtype=torch.float32) for a in f32), *(torch.tensor(a) for a in f64), *x0)
