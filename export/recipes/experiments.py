"""The accuracy experiments (issue 14, item 7), rerunnable and resumable:

    rrim experiments -o DIR [--budget smoke|session|full] [--work DIR] [--threads N]
    python -m rrim.export.recipes.experiments -o DIR ...   (the same command)

Writes ``RESULTS.md`` (tables, the bar check, command, budget, wall time, machine), ``results.json``
(every raw number, per seed) and PNG figures into ``-o DIR`` (the repository keeps its copy in ``docs/experiments``).
Checkpoints and finished pieces go to ``--work`` (default ``runs/experiments/BUDGET``): every
training saves its state each epoch, every finished piece (one model's or one solver's evaluation)
is kept as JSON, and rerunning the same command resumes where it stopped.

Methods, all judged on the same spectra:

- **rRIM**: the noise-adaptive rRIM exactly as rrim-default's recipe trained from scratch
  (``export/configs/rrim_default_2.0.0.toml``: noise mixture 0…0.1, realistic prior, partial coverage;
  the 2.1.0 recipe warm-starts from that model, trained on 10⁴ spectra, which a sweep over N cannot
  use), only N, the seed (data and training) and the output folder changed; one model per (N, seed),
  judged at every σ.
- **CNN, FCN**: a search over :attr:`Budget.search` (width or channels, depth, lr) at N =
  ``bar_n``, σ = :data:`SEARCH_SIGMA`, seed 0, chosen by validation MSE; the chosen configuration is
  trained per (N, σ, seed) on the rRIM's glue functions of that (N, seed) with spectra at that σ,
  with the rRIM's plateau schedule, patience and epoch limit (``export/configs/{cnn,fcn}_baseline.toml``).
- **ridge** y → x (:mod:`rrim.export.recipes.ridge`) on the same training pairs, λ on their validation split.
- **Tikhonov** with the weight tuned on ``n_tune`` separate spectra of the prior (tuned), with GCV
  and with the discrepancy principle (true noise given; estimated at σ = 0); **NNLS** with its weight
  tuned likewise; **MEM** (χ² = N; only the first ``n_mem`` spectra: slow).

Test sets: per seed, ``n_test`` glue functions of the training prior (a stream no training draws),
spectra from the 2× finer Ω grid, fully measured, noise drawn per (seed, σ); the OOD shapes
(:func:`rrim.physics.glue_families.ood_shapes`, 2× finer grid) at σ ∈ :data:`SWEEP_SIGMAS` with the models of
the largest N; the realistic set (:mod:`rrim.physics.realistic_set`: FTIR-like partial coverage; models that
take no mask get the measured values filled across gaps) with the models of N = ``bar_n``.
MSE: mean over spectra and Ω points of (x̂ − x)², x dimensionless; rel. L2: median over spectra
of ‖x̂ − x‖/‖x‖. Tables: mean ± standard deviation over seeds.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import product
from pathlib import Path

import numpy as np

from rrim.export.config import CONFIGS, Config, load_config
from rrim.export.recipes.evaluation import (best_tikhonov_weight, classical_estimates, filled, measured_operator, noisy,
                                            rel_l2, rrim_estimates, scores, tuned_weights)
from rrim.physics.glue_families import ood_shapes, refined_grid
from rrim.physics.operator import ForwardOperator
from rrim.physics.synthetic import NOISE_LEVELS, DatasetSettings, SyntheticDataset

log = logging.getLogger("rrim.experiments")

#: rrim-default's recipe from scratch (stage 1 of 2.1.0; 2.1.0 itself warm-starts from it)
RRIM_CONFIG = "rrim_default_2.0.0.toml"
BASELINES = {"CNN": "cnn_baseline.toml", "FCN": "fcn_baseline.toml"}
SIGMAS = (0.0, *NOISE_LEVELS)
#: noise levels of the MSE-vs-N tables and the OOD shapes
SWEEP_SIGMAS = (0.0, 1e-3)
#: noise level of the CNN/FCN search
SEARCH_SIGMA = 1e-3
#: seeds of the test, tuning and noise streams (no training draws them)
TEST_SEED, TUNE_SEED, NOISE_SEED = 900_000, 800_000, 20261201
RRIM, RRIM_NET = "rRIM", "rRIM w/o data-consistency steps"
LEARNED = (RRIM, RRIM_NET, "CNN", "FCN", "ridge")
#: version of the pieces kept in the work folder (a change of the evaluation bumps it)
FORMAT = 1


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


# --- data ---------------------------------------------------------------------------------------

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
        from rrim.export.data.adaptive import draw_glue

        if (n, seed) not in self._glue:
            x_fine = draw_glue(self.config.replace(data={"n": n, "seed": seed}), self.op)
            self._glue[(n, seed)] = (x_fine[:, ::self.k], self.fine_op.forward(x_fine))
        return self._glue[(n, seed)]

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


# --- configurations and training -----------------------------------------------------------------

def rrim_config(n: int, seed: int, budget: Budget, work: Path) -> Config:
    """:data:`RRIM_CONFIG` with N, the seed and the output folder replaced (and the budget's caps)."""
    training = {"seed": seed, "output_dir": str(work / f"rRIM-N{n}-seed{seed}")}
    if budget.max_epochs:
        training["max_epochs"] = budget.max_epochs
    if budget.rrim_time_cap_s:
        training["time_budget_s"] = budget.rrim_time_cap_s
    return load_config(CONFIGS / RRIM_CONFIG).replace(data={"n": n, "seed": seed}, training=training)


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


def fit(config: Config, operator: ForwardOperator, data=None):
    """(model, notes) of ``config``'s finished training in its output folder; trains (or resumes
    from ``state.pt``) when there is none. Notes: epochs, best epoch, validation loss, seconds, why it stopped."""
    from rrim.export.nets.checkpoints import load_checkpoint
    from rrim.export.training.loop import train

    path = Path(config.training.output_dir) / "model.pt"
    if not (path.exists() and load_checkpoint(path)[1] == config):
        log.info("training %s", config.training.output_dir)
        train(config, operator, data)
    model, _, extra = load_checkpoint(path)
    history = json.loads(path.with_name("history.json").read_text())
    t = config.training
    epochs = len(history)
    if t.time_budget_s and extra["seconds"] >= t.time_budget_s:
        why = f"wall-clock cap {t.time_budget_s:g} s (flagged)"
    elif epochs - extra["best_epoch"] >= t.patience:
        why = "patience"
    elif epochs >= t.max_epochs:
        why = f"epoch limit {t.max_epochs}" + (" (best at the limit: flagged)" if extra["best_epoch"] == epochs else "")
    else:
        why = f"lr below {t.min_lr:g}"
    return model, {"epochs": epochs, "best_epoch": extra["best_epoch"], "best_val": extra["best_val_loss"],
                   "seconds": round(extra["seconds"], 1), "stopped_by": why}


class Pieces:
    """Finished pieces of a run as JSON files in ``work/pieces`` (atomic writes), reused when the
    budget is the same: a rerun skips them."""

    def __init__(self, work: Path, budget: Budget):
        self.folder = work / "pieces"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = {"format": FORMAT, "budget": asdict(budget)}
        self.reused = self.made = 0

    def get(self, name: str, make):
        path = self.folder / f"{name}.json"
        if path.exists():
            blob = json.loads(path.read_text())
            if blob.get("key") == json.loads(json.dumps(self.key)):
                self.reused += 1
                return blob["value"]
        value = make()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": self.key, "value": value}))
        os.replace(tmp, path)
        self.made += 1
        return value


# --- evaluation ---------------------------------------------------------------------------------

def _record(kind: str, method: str, seed, n, sigma: float, s: dict, item=None) -> dict:
    return {"set": kind, "method": method, "seed": seed, "n": n, "sigma": sigma, "item": item, **s}


def _ood_records(method, seed, n, sigma, names, x_hat, x) -> list[dict]:
    return [_record("ood", method, seed, n, sigma, scores(x_hat[i:i + 1], x[i:i + 1]), name) for i, name in enumerate(names)]


def _realistic_record(method, seed, n, f, x_hat, rows=None) -> dict:
    x = f.x if rows is None else f.x[:rows]
    s = scores(x_hat, x)
    return _record("realistic", method, seed, n, f.sigma, {**s, "rel_each": rel_l2(x_hat, x).tolist()}, f.name)


def judge_rrim(problem: Problem, model, seed: int, n: int, budget: Budget) -> dict:
    """Records of the rRIM (and of its network alone) on the test sets it is judged on at this N, and
    its estimates of the OOD shapes at σ = 1e-3 (``curves``, for the figure)."""
    op = problem.op
    out, curves = [], {}
    for sigma in sigmas_at(n, budget):
        x, y, noise = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
        final, network = rrim_estimates(model, y, op)
        out.append(_record("test", RRIM, seed, n, sigma, scores(final, x, op.forward(final), y, noise)))
        out.append(_record("test", RRIM_NET, seed, n, sigma, scores(network, x)))
    if n == max(budget.sizes):
        for sigma in SWEEP_SIGMAS:
            names, x, y, _ = problem.ood(seed, sigma)
            final, network = rrim_estimates(model, y, op)
            out += _ood_records(RRIM, seed, n, sigma, names, final, x) + _ood_records(RRIM_NET, seed, n, sigma, names, network, x)
            if sigma == 1e-3:
                curves[RRIM] = final.tolist()
    if n == budget.bar_n:
        for f in problem.realistic(budget.n_per_file):
            final, network = rrim_estimates(model, f.y, op.at_temperature(f.temperature), f.mask)
            out += [_realistic_record(RRIM, seed, n, f, final), _realistic_record(RRIM_NET, seed, n, f, network)]
    return {"records": out, "curves": curves}


def judge_baseline(problem: Problem, method: str, predict, seed: int, n: int, sigma: float, budget: Budget) -> dict:
    """Records of a learned y → x model trained at σ (``predict``: spectra (k, n_ω) meV → glue), and
    its OOD estimates at σ = 1e-3 (``curves``)."""
    x, y, _ = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
    out, curves = [_record("test", method, seed, n, sigma, scores(predict(y), x))], {}
    if n == max(budget.sizes) and sigma in SWEEP_SIGMAS:
        names, x, y, _ = problem.ood(seed, sigma)
        est = predict(y)
        out += _ood_records(method, seed, n, sigma, names, est, x)
        if sigma == 1e-3:
            curves[method] = est.tolist()
    if n == budget.bar_n:
        omega = problem.op.omega.values
        out += [_realistic_record(method, seed, n, f, predict(filled(f.y, f.mask, omega)))
                for f in problem.realistic(budget.n_per_file) if f.sigma == sigma]
    return {"records": out, "curves": curves}


def judge_classical(problem: Problem, seed: int, sigma: float, budget: Budget) -> dict:
    """Weights tuned on the tuning set at σ, then the classical solvers on the test set (and the OOD
    shapes at σ ∈ :data:`SWEEP_SIGMAS`, with the same weights plus Tikhonov's best weight for them)."""
    op = problem.op
    xt, yt, _ = problem.noisy_set(budget.n_tune, TUNE_SEED, seed, sigma)
    weights = tuned_weights(op, yt, xt, budget.n_nnls_tune)
    x, y, noise = problem.noisy_set(budget.n_test, TEST_SEED, seed, sigma)
    found, failures = _failed(classical_estimates(op, y, noise, weights, budget.n_mem), f"test, seed {seed}, σ={sigma:g}")
    records = [_record("test", m, seed, None, sigma, scores(est, x[:k], op.forward(est), y[:k], noise[:k]))
               for m, (est, k) in found.items()]
    curves = {}
    if sigma in SWEEP_SIGMAS:
        names, x, y, noise = problem.ood(seed, sigma)
        found, more = _failed(classical_estimates(op, y, noise, weights, budget.n_mem), f"OOD, seed {seed}, σ={sigma:g}")
        failures += more
        found["Tikhonov (best weight)"] = (_tikhonov(op, y, best_tikhonov_weight(op, y, x)), len(y))
        for m, (est, k) in found.items():
            records += _ood_records(m, seed, None, sigma, names[:k], est, x[:k])
        curves = {m: est.tolist() for m, (est, k) in found.items() if k == len(y)}
    return {"records": records, "weights": weights, "curves": curves, "failures": failures}


def _failed(found: dict, where: str) -> tuple[dict, list[str]]:
    """(the methods that ran, ['method (where): error'] for those that raised)."""
    failures = [f"{m} ({where}): {v}" for m, v in found.items() if isinstance(v, str)]
    for message in failures:
        log.warning("failed: %s", message)
    return {m: v for m, v in found.items() if not isinstance(v, str)}, failures


def _tikhonov(op, y, weight):
    from rrim.solvers import Tikhonov

    return Tikhonov(op, rule="fixed", weight=weight).fit(y).x_


def judge_classical_realistic(problem: Problem, budget: Budget) -> dict:
    """The classical solvers on each file of the realistic set, on its measured points: Tikhonov with
    the best weight for the file (the bar's reference), GCV, discrepancy (noise given), NNLS with
    weights around the best Tikhonov weight chosen on the file, MEM on the first ``n_mem`` spectra."""
    records, failures = [], []
    for f in problem.realistic(budget.n_per_file):
        op = measured_operator(problem.op.at_temperature(f.temperature), f.mask)
        y = f.y[:, f.mask]
        noise = f.sigma * np.abs(problem.op.forward(f.x)).max(axis=1)
        best = best_tikhonov_weight(op, y, f.x)
        weights = tuned_weights(op, y, f.x, budget.n_nnls_tune)
        found, more = _failed(classical_estimates(op, y, noise, {**weights, "tikhonov": best}, budget.n_mem), f.name)
        failures += more
        found["Tikhonov (best weight per file)"] = found.pop("Tikhonov (tuned)")
        records += [_realistic_record(m, None, None, f, est, k) for m, (est, k) in found.items()]
    return {"records": records, "failures": failures}


# --- the run ------------------------------------------------------------------------------------

def search(problem: Problem, budget: Budget, work: Path, pieces: Pieces) -> dict:
    """The CNN/FCN search at N = bar_n, σ = SEARCH_SIGMA, seed 0: validation MSE per candidate, the choice."""
    data = problem.training_set(budget.bar_n, SEARCH_SIGMA, 0)
    out = {}
    for family in BASELINES:
        tried = []
        for cand in (c for c in budget.search if c[0] == family):
            name = "search-" + Path(baseline_config(cand, budget.bar_n, SEARCH_SIGMA, 0, budget, work).training.output_dir).name
            notes = pieces.get(name, lambda c=cand: fit(baseline_config(c, budget.bar_n, SEARCH_SIGMA, 0, budget, work),
                                                        problem.op, data)[1])
            tried.append({"candidate": list(cand), **notes})
        best = min(tried, key=lambda t: t["best_val"])
        out[family] = {"tried": tried, "chosen": best["candidate"]}
        log.info("%s search: chose %s (validation MSE %.4g)", family, best["candidate"], best["best_val"])
    return out


def run_pieces(budget: Budget, work: Path) -> dict:
    """Every piece of the experiments (resumed from ``work``); the raw results."""
    from rrim.export.recipes.ridge import Ridge
    from rrim.export.training.loop import predict

    problem = Problem()
    pieces = Pieces(work, budget)
    found = search(problem, budget, work, pieces)
    records, training, weights, curves, learned_curves, failures = [], {}, {}, {}, {}, []
    for seed in range(budget.n_seeds):
        for sigma in SIGMAS:
            piece = pieces.get(f"classical-seed{seed}-sigma{sigma:g}", lambda: judge_classical(problem, seed, sigma, budget))
            records += piece["records"]
            failures += piece["failures"]
            weights[f"seed {seed}, σ={sigma:g}"] = piece["weights"]
            if seed == 0 and piece["curves"]:
                curves[f"{sigma:g}"] = piece["curves"]
        for n in budget.sizes:
            config = rrim_config(n, seed, budget, work)

            def make_rrim():
                model, notes = fit(config, problem.op)
                return {"notes": notes, **judge_rrim(problem, model, seed, n, budget)}

            piece = pieces.get(f"rRIM-N{n}-seed{seed}", make_rrim)
            training[f"rRIM N={n} seed {seed}"] = piece["notes"]
            records += piece["records"]
            if seed == 0:
                learned_curves.update(piece["curves"])
            for sigma in sigmas_at(n, budget):
                for family in BASELINES:
                    config = baseline_config(tuple(found[family]["chosen"]), n, sigma, seed, budget, work)

                    def make_baseline():
                        model, notes = fit(config, problem.op, problem.training_set(n, sigma, seed))
                        return {"notes": notes, **judge_baseline(
                            problem, family, lambda y: predict(model, y, problem.op, 0.01), seed, n, sigma, budget)}

                    piece = pieces.get(f"{family}-N{n}-sigma{sigma:g}-seed{seed}", make_baseline)
                    training[f"{family} N={n} σ={sigma:g} seed {seed}"] = piece["notes"]
                    records += piece["records"]
                    if seed == 0:
                        learned_curves.update(piece["curves"])

                def make_ridge():
                    data = problem.training_set(n, sigma, seed)
                    (xa, ya), (xv, yv) = data.subset("train"), data.subset("val")
                    ridge = Ridge().fit(ya, xa, yv, xv)
                    return {"weight": ridge.weight_, **judge_baseline(problem, "ridge", ridge.predict, seed, n, sigma, budget)}

                piece = pieces.get(f"ridge-N{n}-sigma{sigma:g}-seed{seed}", make_ridge)
                records += piece["records"]
                if seed == 0:
                    learned_curves.update(piece["curves"])
    piece = pieces.get("classical-realistic", lambda: judge_classical_realistic(problem, budget))
    records += piece["records"]
    failures += piece["failures"]
    curves["learned"] = learned_curves
    curves = {k: {m: np.vectorize(lambda v: float(f"{v:.5g}"))(np.asarray(c)).tolist() for m, c in v.items()}
              for k, v in curves.items()}  # the figure's curves: 5 digits are plenty
    return {"records": records, "search": found, "training": training, "weights": weights, "ood_curves": curves,
            "failures": failures,
            "pieces": {"made": pieces.made, "reused": pieces.reused}}


#: the repository's copy of the report; the smoke budget never writes there
DOCS = Path(__file__).resolve().parents[2] / "docs" / "experiments"


def run(out: Path, *, budget: str = "session", work: Path | None = None, threads: int = 1,
        command: str = "rrim experiments") -> Path:
    """Run (or resume) every experiment of ``budget`` (a name of :data:`PRESETS`) with checkpoints and
    finished pieces in ``work`` (default ``runs/experiments/BUDGET``), and write the report, the raw
    results and the figures into ``out`` (created); returns the report's path. ``command`` is recorded."""
    from rrim.export.recipes.experiments_report import bar_check, figures, machine, report

    b = PRESETS[budget]
    out, work = Path(out), Path(work) if work is not None else Path("runs") / "experiments" / b.name
    if b.name == "smoke" and out.resolve() == DOCS:
        raise ValueError("the smoke budget's numbers are meaningless: they never replace docs/experiments")
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for quiet in ("rrim.export.training", "rrim.solvers"):
        logging.getLogger(quiet).setLevel(logging.ERROR)
    started, start = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), time.time()
    work.mkdir(parents=True, exist_ok=True)
    history = work / "invocations.json"
    invocations = json.loads(history.read_text()) if history.exists() else []
    completed = False
    try:
        result = run_pieces(b, work)
        completed = True
    finally:  # every invocation of this work folder, interrupted ones too, for the report's total wall time
        invocations.append({"command": command, "started": started, "wall_s": round(time.time() - start, 1),
                            "completed": completed})
        history.write_text(json.dumps(invocations, indent=1))
    result["invocations"] = invocations
    result["bars"] = bar_check(result["records"], b)
    out.mkdir(parents=True, exist_ok=True)
    figures(result["records"], b, result["ood_curves"], out)
    wall = time.time() - start
    mach = machine(threads)
    (out / "RESULTS.md").write_text(report(result, b, command, wall, mach, started))
    (out / "results.json").write_text(json.dumps({"command": command, "started": started, "wall_s": wall,
                                                   "machine": mach, "budget": asdict(b), **result}, indent=1))
    for bar in result["bars"]:
        log.info("bar %s σ=%s: ratio %s (≤ %g)", bar["bar"], bar["sigma"], bar["ratio"], bar["limit"])
    log.info("wrote %s in %.1f min", out / "RESULTS.md", wall / 60)
    return out / "RESULTS.md"


if __name__ == "__main__":  # the same command as `rrim experiments`
    from rrim.export.recipes.experiments_command import experiments_command

    experiments_command(prog_name="python -m rrim.export.recipes.experiments")
