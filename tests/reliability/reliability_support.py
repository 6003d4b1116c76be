"""Helpers for the reliability tests: run ``rrim`` as a real process, build multi-file jobs, read
back what a job wrote, and tally the faults injected for docs/RELIABILITY.md.

Outputs are compared by content (glue, fit, residual, flags arrays and the identity attributes
that idempotent reprocessing relies on), never by timestamps.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import rrim
from runtime_helpers import noisy_spectra, write_archive

RRIM = (sys.executable, "-m", "rrim")
OUTPUT_SUFFIX = ".glue.nc"
#: Attributes that say *what* an output is (not when it was made).
IDENTITY_ATTRIBUTES = ("input_file", "input_sha256", "input_variable", "model_sha256", "model_name", "options",
                       "rrim_output_format", "flag_counts", "temperature_K", "execution_provider")
CONTENT_VARIABLES = ("glue", "scattering_rate_fit", "residual", "flags", "lambda", "omega_log", "temperature")
#: Environment variable naming a JSON-lines file to which the tests append their fault counts.
TALLY_ENV = "RRIM_RELIABILITY_TALLY"


def tally(category: str, **counts) -> None:
    """Append ``{category, counts}`` to the tally file when ``$RRIM_RELIABILITY_TALLY`` is set (else nothing)."""
    path = os.environ.get(TALLY_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"category": category, **counts}) + "\n")


def child_env() -> dict:
    """Environment for ``rrim`` subprocesses (this one's, without the tally file)."""
    return {k: v for k, v in os.environ.items() if k != TALLY_ENV}


def rrim_command(*args) -> list[str]:
    return [*RRIM, *map(str, args)]


def run_rrim(*args, cwd, timeout: float = 300, preexec_fn=None, env: dict | None = None
             ) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run ``rrim ARGS`` to completion in ``cwd`` (``env``: variables to set); returns the process and its
    JSON summary (None if none)."""
    p = subprocess.run(rrim_command(*args), cwd=cwd, env={**child_env(), **(env or {})}, capture_output=True,
                       text=True, timeout=timeout, preexec_fn=preexec_fn)
    return p, parse_summary(p.stdout)


def parse_summary(stdout: str) -> dict | None:
    text = stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


class Running:
    """``rrim ARGS`` started in its own session; stderr is read line by line in a thread."""

    def __init__(self, *args, cwd, preexec_fn=None):
        self.proc = subprocess.Popen(rrim_command(*args), cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     preexec_fn=preexec_fn)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, fragment: str, timeout: float = 120) -> bool:
        """Wait until a stderr line contains ``fragment`` (False if the process ended or time ran out)."""
        end = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < end:
            while seen < len(self.lines):
                if fragment in self.lines[seen]:
                    return True
                seen += 1
            if self.proc.poll() is not None and not self._reader.is_alive():
                return any(fragment in line for line in self.lines)
            time.sleep(0.005)
        return False

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process group (as a terminal's Ctrl-C or a service manager would)."""
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the process has ended."""
        out = self.proc.stdout.read()
        self.proc.wait(timeout)
        self._reader.join(timeout)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, out, "".join(self.lines)


def make_job(folder: Path, op: rrim.ForwardOperator, n_files: int, n_spectra: int, seed: int = 5) -> list[Path]:
    """``n_files`` archives of ``n_spectra`` noisy spectra each (meV, 80-point ω grid on the model's range)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = np.linspace(op.omega.values[0], op.omega.values[-1], 80)
    _, y = noisy_spectra(rrim.ForwardOperator(w, op.Omega, temperature=op.temperature), n_files * n_spectra, seed=seed)
    return [write_archive(folder / f"run{i:02d}.nc", y[i * n_spectra:(i + 1) * n_spectra], w,
                          omega_units="meV", y_units="meV") for i in range(n_files)]


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_hashes(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every regular file under ``folder``."""
    return {str(p.relative_to(folder)): sha256_of(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    """Temporary files an output writer may leave (``.*.rrim-tmp``) under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.rrim-tmp")) if folder.exists() else []


def read_output(path: Path) -> dict:
    """Content and identity of one rrim output: arrays of :data:`CONTENT_VARIABLES` and the identity attributes."""
    import netCDF4

    with netCDF4.Dataset(path, "r") as f:
        arrays = {v: np.ma.filled(f[v][...], np.nan) for v in CONTENT_VARIABLES}
        attrs = {k: str(f.getncattr(k)) for k in IDENTITY_ATTRIBUTES}
    return {"arrays": arrays, "attrs": attrs}


def outputs(folder: Path) -> dict[str, dict]:
    """Every ``*.glue.nc`` under ``folder`` read back (a partial or corrupt file raises)."""
    return {str(p.relative_to(folder)): read_output(p) for p in sorted(folder.rglob("*" + OUTPUT_SUFFIX))}


def assert_same_outputs(got: dict[str, dict], want: dict[str, dict], context: str = "") -> None:
    """Same set of outputs, identical arrays (NaN where NaN) and identity attributes."""
    assert sorted(got) == sorted(want), (context, sorted(got), sorted(want))
    for name, w in want.items():
        g = got[name]
        assert g["attrs"] == w["attrs"], (context, name)
        for v, a in w["arrays"].items():
            np.testing.assert_array_equal(g["arrays"][v], a, err_msg=f"{context} {name} {v}")
