"""Performance against the floor, side by side (not a test): writes benchmarks/PERFORMANCE.md.

    nice .venv/bin/python benchmarks/perf_floor.py [--repeats 7] [--spectra 1024]

For the shipped rrim-default (ONNX, onnxruntime CPU) it measures in ONE run, round-robin so that
machine noise hits every contender alike (warm-up first; median and min–max over repeats):

- the floor: FLOPs per spectrum counted from the ONNX graph (MatMul, Gemm and Conv
  multiply-adds × 2; element-wise ops not counted) over the float32 GEMM rate of numpy's BLAS on a
  1024³ product measured in the same run;
- onnxruntime throughput at batch sizes 1…1024 and 1 or all threads, as a share of that floor;
- peers on the same spectra: PyTorch eager on the same architecture (fresh weights: the speed does
  not depend on their values), iterated Tikhonov and tuned-weight Tikhonov in numpy, NNLS and MEM
  (`rrim.solvers`, MEM and NNLS on a subset).

Needs the `train` extra for the PyTorch row (skipped, and said so, without it). Seeded.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

import rrim
from rrim.models import load_model
from rrim.sessions import available_cpus, make_session
from rrim.synthetic import DatasetSettings, make_dataset

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "PERFORMANCE.md"
sys.path.insert(0, str(ROOT / "benchmarks"))
from runtime_throughput import machine  # noqa: E402  (the same machine line in every report)

BATCHES = (1, 4, 16, 32, 64, 128, 256, 1024)


def onnx_flops_per_spectrum(path: Path) -> int:
    """2 × multiply-adds of MatMul/Gemm/Conv for one spectrum (batch axis fixed to 1)."""
    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    # the batch axis is the only dynamic one: where inference left a dimension unknown it is the batch, 1
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    macs = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            k = a[-1] if not (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[0]
            macs += int(np.prod(out)) * k
        elif node.op_type == "Conv":
            w, out = shapes[node.input[1]], shapes[node.output[0]]
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
    return 2 * macs


def gemm_rate(n: int = 1024) -> float:
    """float32 FLOP/s of one n³ numpy matmul."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = time.perf_counter()
    a @ a
    return 2 * n ** 3 / (time.perf_counter() - t)


def timed(fn, n_spectra: int) -> float:
    """Spectra per second of one call of ``fn``."""
    t = time.perf_counter()
    fn()
    return n_spectra / (time.perf_counter() - t)


def contenders(model, op, y: np.ndarray, y_val: np.ndarray, x_val: np.ndarray, subset: int) -> dict:
    """name → (callable, spectra per call); every callable inverts the same spectra ``y`` (meV)."""
    from rrim.solvers import NNLS, IteratedTikhonov, MaxEnt, Tikhonov, tune_tikhonov_weight

    ys = (y / op.scale).astype(np.float32)
    out = {}
    for threads in sorted({1, available_cpus()}):
        for b in BATCHES:
            sess = make_session(model.path, "cpu", threads=threads, sha256=model.sha256)

            def run(sess=sess, b=b):
                for i in range(0, len(ys), b):
                    sess.run({"y": ys[i:i + b]})
            out[f"onnxruntime, batch {b}, {threads} thread(s)"] = (run, len(ys))
    try:
        import torch

        from rrim.export.config import ModelConfig
        from rrim.export.training import build_model, estimates, physics_tensors
    except ImportError:
        pass
    else:
        torch.manual_seed(0)
        torch.set_num_threads(available_cpus())
        arch = model.info.architecture
        net = build_model(ModelConfig(kind="rrim", hidden=arch["hidden"], n_steps=model.info.n_steps,
                                      x0=arch.get("x0", "tikhonov"), nonnegative=True), op).eval()
        A, P = physics_tensors(op, model.info.h)
        yt = torch.from_numpy(ys)

        def torch_run():
            with torch.inference_mode():
                for i in range(0, len(ys), 64):
                    estimates(net, yt[i:i + 64], A, P)
        out[f"PyTorch eager, batch 64, {available_cpus()} thread(s)"] = (torch_run, len(ys))
    weight = tune_tikhonov_weight(op, y_val, x_val)
    out["numpy iterated Tikhonov (15 steps)"] = (lambda: IteratedTikhonov(op, n_steps=15, h=model.info.h).fit(y), len(y))
    out["numpy tuned Tikhonov (fixed weight)"] = (lambda: Tikhonov(op, rule="fixed", weight=weight).fit(y), len(y))
    out["numpy Tikhonov, per-spectrum GCV"] = (lambda: Tikhonov(op, rule="gcv").fit(y), len(y))
    out[f"NNLS + tuned weight ({subset} spectra)"] = (lambda: NNLS(op, weight=weight).fit(y[:subset]), subset)
    noise = 1e-3 * np.abs(y[:subset]).max(axis=1)
    out[f"MEM, χ² = N ({subset} spectra)"] = (lambda: MaxEnt(op, rule="chi2", noise=noise).fit(y[:subset]), subset)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--spectra", type=int, default=1024)
    ap.add_argument("--subset", type=int, default=8, help="spectra for the slow solvers (NNLS, MEM)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    model = load_model()
    op = model.info.base_operator()
    data = make_dataset(op, DatasetSettings(n=2 * args.spectra, sigma=1e-3, seed=11))
    (x_val, y_val), (_, y) = data.subset("val"), (None, data.y[: args.spectra])
    flops = onnx_flops_per_spectrum(model.path)
    cands = contenders(model, op, y, y_val, x_val, args.subset)
    rates = {name: [] for name in cands}
    gemm = []
    for name, (fn, n) in cands.items():  # warm-up
        fn()
    for _ in range(args.repeats):  # round robin
        gemm.append(gemm_rate())
        for name, (fn, n) in cands.items():
            rates[name].append(timed(fn, n))
    g = statistics.median(gemm)
    floor = g / flops
    med = {k: statistics.median(v) for k, v in rates.items()}
    ort = {k: v for k, v in med.items() if k.startswith("onnxruntime")}
    best_name = max(ort, key=ort.get)
    best = ort[best_name]
    lines = [
        "# Performance against the floor",
        "",
        f"Generated by `{' '.join(['python benchmarks/perf_floor.py', *(argv if argv is not None else sys.argv[1:])])}`"
        f" on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC in {time.perf_counter() - start:.0f} s.",
        f"Machine: {machine()}. Shared and noisy: every row was measured in the same run, round-robin,"
        f" {args.repeats} repeats after a warm-up; median and (min–max).",
        "",
        f"- Model: `{model.name}` ({model.info.architecture}), {model.info.n_steps} steps, grids "
        f"{op.shape[0]}×{op.shape[1]}; **{flops / 1e6:.1f} MFLOP per spectrum** counted from the ONNX graph "
        "(MatMul/Gemm/Conv multiply-adds × 2; element-wise ops not counted).",
        f"- float32 GEMM rate (numpy BLAS, 1024³): **{g / 1e9:.0f} GFLOP/s** (min–max "
        f"{min(gemm) / 1e9:.0f}–{max(gemm) / 1e9:.0f}) → floor **{floor:,.0f} spectra/s**.",
        f"- Best onnxruntime setting: {best_name}: {best:,.0f} spectra/s = **{100 * best / floor:.0f} % of the floor**.",
        "",
        f"Spectra: {args.spectra} synthetic test spectra at σ = 1e-3 (seed 11); slow solvers on the first {args.subset}.",
        "",
        "| contender | spectra/s, median (min–max) | ratio to best onnxruntime | % of floor |",
        "|---|---|---|---|",
    ]
    for name, v in rates.items():
        lines.append(f"| {name} | {med[name]:,.1f} ({min(v):,.1f}–{max(v):,.1f}) | {med[name] / best:.3g} | "
                     + (f"{100 * med[name] / floor:.0f} %" if name in ort or name.startswith("PyTorch") else "—") + " |")
    torch_rows = [k for k in med if k.startswith("PyTorch")]
    at16 = [v for k, v in ort.items()  # at the thread count the runtime uses (all available CPUs)
            if int(k.split("batch ")[1].split(",")[0]) >= 16 and k.endswith(f"{available_cpus()} thread(s)")]
    lines += [
        "",
        "## Issue 8 goals",
        "",
        f"- ≥ 50 % of the floor at the best batch: {100 * best / floor:.0f} % — {'met' if best >= 0.5 * floor else 'missed'}.",
        f"- ≥ 40 % of the floor at every batch ≥ 16 ({available_cpus()} threads): worst {100 * min(at16) / floor:.0f} % — "
        f"{'met' if min(at16) >= 0.4 * floor else 'missed'}.",
        (f"- ≥ 2× PyTorch eager: {best / med[torch_rows[0]]:.2f}× — {'met' if best >= 2 * med[torch_rows[0]] else 'missed'}."
         if torch_rows else "- ≥ 2× PyTorch eager: not measured (torch not installed)."),
        "- Archive job ≥ 90 % of in-memory throughput: see `runtime_throughput_rrim_default.md` (measured there).",
        "- Leaner model (≥ 4× fewer FLOPs, ≥ 10,000 spectra/s): not built yet.",
        "- GPU: not measured (no GPU was lent to the task that wrote this report).",
        "",
    ]
    REPORT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
