"""benchmarks/global_path_ablation.py compares two trainings only if they differ in the global path alone."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "global_path_ablation.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling runtime_throughput
    try:
        spec = importlib.util.spec_from_file_location("global_path_ablation", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_the_committed_pair_differs_in_the_global_path_only(monkeypatch):
    module = _module()
    (w, _), (wo, _) = module.runs().values()
    assert w.model.global_width > 0 and wo.model.global_width == 0 and w.data == wo.data
    monkeypatch.setattr(module, "RUNS", {"with": module.RUNS["with the global path"], "without": "rrim_default_2.2.0.toml"})
    with pytest.raises(ValueError, match="differ only in model.global_width"):
        module.runs()
