"""Run every reliability test (fast and slow) and write docs/RELIABILITY.md from what they tallied.

    .venv/bin/python tests/reliability/report.py [--output docs/RELIABILITY.md]

The tests append one JSON line per fault series to the file named by $RRIM_RELIABILITY_TALLY
(see tests/reliability/reliability_support.py); a test that fails tallies nothing, and the pytest summary
line is written into the report beside the numbers.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # runtime_helpers, which reliability_support (beside this script) imports
from reliability_support import TALLY_ENV  # noqa: E402

COMMAND = ".venv/bin/python tests/reliability/report.py"
TESTS = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "reliability").glob("test_*.py"))


def run_tests(tally: Path) -> tuple[int, str]:
    env = dict(os.environ, **{TALLY_ENV: str(tally)})
    p = subprocess.run([sys.executable, "-m", "pytest", *TESTS, "-m", "slow or not slow", "-q", "-p", "no:cacheprovider"],
                       cwd=REPO, env=env, capture_output=True, text=True)
    lines = [line for line in p.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return p.returncode, (lines[-1] if lines else (p.stdout + p.stderr).strip()[-300:]).strip("= ")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {len(os.sched_getaffinity(0))} CPUs available, "
            f"Python {platform.python_version()}, {'root' if os.geteuid() == 0 else 'non-root'}")


def table(rows: list[dict]) -> str:
    by = {}
    for r in rows:
        by.setdefault(r["category"], []).append(r)
    kills = by.get("sigkill", [])
    stages = Counter()
    for r in kills:
        stages.update(r["stages"])
    signals = by.get("signal", [])
    disk = by.get("disk", [])
    conc = by.get("concurrency", [])
    bad = by.get("bad inputs", [])
    rand = by.get("random archives", [])
    models = by.get("untrusted model", [])
    paths = by.get("untrusted paths", [])
    lost = sum(r.get("outputs_lost", 0) for r in rows)
    lines = [
        "| fault injected | how | count | outputs lost |",
        "|---|---|---:|---:|",
        f"| SIGKILL during `rrim reprocess` (30 files), then a rerun | seeded random delays, "
        f"{len(kills)} series | {sum(r['kills'] for r in kills)} kills | "
        f"{sum(r['outputs_lost'] for r in kills)} |",
        f"| SIGTERM / Ctrl-C (SIGINT), once or twice | process group signalled mid-job | {len(signals)} | "
        f"{sum(r['outputs_lost'] for r in signals)} |",
        f"| disk: file-size limit (EFBIG), full 160 KiB tmpfs (ENOSPC), read-only mount (EROFS), output folder under a file "
        f"| RLIMIT_FSIZE, tmpfs mount/remount | {len(disk)} scenarios | {sum(r['outputs_lost'] for r in disk)} |",
        f"| concurrent jobs on one archive and output folder | 3 jobs at once, waiting or not | "
        f"{sum(r['jobs'] for r in conc)} jobs, {sum(r['inverted'] for r in conc)} inversions for "
        f"{sum(r['files'] for r in conc)} files | {sum(r['outputs_lost'] for r in conc)} |",
        f"| malformed archives (catalogue, one job with good files) | tests/reliability/malformed_inputs.py | "
        f"{sum(r['files'] for r in bad)} files: {sum(r['refused'] for r in bad)} refused, "
        f"{sum(r['accepted_with_flags'] for r in bad)} accepted (flagged where bad) | "
        f"{sum(r['outputs_lost'] for r in bad)} |",
        f"| random archives (hypothesis, derandomized) | shapes, ω grids, units, dtypes, values, temperatures | "
        f"{sum(r['examples'] for r in rand)} archives: {sum(r['refused'] for r in rand)} refused, "
        f"{sum(r['inverted'] for r in rand)} inverted | 0 |",
        f"| untrusted models | altered bytes, wrong I/O, opset, operators, external data, metadata, pickles "
        f"| {len(models)} refused | — |",
        f"| untrusted paths | links out of the archive folder, '..'/absolute patterns, planted output link "
        f"| {sum(r.get('links_refused', 0) + r.get('patterns_refused', 0) + r.get('planted_output_links', 0) for r in paths)} "
        f"refused or neutralised | 0 |",
        *hole_rows(by.get("untrusted files", [])),
        f"| **all** | | | **{lost}** |",
    ]
    missed = stages.pop("finished before the kill", 0)
    stage_text = ", ".join(f"{k}: {v}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
    stage_text += f" (and {missed} run(s) that ended before their kill, not counted)" if missed else ""
    tracebacks = sum(r.get("tracebacks", 0) for r in bad + rand)
    return "\n".join(lines) + f"\n\nWhere the kills landed: {stage_text}.\nTracebacks seen: {tracebacks}.\n"


#: The classes of holes of issue 15 (red-team review), in the order the report lists them.
HOLES = {
    "outside reads": "data read from outside the given file: ONNX external data, HDF5 external storage, "
                     "virtual datasets, external links",
    "one name, two writers": "two inputs or paths that would write one file: colliding outputs, --report/--plot, "
                             "OUT_DIR around ARCHIVE_DIR, cleanup by glob",
    "unvalidated files": "files read without validation: calibrations, model metadata sizes, the tuning cache",
    "errors naming no file": "errors without the file's name: names not UTF-8, deep JSON (odd coordinate dtypes, "
                             "1e308 K and 1e10 declared spectra are in the catalogue row above)",
    "hash and read": "a digest of other bytes than those read: input replaced after hashing or while read, "
                     "calibration changed mid-run",
    "not regular files": "FIFOs, folders, dangling links, killed writers' temporaries",
    "durability and identity": "fsync around renames; --provider and --tf32 in an output's identity",
}


def hole_rows(rows: list[dict]) -> list[str]:
    """One table row per class of hole: its cases, how many were refused (or tolerated, for caches)."""
    lines = []
    for hole, what in HOLES.items():
        mine = [r for r in rows if r.get("hole") == hole]
        refused, tolerated = sum(r.get("refused", 0) for r in mine), sum(r.get("tolerated", 0) for r in mine)
        counts = ", ".join([f"{refused} refused"] * bool(refused) + [f"{tolerated} tolerated"] * bool(tolerated)
                           ) or f"{len(mine)} checks held"
        lines.append(f"| issue 15, {hole}: {what} | tests/reliability/test_redteam.py, {len(mine)} test(s) | {counts} | 0 |")
    return lines


BODY = """# Reliability: faults, bad input and untrusted files

Produced by `{command}` on {date} ({machine}); it runs every `tests/reliability/test_*.py`
test, fast and slow, and writes this file from the counts the tests record. pytest: {pytest}.

{table}
"Outputs lost" counts outputs that were missing, partial, duplicated or different (glue, fit,
residual, flags and identity attributes compared with an uninterrupted run) after the fault and
a rerun, plus inputs whose sha256 changed. The tests fail on any such loss, so a report with a
failing pytest line above is not a clean bill.

## What the runtime guarantees, and how it is tested

- **Atomic outputs.** Each output is written to `.NAME.glue.nc.*.rrim-tmp` in the output folder and
  renamed; a rerun removes what a killed run left (also for outputs that are current, i.e. a
  killed `--force`). Inputs are opened read-only. (`test_crash.py`)
- **Signals.** `rrim reprocess`: the first SIGTERM or Ctrl-C lets the file being written finish and
  starts no other; a second stops at once (that file's temporary removed). Before the output
  folder's lock is held, and in `rrim invert`, a signal stops at once. Exit code 130 and a JSON
  summary with `"status": "interrupted"` in every case; the lock is released.
- **Disk and permissions.** A write that fails (disk full, quota, `ulimit -f`, I/O error) is an
  error naming the output, the bytes written and the likely cause; the partial file is removed,
  earlier outputs stay, the other files go on (exit 1). A read-only or impossible output folder
  is refused before anything is written (exit 2). (`test_disk.py`)
- **Concurrency.** One `reprocess` per output folder at a time (a lock file, also through a
  symlinked path); a second job waits (`--lock-timeout`) and then skips current outputs, or exits
  5. (`test_concurrency.py`)
- **Bad input.** Every malformed file ends in one line naming the file (full path), the variable
  and the reason (exit code 2 for that file), never a traceback; spectra with NaN, inf or values
  beyond float32 are flagged `nonfinite_input`, the rest of the file is inverted. Large ω axes are
  read in slabs of at most 2²² values. (`test_inputs.py`, `tests/reliability/malformed_inputs.py`)
- **Untrusted files.** Model bytes are checked against the index's or the user's sha256 before
  use and again whenever a session is built; models whose inputs, outputs, dtypes, batch axis,
  opset, operators, external data or metadata differ from the contract are refused (exit 4); no
  code in `runtime/` or `plugins/` unpickles, calls a shell, or uses `np.load` without
  `allow_pickle=False`, and torch checkpoints load with `weights_only=True` (checked on the
  syntax tree). `reprocess` does not read files that links lead to outside ARCHIVE_DIR (reported
  as failed, exit code 2 for that file) and refuses `--pattern` with `..` or an absolute path; a
  link planted where an output goes is replaced, its target untouched.
  (`test_untrusted.py`)
- **Self-contained files** (issue 15). A model whose tensors keep their data in external files
  (initializers, constants, sparse tensors, in subgraphs and functions too) is refused: the sha256
  pin covers every byte that runs. An HDF5-based archive with a variable in external raw storage,
  a virtual dataset or an external link is refused before the NetCDF library opens it.
- **One name, one writer.** Inputs that would write one output (`x`, `x.nc`, `x.nc4`) are all
  refused, and an output made from another input is not replaced without `--force`; `--report`
  and `--plot` are checked like `-o` before any work (never an input, the output, a missing
  folder, ARCHIVE_DIR or an output name); `reprocess A -o A` and an OUT_DIR holding ARCHIVE_DIR
  are errors; stale temporaries are matched by exact name (glob characters are literal), and
  without the lock only those of dead writers (or older than 6 h) are removed.
- **Validated files.** Calibrations (positive finite band scales and thresholds, finite α and β,
  integer resamples 2…1024, increasing edges), model grid sizes (bounded, checked against the
  graph's shapes before anything is built), archives' declared sizes (at most 10⁸ spectra of 2²⁴
  points), temperatures (at most 10⁶ K), coordinates' dtypes; a pathological tuning cache is
  ignored, never fatal. Reads of models, calibrations, indexes and caches are bounded.
- **What is hashed is what is read.** An input's digest is reused only while the file keeps the
  identity it had when hashed; a file that changes while it is read, or a calibration that
  changes during a run, fails that file with nothing written.
- **Regular files only.** FIFOs, folders and dangling links that match `--pattern` are reported;
  `rrim inspect` and every file read open without blocking and refuse anything but a regular file.
- **Durable and fully identified outputs.** Output, report, calibration and cache files are
  fsynced before the rename and their folder after it; the execution provider that runs and
  `--tf32` are part of what makes an output current, and `--tf32` reaches the inverting session.
  (`test_redteam.py`; who may write what: [THREAT_MODEL.md](THREAT_MODEL.md))

Not covered here: the 10⁶-spectra soak (throughput over time, peak memory) of issue 9 item 6.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=str(REPO / "docs" / "RELIABILITY.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tally = Path(tmp) / "tally.jsonl"
        tally.touch()
        code, summary = run_tests(tally)
        rows = [json.loads(line) for line in tally.read_text().splitlines() if line.strip()]
    text = BODY.format(command=COMMAND, date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       machine=machine(), pytest=summary, table=table(rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"wrote {args.output} (pytest exit {code}: {summary})")
    return code


if __name__ == "__main__":
    sys.exit(main())
