"""Misfit and accuracy of a shipped model against the number of projected-gradient polish iterations:
writes benchmarks/POLISH_ITERATIONS.md (the numbers behind ``rrim.inversion.regularization.POLISH_ITERATIONS``).

    nice .venv/bin/python benchmarks/polish_iterations.py [--model rrim-default] [--spectra 300]

Glue functions of the realistic prior on the 2× finer Ω grid (the experiments' problem, seed 77),
noise σ·max y (seed 1); every row inverted through `rrim.inversion.engine.invert` with the model's
``polish_iterations`` set to each count (everything else as shipped). Cells: MSE of the glue /
median RMS misfit on the data in units of the noise. Accuracy only: no timing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rrim.export.evaluation import noisy
from rrim.export.experiments import Problem
from rrim.inversion.engine import invert
from rrim.models.loading import load_model

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
             "| σ | " + " | ".join(f"{c} iterations" for c in COUNTS) + " |", "|---|" + "---|" * len(COUNTS)]
    for sigma in SIGMAS:
        yn, noise = noisy(y, sigma, np.random.default_rng(1)), sigma * np.abs(y).max(axis=1)
        cells = []
        for count in COUNTS:
            model.info.regularization["polish_iterations"] = count  # this process's copy only
            r = invert(yn, model, provider="cpu")
            misfit = np.median(np.sqrt(np.mean((r.fit - yn) ** 2, axis=1)) / noise)
            cells.append(f"{np.mean((r.glue - x) ** 2):.3g} / {misfit:.2f}")
        lines.append(f"| {sigma:g} | " + " | ".join(cells) + " |")
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
