"""Model files: where models are found (user folders, then rrim's own), their indexes, and verified
loading (torch-free); golden parity is :mod:`rrim.models.golden`.

Installed models live in ``rrim/data/models/`` beside ``index.json``, a mapping
``{name: {"file": "NAME.onnx", "sha256": "…", "form": "baked"|"input", …}}`` (optionally wrapped
as ``{"models": {…}}``). Each model may have a golden ``NAME.golden.npz`` (arrays ``y``: scaled
input (batch, n_ω) float32, ``x``: expected output (batch, n_Ω); for the input form optionally
``A`` and ``P``) and a model card ``NAME.md`` beside it.

:func:`load_model` refuses, with :class:`~rrim.models.modelfile.ModelFileError`, a file that is not
ONNX, whose sha256 differs from the index or the user's pin, whose metadata is incomplete, or
whose inputs, outputs, dtypes or opset differ from the contract of :mod:`rrim.models.modelfile`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rrim.files import read_regular
from rrim.models.modelfile import INPUT_Y, MIN_OPSET, OUTPUT_X, ModelFileError, ModelInfo, input_shapes
from rrim.models.onnx_bytes import check_self_contained, onnx_opsets
from rrim.models.sessions import make_session, sha256_bytes

#: The data shipped inside the package: ``models/`` (index, ONNX files, cards) and ``examples/``.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
MODELS_DIR = DATA_DIR / "models"
#: Environment variable naming the user's model folders (``os.pathsep``-separated), searched first.
MODEL_PATH_VARIABLE = "RRIM_MODEL_PATH"
INDEX_FILE = "index.json"
DEFAULT_MODEL = "rrim-default"
#: Largest model file read (ONNX's protobuf limit) and largest index.json.
MAX_MODEL_BYTES = 2 << 30
MAX_INDEX_BYTES = 1 << 24
#: Most points a model's ω or Ω grid may declare (checked before anything is built from them).
MAX_GRID_POINTS = 1 << 14


@dataclass(frozen=True)
class IndexEntry:
    """One installed model as ``index.json`` lists it."""

    name: str
    path: Path
    sha256: str | None  # None: a file in a user folder that its index does not list (verified only by a pin)
    form: str

    @property
    def golden(self) -> Path:
        return self.path.with_name(self.path.stem + ".golden.npz")

    @property
    def card(self) -> Path:
        return self.path.with_name(self.path.stem + ".md")


@dataclass(frozen=True)
class LoadedModel:
    """A verified model file: where it is, its sha256, its parsed metadata and its I/O contract."""

    name: str
    path: Path
    sha256: str
    info: ModelInfo
    opset: int

    @property
    def form(self) -> str:
        return self.info.form

    @property
    def golden(self) -> Path:
        return self.path.with_name(self.path.stem + ".golden.npz")

    def session(self, provider: str = "auto", **kwargs):
        """The cached :class:`~rrim.models.sessions.Session` of this file (bytes re-verified against sha256)."""
        return make_session(self.path, provider, sha256=self.sha256, **kwargs)

    def describe(self) -> dict:
        """JSON-friendly summary for ``rrim inspect`` and reports."""
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "form": self.form,
                "opset": self.opset, "model_version": self.info.model_version,
                "temperature_K": self.info.temperature, "temperature_range_K": list(self.info.temperature_range_K),
                "omega_meV": [float(self.info.omega.values[0]), float(self.info.omega.values[-1]), len(self.info.omega)],
                "Omega_meV": [float(self.info.Omega.values[0]), float(self.info.Omega.values[-1]), len(self.info.Omega)],
                "scale_meV": self.info.scale, "h": self.info.h, "n_steps": self.info.n_steps,
                "kernel": self.info.operator.get("kernel"), "metrics": self.info.metrics,
                "rrim_version": self.info.rrim_version, "created": self.info.created}


def user_model_folders() -> list[Path]:
    """The user's model folders, searched before the package's own: those of ``$RRIM_MODEL_PATH``, then
    ``$XDG_DATA_HOME/rrim/models`` (default ``~/.local/share/rrim/models``). They need not exist."""
    listed = [Path(p).expanduser() for p in os.environ.get(MODEL_PATH_VARIABLE, "").split(os.pathsep) if p]
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return listed + [Path(data_home) / "rrim" / "models"]


def model_folders() -> list[Path]:
    """Every folder a model name is looked up in, first match wins: the user's, then the package's."""
    return [*user_model_folders(), MODELS_DIR]


def installed_models(models_dir: Path | None = None) -> dict[str, IndexEntry]:
    """Models of ``models_dir``, or when None of every folder of :func:`model_folders` (a name in an
    earlier folder hides the same name in later ones); {} when none.

    A folder's models are those its ``index.json`` lists (with their sha256) and, in a user folder, any
    other ``NAME.onnx`` in it, found by NAME without a recorded sha256 (like a path: a ``--sha256`` pin
    is the only check of its bytes)."""
    if models_dir is None:
        found: dict[str, IndexEntry] = {}
        for folder in reversed(model_folders()):
            found.update(installed_models(folder))
        return found
    folder = Path(models_dir)
    out = {}
    if folder.resolve() != MODELS_DIR.resolve() and folder.is_dir():
        out = {p.stem: IndexEntry(p.stem, p, None, "") for p in sorted(folder.glob("*.onnx")) if p.is_file()}
    index = folder / INDEX_FILE
    if not index.is_file():
        return out
    try:
        raw = json.loads(read_regular(index, MAX_INDEX_BYTES))
    except (OSError, ValueError, RecursionError) as e:
        raise ModelFileError(f"{index}: unreadable model index ({type(e).__name__ if isinstance(e, RecursionError) else e})") from None
    entries = raw.get("models", raw) if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ModelFileError(f"{index}: model index must map names to entries")
    listed = set()
    for name, e in entries.items():
        file = e.get("file", e.get("path")) if isinstance(e, dict) else None
        if not file or "sha256" not in e:
            raise ModelFileError(f"{index}: entry {name!r} needs 'file' and 'sha256'")
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise ModelFileError(f"{index}: entry {name!r}: 'file' must name a file inside {folder}")
        out[name] = IndexEntry(name, folder / file, str(e["sha256"]).lower(), str(e.get("form", "")))
        listed.add((folder / file).name)
    return {k: v for k, v in out.items() if v.sha256 is not None or v.path.name not in listed}


def _grid_points(desc, name: str, source: str) -> int | None:
    """Points a grid description declares (None when it is not one: the full check names that later)."""
    if not isinstance(desc, dict):
        return None
    if desc.get("kind") == "uniform":
        n = desc.get("n")
        if not isinstance(n, (int, float)) or isinstance(n, bool) or n != n:
            return None
        n = float(n)
    elif desc.get("kind") == "values" and isinstance(desc.get("values"), list):
        n = float(len(desc["values"]))
    else:
        return None
    if not 2 <= n <= MAX_GRID_POINTS:
        raise ModelFileError(f"{source}: metadata 'operator' declares a {name} grid of {n:g} points; "
                             f"a model grid has 2 to {MAX_GRID_POINTS}")
    return int(n)


def _check_declared_sizes(meta: dict, sess, source: str) -> None:
    """The grid sizes the metadata declares, bounded and checked against the graph's input and output
    shapes before anything is built from them."""
    try:
        op = json.loads(meta.get("operator", "null"))
    except (TypeError, ValueError):
        return  # ModelInfo.from_metadata names the bad JSON
    except RecursionError:
        raise ModelFileError(f"{source}: metadata 'operator' is nested too deeply to be a model description") from None
    if not isinstance(op, dict):
        return
    graph = {INPUT_Y: {i.name: i.shape for i in sess.get_inputs()}.get(INPUT_Y),
             OUTPUT_X: {o.name: o.shape for o in sess.get_outputs()}.get(OUTPUT_X)}
    for grid, arg in (("omega", INPUT_Y), ("Omega", OUTPUT_X)):
        n = _grid_points(op.get(grid), grid, source)
        shape = graph[arg]
        if n is not None and shape is not None and len(shape) == 2 and isinstance(shape[1], int) and shape[1] != n:
            raise ModelFileError(f"{source}: {arg!r} has shape {list(shape)}; expected ['batch', {n}] for the "
                                 "metadata's grids")


def _resolve(name_or_path, sha256: str | None) -> tuple[str | None, Path, str | None]:
    """(index name or None, file, expected sha256 or None) for a model name or path."""
    models = installed_models()
    s = str(name_or_path)
    if s in models and not Path(s).suffix == ".onnx":
        entry = models[s]
        if entry.sha256 is None:
            return s, entry.path, sha256.lower() if sha256 else None
        if sha256 is not None and sha256.lower() != entry.sha256:
            raise ModelFileError(f"model {s!r}: the pinned sha256 {sha256} differs from the index's {entry.sha256}")
        return s, entry.path, entry.sha256
    path = Path(s).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(models)) or "none installed"
        raise ModelFileError(f"model {s!r}: no such installed model ({known}) or file")
    resolved = path.resolve()
    for entry in models.values():  # a path to an installed file is verified against the index too
        if entry.sha256 is not None and entry.path.resolve() == resolved:
            return entry.name, resolved, sha256.lower() if sha256 else entry.sha256
    return None, resolved, sha256.lower() if sha256 else None


def load_model(name_or_path=DEFAULT_MODEL, *, sha256: str | None = None) -> LoadedModel:
    """Load and verify an installed model (by name) or a model file (by path).

    The bytes' sha256 must equal the index's (installed models) or ``sha256`` (a user pin);
    the metadata must be complete (:meth:`ModelInfo.from_metadata`); the inputs (``y``, plus
    ``A`` and ``P`` for the 'input' form), output ``x``, their float32 dtypes and shapes, and the
    opset (≥ 18) must match :mod:`rrim.models.modelfile`. Raises :class:`ModelFileError` otherwise.
    """
    name, path, expected = _resolve(name_or_path, sha256)
    try:
        data = read_regular(path, MAX_MODEL_BYTES)
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read model file ({getattr(e, 'strerror', None) or e})") from None
    digest = sha256_bytes(data)
    if expected is not None and digest != expected:
        raise ModelFileError(f"{path}: sha256 {digest} does not match the expected {expected}; "
                             "the file was altered or is not the model you asked for — refusing it")
    opset = onnx_opsets(data, str(path)).get("", 0)
    if opset < MIN_OPSET:
        raise ModelFileError(f"{path}: ONNX opset {opset} is older than the required {MIN_OPSET}")
    check_self_contained(data, str(path))
    try:
        sess = make_session(path, "cpu", sha256=digest).ort_session  # the session 'cpu'/'auto' runs reuse
    except ModelFileError:
        raise
    except Exception as e:  # onnxruntime's own exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load this ONNX model ({e})") from None
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    _check_declared_sizes(meta, sess, str(path))
    try:
        info = ModelInfo.from_metadata(meta, source=str(path))
    except RecursionError:
        raise ModelFileError(f"{path}: model metadata nested too deeply to be read") from None
    _check_io(sess, info, str(path))
    return LoadedModel(name=name or info.model_name, path=path, sha256=digest, info=info, opset=opset)


def _check_io(sess, info: ModelInfo, source: str) -> None:
    n_W = len(info.Omega)
    want_in = input_shapes(info)
    got_in = {i.name: i for i in sess.get_inputs()}
    got_out = {o.name: o for o in sess.get_outputs()}
    if set(got_in) != set(want_in):
        raise ModelFileError(f"{source}: inputs {sorted(got_in)} do not match the '{info.form}' form's {sorted(want_in)}")
    if set(got_out) != {OUTPUT_X}:
        raise ModelFileError(f"{source}: outputs {sorted(got_out)}; the contract has exactly {[OUTPUT_X]}")
    for name, arg, want in [(k, got_in[k], v) for k, v in want_in.items()] + [(OUTPUT_X, got_out[OUTPUT_X], ("batch", n_W))]:
        if arg.type != "tensor(float)":
            raise ModelFileError(f"{source}: {name!r} has type {arg.type}; the contract is float32")
        shape = list(arg.shape)
        if len(shape) != len(want) or any(isinstance(w, int) and isinstance(g, int) and w != g for w, g in zip(want, shape)):
            raise ModelFileError(f"{source}: {name!r} has shape {shape}; expected {list(want)} for the metadata's grids")
    first = next(iter(want_in))
    if isinstance(got_in[first].shape[0], int):
        raise ModelFileError(f"{source}: input {first!r} has a fixed batch size {got_in[first].shape[0]}; the contract needs a dynamic batch axis")
