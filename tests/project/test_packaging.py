"""Packaging: one version source, exactly one ONNX runtime per install, complete test dependencies."""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import rrim

ROOT = Path(__file__).resolve().parents[2]

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def names(requirements) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_one_version_source(project):
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rrim.__version__"}
    assert importlib.metadata.version("rrim") == rrim.__version__


def test_no_install_brings_both_onnx_runtimes(project):
    """The two wheels both provide the module onnxruntime: `pip install .` brings the CPU one (the runtime
    works out of the box), no extra brings either, and the documented GPU recipe swaps them."""
    runtimes = {"onnxruntime", "onnxruntime-gpu"}
    assert names(project["project"]["dependencies"]) & runtimes == {"onnxruntime"}
    extras = {k: names(v) & runtimes for k, v in project["project"]["optional-dependencies"].items()}
    assert not any(extras.values()), extras
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && pip uninstall -y onnxruntime && pip install 'onnxruntime-gpu>=1.19'" in readme
    cuda = (ROOT / "containers" / "requirements-cuda.txt").read_text()
    assert re.search(r"^onnxruntime-gpu==", cuda, re.M) and not re.search(r"^onnxruntime==", cuda, re.M)


def test_setuptools_floor_knows_spdx_licenses(project):
    """``license = "MIT"`` (an SPDX expression) needs setuptools ≥ 77."""
    floor = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert isinstance(project["project"]["license"], str)
    assert tuple(int(x) for x in floor.split(">=")[1].split(".")) >= (77,)


def test_dev_group_has_what_the_runtime_tests_import(project):
    assert {"pytest", "hypothesis", "onnx", "h5netcdf", "h5py", "pytest-timeout"} <= names(project["dependency-groups"]["dev"])


def test_missing_onnxruntime_says_what_to_install(monkeypatch):
    from rrim.models.sessions import onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if no wheel were installed
    with pytest.raises(ImportError, match=r"pip install onnxruntime \(CPU\) or onnxruntime-gpu \(CUDA\), never both"):
        onnxruntime()
