"""Reports made with the shipped models name each model's version and sha256, so a stale row shows."""
from __future__ import annotations

from benchmark_scripts import load_benchmark
from rrim.models.loading import load_model


def test_label_names_version_and_sha256():
    model = load_model("rrim-lean")
    label = load_benchmark("shipped_at").shipped_label("rrim-lean", model)
    assert label == f"rrim-lean {model.info.model_version} (shipped, sha256 {model.sha256[:8]})"

