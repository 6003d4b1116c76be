"""The container images (containers/): pins that follow pyproject, the output comparison, and the
full build-and-run check (containers/test.sh; in CI or with RRIM_CONTAINER_TESTS=1: it builds two images with podman)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"
PYPROJECT = CONTAINERS.parent / "pyproject.toml"
ORT = {"cpu": "onnxruntime", "cuda": "onnxruntime-gpu"}


def _pins(flavour: str) -> dict[str, str]:
    """{normalized name: pinned version} of containers/requirements-FLAVOUR.txt (following -r)."""
    pins: dict[str, str] = {}

    def read(path: Path) -> None:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r "):
                read(path.parent / line[3:].strip())
            elif line:
                req = Requirement(line)
                (spec,) = req.specifier
                assert spec.operator == "==", f"{path.name}: {line!r} is not pinned with =="
                pins[req.name.lower()] = spec.version

    read(CONTAINERS / f"requirements-{flavour}.txt")
    return pins


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare_outputs", CONTAINERS / "compare_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flavour", ["cpu", "cuda"])
def test_pins_satisfy_the_runtime_dependencies(flavour):
    """Every runtime dependency of pyproject is pinned, within its range; in the cuda flavour
    onnxruntime-gpu (≥ 1.19, README "GPU") stands in for onnxruntime: one onnxruntime flavour only."""
    pins = _pins(flavour)
    for dep in map(Requirement, tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]):
        name = dep.name.lower()
        if flavour == "cuda" and name == ORT["cpu"]:
            dep = Requirement(f"{ORT['cuda']}>=1.19")
            name = ORT["cuda"]
        assert name in pins, f"requirements-{flavour}.txt: {dep.name} is not pinned"
        assert dep.specifier.contains(pins[name]), f"{name}=={pins[name]} outside pyproject's {dep}"
    other = ORT["cuda" if flavour == "cpu" else "cpu"]
    assert other not in pins, f"requirements-{flavour}.txt must not install {other} beside {ORT[flavour]}"
    assert not {"torch", "onnx", "dask", "matplotlib"} & set(pins)


def test_cuda_pin_matches_a_cuda12_base():
    """onnxruntime-gpu 1.19–1.26 are CUDA 12 builds (docs/ARCHITECTURE.md §8): the default base must be CUDA 12."""
    version = tuple(int(p) for p in _pins("cuda")["onnxruntime-gpu"].split(".")[:2])
    base = next(line for line in (CONTAINERS / "Containerfile").read_text().splitlines()
                if line.startswith("ARG CUDA_BASE="))
    assert (1, 19) <= version <= (1, 26) and ":12." in base, (version, base)


def _output(glue, **attrs) -> xr.Dataset:
    base = {"history": "2026-01-01 rrim invert a.nc", "date_created": "2026-01-01", "execution_provider": "cpu",
            "model_sha256": "abc", "rrim_version": "0.1.0"}
    return xr.Dataset({"glue": (("spectrum", "Omega"), np.asarray(glue, np.float32)),
                       "flags": (("spectrum",), np.array([0, 1], np.int8))},
                      coords={"Omega": np.array([1.0, 2.0, 3.0])}, attrs={**base, **attrs})


def test_comparison_ignores_run_attributes_only():
    compare = _compare_module().compare
    glue = np.array([[0.1, 0.5, 0.2], [0.3, 0.0, 0.7]])
    ref = _output(glue)
    same_job_elsewhere = _output(glue * (1 + 2e-7), history="other host", date_created="2026-02-02",
                                 execution_provider="cuda")
    assert compare(ref, same_job_elsewhere)["equal"]
    other_model = compare(ref, _output(glue, model_sha256="def"))
    assert not other_model["equal"] and "model_sha256" in " ".join(other_model["problems"])


def test_comparison_finds_glue_beyond_float32_precision():
    compare = _compare_module().compare
    glue = np.array([[0.1, 0.5, 0.2], [0.3, 0.0, 0.7]])
    moved = glue.copy()
    moved[1, 2] += 1e-5  # ≈ 120 ε₃₂ · max|glue|
    result = compare(_output(glue), _output(moved))
    assert not result["equal"] and result["variables"]["glue"]["max_abs_diff"] > result["variables"]["glue"]["tolerance"]


def test_a_second_run_waits_for_the_first(tmp_path):
    """containers/test.sh runs alone: while another process holds its lock, a run says so and waits
    (its `podman image prune` must not remove a running build's intermediate images)."""
    import fcntl

    lock = tmp_path / "rrim-containers-test.lock"
    script = f'source "{CONTAINERS / "test.sh"}"; main() {{ echo ran; }}; run_alone'
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run = subprocess.Popen(["bash", "-c", script], env={**os.environ, "TMPDIR": str(tmp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=1.5)  # blocked on the lock
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0 and out == "ran\n" and "waiting for it" in err


def _podman_runs() -> bool:
    if shutil.which("podman") is None:
        return False
    probe = subprocess.run(["podman", "--runtime", "runc", "info"], capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


@pytest.mark.container
def test_images_build_and_match_the_host(tmp_path):
    """containers/test.sh: both flavours build; selfcheck, the example job, fallbacks, host parity.

    Runs in CI (CI=true; test.sh installs podman there) or where RRIM_CONTAINER_TESTS=1 and podman
    runs; 3–10 minutes (debootstrap of the base image on a fresh machine)."""
    if os.environ.get("CI") != "true" and not (os.environ.get("RRIM_CONTAINER_TESTS") == "1" and _podman_runs()):
        pytest.skip("container build: set RRIM_CONTAINER_TESTS=1 (needs podman) or CI=true")
    env = {**os.environ, "RRIM_HOST_PYTHON": sys.executable}
    log = tmp_path / "test.sh.log"
    with open(log, "w") as out:
        proc = subprocess.run(["bash", str(CONTAINERS / "test.sh")], stdout=out, stderr=subprocess.STDOUT,
                              env=env, timeout=3600, check=False)
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    assert "FAIL" not in (CONTAINERS / "REPORT.md").read_text()
