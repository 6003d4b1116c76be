"""The realistic benchmark: rRIM models against Tikhonov on :mod:`rrim.physics.realistic_set` (glue shapes no
training draws, FTIR-like measured ranges with gaps, noise 1e-4…1e-2), through the runtime only.

    python benchmarks/realistic_benchmark.py [--model NAME_OR_PATH ...] [--out docs/experiments/REALISTIC.md]

Per file and method: the median relative L2 error ‖x̂ − x‖/‖x‖ over its spectra. Methods: each
model through :func:`rrim.inversion.engine.invert` (mask-aware models get the measured-ω mask; others get
the measured values interpolated across gaps and held at the edges, as ``--crop`` does), Tikhonov
on the measured points with the *best weight per file* (an oracle: the weight of the grid with the
lowest median error on that file's truth) and Tikhonov with GCV per spectrum. Also the rRIM's
relative RMS misfit on the measured points in units of the noise. The bar: the first model's
median error over all spectra ≤ 0.8 × best-weight Tikhonov's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rrim.inversion.engine import invert
from shipped_at import model_bytes
from rrim.inversion.feeds import mask_aware
from rrim.inversion.regularization import choose_weights, masked_svd, tikhonov_step
from rrim.models.loading import load_model
from rrim.physics.realistic_set import FAMILIES, SIGMAS, benchmark_files
from rrim.solvers import parameter_choice as pc

BAR = 0.8


def rel_l2(x_hat: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x_hat - x, axis=-1) / np.linalg.norm(x, axis=-1)


def tikhonov_errors(op, f) -> tuple[np.ndarray, np.ndarray]:
    """(errors at the best weight for the file (n,), errors with GCV per spectrum (n,))."""
    svd = masked_svd(op.scaled_matrix, f.mask)
    ys = f.y / op.scale
    n = len(ys)
    errs = [rel_l2(tikhonov_step(ys, svd, np.full(n, w)), f.x) for w in pc.weight_grid(svd.s[svd.s > 0])]
    gcv = tikhonov_step(ys, svd, choose_weights(ys, svd, f.mask, clip=False))
    return min(errs, key=np.median), rel_l2(gcv, f.x)


def filled(y: np.ndarray, mask: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Measured values interpolated across gaps and held beyond the ends (what ``--crop`` feeds)."""
    return np.stack([np.interp(omega, omega[mask], row[mask]) for row in y])


def label(model) -> str:
    """Table name of a model: its name and the start of its sha256 (two versions may share a name)."""
    return f"{model.name} ({model.sha256[:8]})"


def run(models: list, n_per_file: int) -> dict:
    op = models[0].info.base_operator()
    files = benchmark_files(op, n_per_file=n_per_file)
    rows = []
    for f in files:
        best, gcv = tikhonov_errors(op, f)
        row = {"file": f.name, "family": f.family, "sigma": f.sigma, "tikhonov_best": best, "tikhonov_gcv": gcv}
        for m in models:
            aware = mask_aware(m)
            y = f.y if aware else filled(f.y, f.mask, op.omega.values)
            r = invert(y, m, provider="cpu", temperature=f.temperature, valid_omega=f.mask)
            noise = f.sigma * np.abs(f.y).max(axis=1)
            misfit = np.sqrt(np.mean((r.scattering_rate_fit[:, f.mask] - f.y[:, f.mask]) ** 2, axis=1)) / noise
            row[label(m)] = rel_l2(r.glue, f.x)
            row[label(m) + " misfit/noise"] = misfit
        rows.append(row)
    return {"rows": rows, "files": len(files), "spectra": len(files) * n_per_file}


def report(result: dict, models: list, command: str, seconds: float) -> str:
    names = [label(m) for m in models]
    methods = names + ["tikhonov_best", "tikhonov_gcv"]
    titles = {"tikhonov_best": "Tikhonov, best weight per file", "tikhonov_gcv": "Tikhonov, GCV"}
    rows = result["rows"]
    overall = {k: float(np.median(np.concatenate([r[k] for r in rows]))) for k in methods}
    ratio = overall[names[0]] / overall["tikhonov_best"]
    lines = [
        "# Realistic benchmark set",
        "",
        f"`{command}` — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s, "
        f"{platform.machine()} {platform.system()}, Python {platform.python_version()}.",
        "",
        f"{result['files']} files × {result['spectra'] // result['files']} spectra ({', '.join(FAMILIES)} × σ ∈ "
        f"{{{', '.join(f'{s:g}' for s in SIGMAS)}}}, 100 K), made by `rrim.physics.realistic_set.benchmark_files` "
        "(seeded): glue shapes no training draws, spectra from a 4× finer Ω grid, FTIR-like measured ranges "
        "(5–12 … 250–390 meV, CO₂ band, dead channels). Cells: median relative L2 error ‖x̂ − x‖/‖x‖.",
        "",
        "## Over all spectra",
        "",
        "| method | median rel. L2 |",
        "|---|---|",
        *[f"| {titles.get(k, k)} | {overall[k]:.3f} |" for k in methods],
        "",
        f"**{names[0]} / best-weight Tikhonov = {ratio:.2f}** (bar ≤ {BAR}: {'met' if ratio <= BAR else 'missed'}).",
        "",
        "## Per file",
        "",
        "| file | " + " | ".join(titles.get(k, k) for k in methods) + f" | {names[0]} misfit/noise (median) |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for r in rows:
        lines.append(f"| {r['file']} | " + " | ".join(f"{np.median(r[k]):.3f}" for k in methods)
                     + f" | {np.median(r[names[0] + ' misfit/noise']):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model name or .onnx path (repeatable; default rrim-default)")
    parser.add_argument("--before", metavar="COMMIT", help="also the rrim-default shipped at this git commit")
    parser.add_argument("--n-per-file", type=int, default=16)
    parser.add_argument("--out", type=Path, help="write the markdown report here (default: print it)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    models = [load_model(m) for m in (args.model or ["rrim-default"])]
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            old = Path(tmp) / "rrim-default.onnx"
            old.write_bytes(model_bytes(args.before, "rrim-default"))
            models.append(load_model(old))
        result = run(models, args.n_per_file)
    command = " ".join(["python benchmarks/realistic_benchmark.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(result, models, command, time.perf_counter() - start)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
