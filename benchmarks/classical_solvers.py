"""Benchmark: every classical solver on a seeded synthetic test set at σ = 1e-3 and 1e-2.

Prints a markdown table per noise level (MSE, relative L2 error, time per spectrum, ratio to the
fastest) and writes it, with the command, date and machine, to classical_solvers.md next to this
script. Run with ``nice python benchmarks/classical_solvers.py`` (a few minutes on 2 cores).

BLAS runs single-threaded (set before numpy is imported): on a shared machine, multithreaded
OpenBLAS made MaxEnt's many tiny eigendecompositions ~10× slower, and one thread gives timings
that do not depend on the other jobs' load as much.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

import rrim  # noqa: E402
from rrim.physics.synthetic import DatasetSettings, make_dataset  # noqa: E402
from rrim.solvers import NNLS, IteratedTikhonov, MaxEnt, Tikhonov, TruncatedSVD, tune_tikhonov_weight  # noqa: E402

NOISE_LEVELS = (1e-3, 1e-2)
REPORT = Path(__file__).with_name("classical_solvers.md")


def solvers(op, tuned_weight: float) -> dict:
    """Name → unfitted estimator; ``tuned_weight`` is the validation-tuned Tikhonov μ."""
    return {
        "Tikhonov, GCV (safeguarded)": Tikhonov(op, "gcv"),
        "Tikhonov, L-curve": Tikhonov(op, "lcurve"),
        "Tikhonov, discrepancy (noise estimated)": Tikhonov(op, "discrepancy"),
        f"Tikhonov, tuned on validation (μ = {tuned_weight:.2g})": Tikhonov(op, "fixed", weight=tuned_weight),
        "iterated Tikhonov (15 steps, h = 0.01)": IteratedTikhonov(op, n_steps=15, h=rrim.DEFAULT_H),
        "truncated SVD, GCV (safeguarded)": TruncatedSVD(op, rule="gcv"),
        "truncated SVD, discrepancy": TruncatedSVD(op, rule="discrepancy"),
        "NNLS": NNLS(op),
        f"NNLS + Tikhonov (tuned μ = {tuned_weight:.2g})": NNLS(op, weight=tuned_weight),
        "MaxEnt, χ² = N (noise estimated)": MaxEnt(op, "chi2"),
        "MaxEnt, χ²-kink (noise estimated)": MaxEnt(op, "kink"),
    }


def timed_fit(est, y: np.ndarray, repeats: int) -> float:
    """Seconds per spectrum: best of ``repeats`` fits after a warm-up on 4 spectra."""
    est.fit(y[:4])
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        est.fit(y)
        best = min(best, time.perf_counter() - t0)
        if best > 5.0:  # slow solvers: one run is enough to time them
            break
    return best / y.shape[0]


def run_level(op, sigma: float, n_test: int, seed: int, repeats: int) -> list[dict]:
    """One row per solver on the test split of a seeded dataset (validation split tunes μ)."""
    n_total = 10 * n_test  # split 0.8/0.1/0.1: test and validation sets of n_test spectra
    ds = make_dataset(op, DatasetSettings(n=n_total, sigma=sigma, seed=seed))
    x_val, y_val = ds.subset("val")
    x_test, y_test = ds.subset("test")
    tuned = tune_tikhonov_weight(op, y_val, x_val)
    rows = []
    for name, est in solvers(op, tuned).items():
        seconds = timed_fit(est, y_test, repeats)
        err = est.x_ - x_test
        rel = np.linalg.norm(err, axis=1) / np.linalg.norm(x_test, axis=1)
        rows.append({"solver": name, "mse": float(np.mean(err ** 2)), "rel_mean": float(rel.mean()),
                     "rel_median": float(np.median(rel)), "ms": 1e3 * seconds})
    fastest = min(r["ms"] for r in rows)
    for r in rows:
        r["ratio"] = r["ms"] / fastest
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| solver | MSE | rel. L2 (mean) | rel. L2 (median) | ms / spectrum | × fastest |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['solver']} | {r['mse']:.3g} | {r['rel_mean']:.3f} | {r['rel_median']:.3f} | "
              f"{r['ms']:.3g} | {r['ratio']:.3g} |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    from rrim.models.sessions import cpu_name

    cpu = cpu_name()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.platform()}; {cpu}; {os.cpu_count()} CPUs (load average at start {load}); "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"rrim {rrim.__version__}; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=200, help="test spectra per noise level (default 200)")
    parser.add_argument("--seed", type=int, default=2024, help="dataset seed (default 2024)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, best taken (default 3)")
    parser.add_argument("--out", type=Path, default=REPORT, help=f"report path (default {REPORT.name} beside this script)")
    args = parser.parse_args(argv)

    op = rrim.ForwardOperator()  # the shipped model's operator: Shulga, 100 K, 200 × 200, s = 300 meV
    started = datetime.datetime.now(datetime.timezone.utc)
    header = [
        "# Classical solvers on synthetic data",
        "",
        f"Command: `{shlex.join(['nice', 'python', 'benchmarks/classical_solvers.py', *sys.argv[1:]])}`  ",
        f"Date: {started:%Y-%m-%d %H:%M} UTC  ",
        f"Machine: {machine()}",
        "",
        f"Operator: {op!r}. Data: `rrim.physics.synthetic.make_dataset` (Gaussian mixtures, noise σ·max(y)), "
        f"seed {args.seed}, {10 * args.n_test} spectra per σ split 0.8/0.1/0.1; every solver runs on all "
        f"{args.n_test} test spectra; the validation split tunes the 'tuned' weight μ (scaled units, as h). "
        "MSE is over spectra and Ω points (x dimensionless); relative L2 is ‖x − x_true‖/‖x_true‖ per "
        f"spectrum. Time: best of {args.repeats} fits of the whole test set (one for fits over 5 s), "
        "after a warm-up, per spectrum; SVD and P of the operator are cached beforehand.",
        "",
        "Notes. 'Tuned' Tikhonov uses one μ for the whole test set, the one with the smallest validation "
        "MSE against the known glue (`tune_tikhonov_weight`): the bar a learned solver must beat; the "
        "per-spectrum rules may still beat it where spectra differ. Plain NNLS has no regularization "
        "and fits the noise. The noise level used by the discrepancy rules and MaxEnt is estimated per "
        "spectrum from the SVD coefficients that carry no signal (`parameter_choice.estimate_noise`). "
        "MaxEnt: Bryan's algorithm with a flat default model at the least-squares level.",
    ]
    sections = []
    for sigma in NOISE_LEVELS:
        rows = run_level(op, sigma, args.n_test, args.seed, args.repeats)
        sections.append(f"## σ = {sigma:g}\n\n{table(rows)}")
        print(sections[-1] + "\n", flush=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    text = "\n".join(header) + "\n\n" + "\n\n".join(sections) + \
        f"\n\nTotal run time {(finished - started).total_seconds():.0f} s.\n"
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
