"""benchmarks/global_path_ablation.py compares two trainings only if they differ in the global path alone."""
from __future__ import annotations

import pytest

from benchmark_scripts import load_benchmark

pytest.importorskip("torch")


def test_the_committed_pair_differs_in_the_global_path_only(monkeypatch):
    module = load_benchmark("global_path_ablation")
    (w, _), (wo, _) = module.runs().values()
    assert w.model.global_width > 0 and wo.model.global_width == 0 and w.data == wo.data
    monkeypatch.setattr(module, "RUNS", {"with": module.RUNS["with the global path"], "without": "rrim_default_2.2.0.toml"})
    with pytest.raises(ValueError, match="differ only in model.global_width"):
        module.runs()
