"""What the accuracy experiments (:mod:`rrim.export.recipes.experiments`) run on: the noise levels, seeds
and method names, the budgets (:data:`PRESETS`), the data of a run (:class:`Problem`: the rRIM
configuration's operator, its 2× finer twin and every seeded test, tuning, OOD and realistic spectrum) and
the configurations trained (:func:`rrim_config`, :func:`baseline_config`).

Spectra y in meV, glue x dimensionless, noise levels σ as fractions of max |y| per spectrum.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from rrim.export.config import CONFIGS, Config, load_config
from rrim.export.recipes.evaluation import noisy
from rrim.physics.glue_families import ood_shapes, refined_grid
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import NOISE_LEVELS, DatasetSettings, SyntheticDataset, split_indices

#: the rRIM's recipe from scratch (the data section equals rrim_default_2.0.0.toml's, which the
#: experiments judged before the prior start: the glue and every test spectrum stay the same)
RRIM_CONFIG = "rrim_scratch.toml"
BASELINES = {"CNN": "cnn_baseline.toml", "FCN": "fcn_baseline.toml"}
SIGMAS = (0.0, *NOISE_LEVELS)
#: noise levels of the MSE-vs-N tables and the OOD shapes
SWEEP_SIGMAS = (0.0, 1e-3)
#: noise level of the CNN/FCN search
SEARCH_SIGMA = 1e-3
#: seeds of the test, tuning and noise streams (no training draws them)
TEST_SEED, TUNE_SEED, NOISE_SEED = 900_000, 800_000, 20261201
RRIM, RRIM_NET = "rRIM", "rRIM w/o data-consistency steps"
#: the Gaussian prior of the rRIM's training glue: its estimate (the rRIM's start), and after the same steps
PRIOR, PRIOR_DC = "Gaussian prior", "Gaussian prior + data-consistency steps"
#: An rRIM training epoch has at least this many optimizer steps: at N = 100 (3 batches of 32) patience
#: and the plateau schedule otherwise count a few dozen steps and stop an unsettled start (seed 1 stopped
#: at epoch 13, its best at epoch 1). Set only where an epoch is shorter (N = 1000 has 25 batches), so
#: larger N keep their configuration and finished trainings.
MIN_EPOCH_STEPS = 20
LEARNED = (RRIM, RRIM_NET, PRIOR_DC, PRIOR, "CNN", "FCN", "ridge")


def _grid(family: str, sizes, depths, lrs) -> tuple:
    return tuple((family, s, d, lr) for s, d, lr in product(sizes, depths, lrs))


@dataclass(frozen=True)
class Budget:
    """What one run costs: sizes N, seeds, spectra per test set, the CNN/FCN search grid
    ((family, width or channels, depth, lr) each), and safety caps (flagged in the report when hit)."""

    name: str
    sizes: tuple[int, ...]
    bar_n: int
    n_seeds: int
    n_test: int
    n_tune: int
    n_nnls_tune: int
    n_mem: int
    n_per_file: int
    search: tuple[tuple[str, int, int, float], ...]
    #: epoch limit of every training; 0: the configurations' own (400), only the smoke budget caps it
    max_epochs: int = 0
    #: wall-clock safety cap per training (s), 0: none; a training that reaches it is flagged
    rrim_time_cap_s: float = 0.0
    baseline_time_cap_s: float = 0.0

    def __post_init__(self):
        if self.bar_n not in self.sizes or self.n_seeds < 1:
            raise ValueError(f"budget {self.name}: bar_n must be one of the sizes, n_seeds ≥ 1")
        if {f for f, *_ in self.search} != set(BASELINES):
            raise ValueError(f"budget {self.name}: the search must cover {sorted(BASELINES)}")


PRESETS = {
    # tests: seconds; numbers meaningless
    "smoke": Budget("smoke", sizes=(30, 60), bar_n=60, n_seeds=2, n_test=6, n_tune=6, n_nnls_tune=2, n_mem=1,
                    n_per_file=2, search=_grid("FCN", (64,), (2,), (1e-3, 3e-3)) + _grid("CNN", (4,), (2,), (1e-3, 3e-3)),
                    max_epochs=2),
    # a 2-core machine, 1 thread, about an hour
    "session": Budget("session", sizes=(100, 1000), bar_n=1000, n_seeds=3, n_test=200, n_tune=100, n_nnls_tune=30,
                      n_mem=10, n_per_file=8,
                      search=_grid("FCN", (256, 1024), (2, 3), (1e-3, 3e-4)) + _grid("CNN", (16, 32), (2, 3), (1e-3, 3e-4)),
                      rrim_time_cap_s=1500.0, baseline_time_cap_s=600.0),
    # the sizes (N up to 10⁵): days of CPU, or a GPU
    "full": Budget("full", sizes=(100, 1000, 10000, 100000), bar_n=1000, n_seeds=3, n_test=1000, n_tune=400,
                   n_nnls_tune=100, n_mem=50, n_per_file=16,
                   search=_grid("FCN", (256, 512, 1024), (2, 3), (1e-3, 3e-4)) + _grid("CNN", (16, 32, 64), (2, 3), (1e-3, 3e-4))),
}


def sigmas_at(n: int, budget: Budget) -> tuple[float, ...]:
    """The noise levels judged at training-set size n: all at ``bar_n``, :data:`SWEEP_SIGMAS` elsewhere."""
    return SIGMAS if n == budget.bar_n else SWEEP_SIGMAS


class Problem:
    """The rRIM configuration's operator, its 2× finer twin and every seeded spectrum of the run."""

    def __init__(self):
        from rrim.physics.realistic_set import benchmark_files

        self.config = load_config(CONFIGS / RRIM_CONFIG)
        self.op = self.config.operator.build()
        self.k = self.config.data.fine_factor
        fine = refined_grid(self.op.Omega, self.k)
        self.fine_op = ForwardOperator(self.op.omega, fine, self.op.temperature, self.op.kernel, self.op.scale)
        self._files = benchmark_files
        self._glue: dict = {}
        self._realistic: dict = {}

    def glue(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(glue on the model's grid (n, n_Ω), clean spectra from the fine grid (n, n_ω) meV) of the
        rRIM's data stream for (n, seed) (:func:`rrim.export.data.adaptive.draw_glue`)."""
        if (n, seed) not in self._glue:
            self._glue[(n, seed)] = self.draw(n, seed)
        return self._glue[(n, seed)]

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`glue` without keeping it (for streams drawn once, chunk by chunk)."""
        from rrim.export.data.adaptive import draw_glue

        x_fine = draw_glue(self.config.replace(data={"n": n, "seed": seed}), self.op)
        return x_fine[:, ::self.k], self.fine_op.forward(x_fine)

    def noisy_set(self, n: int, stream: int, seed: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, noise std (n,) meV) of ``n`` glue functions of the stream ``stream + seed`` at σ."""
        x, clean = self.glue(n, stream + seed)
        rng = np.random.default_rng([NOISE_SEED, stream, seed, SIGMAS.index(sigma)])
        return x, noisy(clean, sigma, rng), sigma * np.abs(clean).max(axis=1)

    def ood(self, seed: int, sigma: float) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
        """(shape names, x (10, n_Ω), y, noise) of the OOD shapes drawn on the fine grid, at σ."""
        shapes = ood_shapes(self.fine_op.Omega)
        x_fine = np.stack(list(shapes.values()))
        clean = self.fine_op.forward(x_fine)
        rng = np.random.default_rng([NOISE_SEED, 1, seed, SIGMAS.index(sigma)])
        return list(shapes), x_fine[:, ::self.k], noisy(clean, sigma, rng), sigma * np.abs(clean).max(axis=1)

    def realistic(self, n_per_file: int) -> list:
        if n_per_file not in self._realistic:
            self._realistic[n_per_file] = self._files(self.op, n_per_file=n_per_file)
        return self._realistic[n_per_file]

    def training_set(self, n: int, sigma: float, seed: int) -> SyntheticDataset:
        """The baselines' training data at (n, σ, seed): the rRIM's glue functions and split, clean spectra and one noise draw at σ (the baselines' configurations redraw the training noise per batch: ``data.fresh_noise``)."""
        from rrim.export.data.adaptive import data_splits

        x, clean = self.glue(n, seed)
        rng = np.random.default_rng([NOISE_SEED, 2, seed, n, SIGMAS.index(sigma)])
        return SyntheticDataset(self.op, DatasetSettings(n=n, sigma=sigma, seed=seed), x, clean, noisy(clean, sigma, rng),
                                data_splits(self.config.replace(data={"n": n, "seed": seed})))


def rrim_name(n: int, seed: int, recipe: str = RRIM_CONFIG) -> str:
    """The training folder and piece name of the rRIM of ``recipe`` (a file of export/configs) at (N, seed)."""
    return f"rRIM-{Path(recipe).stem}-N{n}-seed{seed}"


def rrim_config(n: int, seed: int, budget: Budget, work: Path, recipe: str = RRIM_CONFIG) -> Config:
    """``recipe`` (default :data:`RRIM_CONFIG`) with N, the seed and the output folder replaced (and the
    budget's caps)."""
    config = load_config(CONFIGS / recipe)
    training = {"seed": seed, "output_dir": str(work / rrim_name(n, seed, recipe))}
    n_train = len(split_indices(n, DatasetSettings(n=n).split, np.random.default_rng(0))["train"])
    if -(-n_train // config.training.batch_size) < MIN_EPOCH_STEPS:
        training["min_epoch_steps"] = MIN_EPOCH_STEPS
    if budget.max_epochs:
        training["max_epochs"] = budget.max_epochs
    if budget.rrim_time_cap_s:
        training["time_budget_s"] = budget.rrim_time_cap_s
    return config.replace(data={"n": n, "seed": seed}, training=training)


def baseline_config(candidate: tuple, n: int, sigma: float, seed: int, budget: Budget, work: Path) -> Config:
    """The CNN/FCN configuration ``candidate`` = (family, width or channels, depth, lr) at (N, σ, seed)."""
    family, size, depth, lr = candidate
    training = {"lr": lr, "seed": seed,
                "output_dir": str(work / f"{family}-{size}x{depth}-lr{lr:g}-N{n}-sigma{sigma:g}-seed{seed}")}
    if budget.max_epochs:
        training["max_epochs"] = budget.max_epochs
    if budget.baseline_time_cap_s:
        training["time_budget_s"] = budget.baseline_time_cap_s
    model = {"depth": depth, "width" if family == "FCN" else "channels": size}
    return load_config(CONFIGS / BASELINES[family]).replace(model=model, data={"n": n, "sigma": sigma, "seed": seed},
                                                             training=training)
