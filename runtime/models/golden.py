"""Golden parity: a model file re-run on its golden input (``NAME.golden.npz``) through onnxruntime
alone reproduces the expected output (docs/ARCHITECTURE.md §5)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rrim.models.loading import LoadedModel
from rrim.models.modelfile import INPUT_A, INPUT_P, INPUT_Y, ModelFileError, input_shapes

#: Golden parity bar: max |x − x_golden| ≤ GOLDEN_RTOL · max |x_golden| (float32 with margin).
GOLDEN_RTOL = 1e-4
#: Golden-file array names: 'y' (scaled input) and 'x' (expected output), with accepted aliases.
GOLDEN_ALIASES = {"y": ("y_scaled", "input"), "x": ("x_expected", "output")}


@dataclass(frozen=True)
class GoldenCheck:
    """Result of re-running a model's golden input: max abs error relative to max |x_golden|."""

    model: str
    golden: str
    provider: str
    max_rel_error: float
    rtol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel_error) and self.max_rel_error <= self.rtol)


def check_golden(model: LoadedModel, provider: str = "cpu", rtol: float = GOLDEN_RTOL, golden: Path | None = None) -> GoldenCheck:
    """Re-run the golden ``.npz`` through onnxruntime alone and compare (see :data:`GOLDEN_RTOL`).

    For the 'input' form, ``A`` and ``P`` come from the file if present, else from the shared
    physics at the model's temperature (A/s and P at h).
    """
    path = Path(golden) if golden is not None else model.golden
    if not path.is_file():
        raise ModelFileError(f"{model.path}: golden file {path.name} is missing")
    try:
        with np.load(path, allow_pickle=False) as g:
            arrays = {k: g[k] for k in g.files}
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable golden file ({e})") from None
    for name, aliases in GOLDEN_ALIASES.items():  # the contract's names first; exporters' common spellings too
        found = next((a for a in (name, *aliases) if a in arrays), None)
        if found is None:
            raise ModelFileError(f"{path}: golden file needs arrays 'y' and 'x', has {sorted(arrays)}")
        arrays[name] = arrays[found]
    wanted = input_shapes(model.info)
    feeds = {INPUT_Y: np.ascontiguousarray(arrays["y"], dtype=np.float32)} if INPUT_Y in wanted else {}
    if model.form == "input" and not model.info.adaptive:
        op = model.info.base_operator()
        feeds[INPUT_A] = np.asarray(arrays.get("A", op.scaled_matrix), dtype=np.float32)
        feeds[INPUT_P] = np.asarray(arrays.get("P", op.preconditioner(model.info.h)), dtype=np.float32)
    missing = [k for k in wanted if k not in feeds and k not in arrays]
    if missing:
        raise ModelFileError(f"{path}: golden file lacks the model inputs {missing}")
    feeds.update({k: np.ascontiguousarray(arrays[k], dtype=np.float32) for k in wanted if k not in feeds})
    session = model.session(provider)
    x = session.run(feeds)
    ref = np.asarray(arrays["x"], dtype=np.float64)
    scale = float(np.max(np.abs(ref))) or 1.0
    err = float(np.max(np.abs(x - ref)) / scale) if x.shape == ref.shape else float("inf")
    return GoldenCheck(model.name, str(path), session.provider, err, rtol)
