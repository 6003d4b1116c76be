"""The accuracy experiments (issue 14, item 7), rerunnable and resumable:

    rrim experiments -o DIR [--budget smoke|session|full] [--work DIR] [--threads N]
    python -m rrim.export.recipes.experiments -o DIR ...   (the same command)

Writes ``RESULTS.md`` (tables, the bar check, command, budget, wall time, machine), ``results.json``
(every raw number, per seed) and PNG figures into ``-o DIR`` (the repository keeps its copy in ``docs/experiments``).
Checkpoints and finished pieces go to ``--work`` (default ``runs/experiments/BUDGET``): every
training saves its state each epoch, every finished piece (one model's or one solver's evaluation)
is kept as JSON, and rerunning the same command resumes where it stopped. What a run is made of (budgets,
noise levels, seeds, the seeded spectra, the configurations): :mod:`rrim.export.recipes.experiments_design`;
how each method is judged: :mod:`rrim.export.recipes.experiments_judging`; the report:
:mod:`rrim.export.recipes.experiments_report`.

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
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rrim.export.config import Config
from rrim.export.recipes.experiments_design import (BASELINES, PRESETS, SEARCH_SIGMA, SIGMAS, Budget, Problem,
                                                    baseline_config, rrim_config, rrim_name, sigmas_at)
from rrim.export.recipes.experiments_judging import (judge_baseline, judge_classical, judge_classical_realistic,
                                                     judge_prior, judge_rrim)
from rrim.physics.operator import ForwardOperator

log = logging.getLogger("rrim.experiments")

#: version of the pieces kept in the work folder (a change of the evaluation bumps it)
FORMAT = 1


# --- training and the pieces of a run ------------------------------------------------------------

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
    budget (and, for a piece that trains, its training configuration) is the same: a rerun skips them."""

    def __init__(self, work: Path, budget: Budget):
        self.folder = work / "pieces"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = {"format": FORMAT, "budget": asdict(budget)}
        self.reused = self.made = 0

    def get(self, name: str, make, config: Config | None = None):
        """The piece ``name``: reused when its key matches, else ``make()`` (and kept). ``config``: the
        configuration the piece trains, part of its key (a changed recipe retrains and re-judges)."""
        path = self.folder / f"{name}.json"
        key = json.loads(json.dumps({**self.key, **({"config": config.to_dict()} if config is not None else {})}))
        if path.exists():
            blob = json.loads(path.read_text())
            if blob.get("key") == key:
                self.reused += 1
                return blob["value"]
        value = make()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}))
        os.replace(tmp, path)
        self.made += 1
        return value


# --- the run ------------------------------------------------------------------------------------

def search(problem: Problem, budget: Budget, work: Path, pieces: Pieces) -> dict:
    """The CNN/FCN search at N = bar_n, σ = SEARCH_SIGMA, seed 0: validation MSE per candidate, the choice."""
    data = problem.training_set(budget.bar_n, SEARCH_SIGMA, 0)
    out = {}
    for family in BASELINES:
        tried = []
        for cand in (c for c in budget.search if c[0] == family):
            config = baseline_config(cand, budget.bar_n, SEARCH_SIGMA, 0, budget, work)
            name = "search-" + Path(config.training.output_dir).name
            notes = pieces.get(name, lambda c=config: fit(c, problem.op, data)[1], config)
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

            piece = pieces.get(rrim_name(n, seed), make_rrim, config)
            training[f"rRIM N={n} seed {seed}"] = piece["notes"]
            records += piece["records"]
            if seed == 0:
                learned_curves.update(piece["curves"])
            piece = pieces.get(f"prior-N{n}-seed{seed}", lambda: judge_prior(problem, seed, n, budget))
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

                    piece = pieces.get(f"{family}-N{n}-sigma{sigma:g}-seed{seed}", make_baseline, config)
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
