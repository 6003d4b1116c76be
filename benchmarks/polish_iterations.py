"""Misfit and accuracy of a shipped model against the number of projected-gradient polish iterations:
writes benchmarks/POLISH_ITERATIONS.md (the numbers behind ``rrim.inversion.regularization.POLISH_ITERATIONS``
and ``POLISH_MAX_ITERATIONS``).

    nice .venv/bin/python benchmarks/polish_iterations.py [--model rrim-default] [--spectra 300]

Glue functions of the realistic prior on the 2× finer Ω grid (the experiments' problem, seed 77),
noise σ·max y (seed 1); every row inverted through `rrim.inversion.engine.invert` with the model's
``polish_iterations`` set to each count and no further iterations (everything else as shipped). Cells:
MSE of the glue / median RMS misfit on the data in units of the noise; the last column is the shipped
rule (spectra already within 1.1× their estimated noise skip the polish, those above 1.5× after the
fixed iterations go on) with the mean number of iterations a spectrum got. Then the realistic set
(:mod:`rrim.physics.realistic_set`, glue shapes no training draws) at σ ≤ 1e-3: a fixed count against the
shipped rule (rows above 1.5× the noise go on). Accuracy only: no timing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import rrim.inversion.regularization as regularization
from rrim.export.recipes.evaluation import noisy
from rrim.export.recipes.experiments_design import Problem
from rrim.inversion.engine import invert
from rrim.models.loading import load_model
from rrim.physics.realistic_set import benchmark_files

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
COUNTS = (0, 10, 20, 40, 80)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rrim-default")
    ap.add_argument("--spectra", type=int, default=300)
    ap.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "POLISH_ITERATIONS.md")
    args = ap.parse_args(argv)
    x, y = Problem().glue(args.spectra, 77)
    model = load_model(args.model)
    lines = ["# Polish iterations: misfit and accuracy", "",
             f"Command: `nice .venv/bin/python benchmarks/polish_iterations.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`; model {args.model} "
             f"{model.info.model_version} (sha256 {model.sha256[:12]}…), {args.spectra} spectra of the realistic prior. "
             "Cells: MSE / median misfit in units of the noise.", "",
             "| σ | " + " | ".join(f"{c} iterations" for c in COUNTS) + " | shipped rule (mean iterations) |",
             "|---|" + "---|" * (len(COUNTS) + 1)]
    reg = model.info.regularization  # this process's copy only
    shipped = dict(reg)
    done = [0]
    fista = regularization._fista

    def counted(x0, *rest):  # rows × iterations of every FISTA call
        done[0] += len(x0) * rest[-1]
        return fista(x0, *rest)

    regularization._fista = counted
    reg["polish_max_iterations"] = 0
    for sigma in SIGMAS:
        yn, noise = noisy(y, sigma, np.random.default_rng(1)), sigma * np.abs(y).max(axis=1)
        cells = []
        for count in COUNTS:
            reg["polish_iterations"] = count
            r = invert(yn, model, provider="cpu")
            misfit = np.median(np.sqrt(np.mean((r.scattering_rate_fit - yn) ** 2, axis=1)) / noise)
            cells.append(f"{np.mean((r.glue - x) ** 2):.3g} / {misfit:.2f}")
        reg.update(shipped)
        done[0] = 0
        r = invert(yn, model, provider="cpu")
        misfit = np.median(np.sqrt(np.mean((r.scattering_rate_fit - yn) ** 2, axis=1)) / noise)
        cells.append(f"{np.mean((r.glue - x) ** 2):.3g} / {misfit:.2f} ({done[0] / len(yn):.0f})")
        reg["polish_max_iterations"] = 0
        lines.append(f"| {sigma:g} | " + " | ".join(cells) + " |")
    rules = {f"{shipped['polish_iterations']} iterations": {**shipped, "polish_max_iterations": 0},
             f"{shipped['polish_iterations']}, then up to {shipped.get('polish_max_iterations', 0)} above 1.5× the noise": shipped}
    lines += ["", "Realistic set (16 spectra per file): median relative L2 glue error / median misfit in units of the noise.", "",
              "| file | " + " | ".join(rules) + " |", "|---|" + "---|" * len(rules)]
    for f in benchmark_files(model.info.base_operator(), n_per_file=16):
        if f.sigma > 1e-3:
            continue
        noise = f.sigma * np.abs(f.y[:, f.mask]).max(axis=1)
        cells = []
        for rule in rules.values():
            reg.update(rule)
            r = invert(f.y, model, provider="cpu", temperature=f.temperature, valid_omega=f.mask)
            misfit = np.median(np.sqrt(np.mean((r.scattering_rate_fit[:, f.mask] - f.y[:, f.mask]) ** 2, axis=1)) / noise)
            err = np.median(np.linalg.norm(r.glue - f.x, axis=1) / np.linalg.norm(f.x, axis=1))
            cells.append(f"{err:.3f} / {misfit:.2f}")
        lines.append(f"| {f.name} | " + " | ".join(cells) + " |")
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
