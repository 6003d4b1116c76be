"""Runtime throughput benchmark (not a test): writes benchmarks/runtime_throughput.md.

    nice .venv/bin/python benchmarks/runtime_throughput.py            # 1e4 and 1e5 spectra
    nice .venv/bin/python benchmarks/runtime_throughput.py --large    # also 1e6

Measures, for the shipped default model when installed (else a labelled fixture model: 15 steps
of projected iterated Tikhonov built with ``onnx``, same contract, far fewer FLOPs than the rRIM):

- in-memory batch inversion (``rrim.inversion.engine.invert``) in spectra/s, per batch size (median of
  repeats after a warm-up, with the spread);
- the whole archive job (``rrim invert`` in a fresh process on a NetCDF archive in cm⁻¹ on a
  250-point grid) in spectra/s, the fraction of its wall time spent outside the model's session
  calls, and its peak resident memory, at each archive size.

Seeded; every number in the report comes from this script.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rrim
from rrim.inversion.engine import DEFAULT_BATCH_SIZE, Engine
from rrim.models.loading import DEFAULT_MODEL, installed_models, load_model
from rrim.models.sessions import available_cpus, cpu_name
from rrim.physics.glue_families import realistic_glue
from rrim.physics.synthetic import add_noise

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "runtime_throughput.md"
SEED = 20261123
BATCHES = (1, 16, 32, 64, 128, 256, 1024)

_JOB = """
import json, sys
from rrim.cli import main
try:
    main(sys.argv[1:], prog_name="rrim")
except SystemExit as e:
    code = e.code
# VmHWM: this process's peak resident memory (ru_maxrss would include the forking parent's)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"hwm_kib": hwm, "exit": code}), file=sys.stderr)
"""


def command_line(script: str, argv) -> str:
    """The command that rewrites a benchmark's report: ``nice .venv/bin/python benchmarks/SCRIPT ARGS``
    (``argv`` None: this process's arguments)."""
    return " ".join(["nice .venv/bin/python", f"benchmarks/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])


def machine() -> str:
    import onnxruntime

    return (f"{cpu_name()}; {available_cpus()} CPUs available to the process; {platform.platform()}; "
            f"Python {platform.python_version()}; onnxruntime {onnxruntime.__version__}; numpy {np.__version__}")


def get_model(tmp: Path):
    if DEFAULT_MODEL in installed_models():
        return load_model(DEFAULT_MODEL), f"shipped model `{DEFAULT_MODEL}`"
    sys.path.insert(0, str(ROOT / "tests"))
    from runtime_helpers import write_model

    return (load_model(write_model(tmp, rrim.ForwardOperator(), "baked")),
            "**fixture model** (15-step projected iterated Tikhonov, tests/runtime_helpers.py; the default "
            "rRIM model was not installed when this ran: rerun this script once it is)")


def spectra(n: int, w_meV: np.ndarray, rng) -> np.ndarray:
    """n noisy scattering rates (meV) of realistic glue on the grid w_meV at 100 K."""
    op = rrim.ForwardOperator(w_meV, rrim.default_boson_grid(), temperature=100.0)
    return add_noise(op.forward(realistic_glue(op.Omega, n, rng)), 1e-3, rng)


def in_memory(model, n: int, repeats: int) -> list[dict]:
    y = spectra(n, model.info.omega.values, np.random.default_rng(SEED))
    rows = []
    for b in BATCHES:
        engine = Engine(model, "cpu", batch_size=b)
        engine.invert(y[: min(n, 4 * b)])  # warm-up
        rates, fracs = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            r = engine.invert(y)
            dt = time.perf_counter() - t
            rates.append(n / dt)
            fracs.append(1 - r.model_seconds / dt)
        rows.append({"batch": b, "median": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "outside": statistics.median(fracs)})
    return rows


def write_archive(path: Path, n: int, chunk: int = 20_000) -> None:
    """An archive of n spectra (dims spectrum, omega) in cm⁻¹ on a 250-point grid, written in chunks."""
    import netCDF4

    w = np.linspace(2.0, 400.0, 250)
    rng = np.random.default_rng(SEED + n)
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("spectrum", n)
        f.createDimension("omega", w.size)
        c = f.createVariable("omega", "f8", ("omega",))
        c[:] = rrim.from_mev(w, "cm-1")
        c.units = "cm-1"
        v = f.createVariable("scattering_rate", "f4", ("spectrum", "omega"), chunksizes=(1024, w.size))
        v.units = "cm-1"
        f.temperature = 100.0
        for s in range(0, n, chunk):
            v[s: s + chunk] = rrim.from_mev(spectra(min(chunk, n - s), w, rng), "cm-1")


def archive_job(path: Path, out: Path, model_path: Path) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _JOB, "--quiet", "invert", str(path), "-o", str(out), "--model", str(model_path),
                        "--provider", "cpu"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    tail = json.loads(p.stderr.strip().splitlines()[-1])
    if tail["exit"] not in (0, None):
        raise RuntimeError(p.stdout + p.stderr)
    s = json.loads(p.stdout)
    return {"n": s["n_spectra"], "job_rate": s["spectra_per_second"], "process_wall": wall,
            "outside": 1 - s["model_seconds"] / s["seconds"], "peak_mib": tail["hwm_kib"] / 1024}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true", help="also run the archive job on 1e6 spectra")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--in-memory", type=int, default=100_000, help="spectra for the in-memory sweep")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="archive sizes (spectra)")
    ap.add_argument("--report", type=Path, default=REPORT, help="markdown report to write")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.sizes + ([1_000_000] if args.large else [])))
    with tempfile.TemporaryDirectory(prefix="rrim-bench-") as tmp:
        tmp = Path(tmp)
        model, label = get_model(tmp)
        mem = in_memory(model, args.in_memory, args.repeats)
        jobs = []
        for n in sizes:
            write_archive(tmp / f"a{n}.nc", n)
            jobs.append(archive_job(tmp / f"a{n}.nc", tmp / f"o{n}.nc", model.path))
            (tmp / f"a{n}.nc").unlink()
            (tmp / f"o{n}.nc").unlink()
    best = max(mem, key=lambda r: r["median"])
    default = next(r for r in mem if r["batch"] == DEFAULT_BATCH_SIZE)
    cmd = command_line(__file__, argv)
    lines = [
        "# Runtime throughput", "",
        f"Command: `{cmd}` (seeded; written by this script).  ",
        f"Machine: {machine()}.  ",
        f"Model: {label}; sha256 `{model.sha256[:16]}…`, {model.form} form, grids "
        f"{len(model.info.omega)}×{len(model.info.Omega)}.  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The machine is shared and noisy: "
        "medians of repeats after a warm-up, with min–max.", "",
        f"## In-memory batch inversion (`rrim.inversion.engine.invert`, {args.in_memory} spectra, CPU)", "",
        "| batch | spectra/s (median) | min–max | time outside the model |", "|---:|---:|---:|---:|",
        *[f"| {r['batch']} | {r['median']:,.0f} | {r['min']:,.0f}–{r['max']:,.0f} | {r['outside']:.0%} |" for r in mem],
        "", f"Best batch here: {best['batch']}; the runtime's default batch ({DEFAULT_BATCH_SIZE}) reaches "
        f"{default['median'] / best['median']:.0%} of it. 'Outside the model' is the share of `invert`'s wall "
        "time not spent in onnxruntime's `run` (scaling, the float32 cast, the refit A·x̂ and residuals).", "",
        "## Whole archive job (`rrim invert` in a fresh process, NetCDF in cm⁻¹ on 250 ω points → model grid)", "",
        "| spectra | job spectra/s | process wall (s) | time outside the model | peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {j['n']:,} | {j['job_rate']:,.0f} | {j['process_wall']:.1f} | {j['outside']:.0%} | {j['peak_mib']:.0f} |" for j in jobs],
        "", "Job spectra/s counts from opening the archive to renaming the output (reading, interpolation, model, "
        "refit, λ/ω_ln, compressed writing); process wall adds interpreter start-up and model loading. Peak RSS is "
        "the child's `VmHWM`; the job streams slabs of 4096 spectra, so it should not grow with the archive.", "",
    ]
    args.report.write_text("\n".join(lines))
    print(args.report)


if __name__ == "__main__":
    main()
