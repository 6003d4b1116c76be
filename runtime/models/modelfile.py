"""The contract between exported ONNX models and the runtime (torch-free).

A model file is one self-contained ONNX file, opset ≥ 18, float32 in and out, dynamic batch axis:

- input ``y``: scaled scattering rates y/s, shape (batch, n_ω), float32;
- physics-as-input form only: inputs ``A`` = A/s, shape (n_ω, n_Ω), and ``P`` = (AₛᵀAₛ + hI)⁻¹Aₛᵀ,
  shape (n_Ω, n_ω), both float32;
- output ``x``: the glue function I²χ on the Ω grid, shape (batch, n_Ω), float32, ≥ 0.

Noise-adaptive models (metadata ``regularization``, JSON ``{"rule": "gcv", "h_min": …, "h_max": …,
"mask": …, "correction_steps": K, "polish_iterations": P, "polish_max_iterations": Q}``) work in the singular basis A/s = U diag(S) Vt of the measured ω
points (:func:`rrim.inversion.regularization.masked_svd`, r = min(n_ω, n_Ω), zero-padded): they take
``beta`` = Uᵀ(y/s) (batch, r), computed in float64 by the runtime, and ``h`` (batch, 1), the Tikhonov
weight chosen per spectrum by :func:`rrim.inversion.regularization.choose_weights`; in the input form also
``S`` (r,) and ``Vt`` (r, n_Ω) (a baked model holds those of the fully measured grid). The runtime
then applies K float64 data-consistency steps and P projected-gradient iterations (absent: 0)
(:func:`rrim.inversion.regularization.correct`).
:func:`input_shapes` lists what a model takes.

Everything the runtime needs is in the model's metadata properties (``custom_metadata_map``),
all values strings, structured ones JSON; :class:`ModelInfo` parses and validates them.

Shipped models (``rrim/data/models/``, read by :mod:`rrim.models.loading`): ``index.json`` maps each name to
``{"file": "NAME.onnx", "sha256": "<hex of the file's bytes>", "form": "baked"|"input"}`` (other
keys are ignored; ``{"models": {...}}`` is accepted too). Beside each ``NAME.onnx``:
``NAME.golden.npz`` with arrays ``y`` (batch, n_ω) float32 scaled input and ``x`` (batch, n_Ω) the
expected output (for the 'input' form optionally ``A`` and ``P``; else the runtime computes them at
the model's temperature), reproduced by onnxruntime to max|Δx| ≤ 1e-4·max|x|; and ``NAME.md``,
the model card.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from rrim.physics.grids import Grid
from rrim.physics.operator import ForwardOperator

FORMAT_VERSION = "1"
MIN_OPSET = 18
INPUT_Y, INPUT_A, INPUT_P, OUTPUT_X = "y", "A", "P", "x"
INPUT_BETA, INPUT_H, INPUT_S, INPUT_VT, INPUT_X0 = "beta", "h", "S", "Vt", "x0"
#: inputs with one row per spectrum (the batch axis)
PER_ROW = (INPUT_Y, INPUT_BETA, INPUT_H, INPUT_X0)
FORMS = ("baked", "input")

#: metadata key → meaning; every key is required.
METADATA_KEYS = {
    "rrim_format": "format version of this contract",
    "model_name": "short name, e.g. 'rrim-default'",
    "model_version": "version of this model",
    "form": "'baked' (A, P inside) or 'input' (A, P fed at run time)",
    "operator": "JSON: ForwardOperator.describe() — kernel, temperature_K, omega and Omega grids (meV), scale_meV",
    "temperature_range_K": "JSON [low, high]: temperatures the model is meant for",
    "h": "Tikhonov weight of the preconditioner (scaled units)",
    "n_steps": "N_t, the number of unrolled rRIM steps",
    "architecture": "JSON: the update network's settings",
    "training": "JSON: training data settings and training configuration",
    "metrics": "JSON: held-out metrics",
    "rrim_version": "rrim version that exported the model",
    "torch_version": "torch version that exported the model",
    "created": "ISO 8601 creation time (UTC)",
    "provenance": "JSON: command, host and anything else needed to regenerate the file",
}
#: metadata key → meaning; optional (absent: the paper's fixed-h model).
OPTIONAL_KEYS = {
    "regularization": "JSON: how h is chosen per spectrum by a noise-adaptive model (rule, h_min, h_max, mask)",
    "prior": "JSON: a noise-adaptive model's Gaussian prior of the glue (shape [n_Ω, k], mean and factor in base64), "
             "whose estimate it takes as input x0",
}


def _count(mapping: dict, key: str, most: int) -> bool:
    """Whether ``mapping[key]`` (absent: 0) is an integer in [0, ``most``]."""
    value = mapping.get(key, 0)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _bounds(mapping: dict) -> bool:
    """Whether ``h_min``/``h_max`` (absent: 1e-12 and 1) are numbers with 0 < h_min ≤ h_max < ∞."""
    lo, hi = mapping.get("h_min", 1e-12), mapping.get("h_max", 1.0)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
    return numbers and 0 < lo <= hi < float("inf")


def encode_array(a) -> str:
    """A float64 array as text for the metadata: base64 of its little-endian bytes, row-major."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def decode_array(text: str, shape) -> np.ndarray:
    """The float64 array of ``shape`` that :func:`encode_array` wrote; ``ValueError`` if it does not fit."""
    a = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f8")
    return a.reshape(shape).astype(np.float64)


class ModelFileError(ValueError):
    """A model file that cannot be used: not ONNX, tampered, incomplete or unexpected metadata."""


@dataclass(frozen=True)
class ModelInfo:
    """Parsed, validated metadata of a model file."""

    model_name: str
    model_version: str
    form: str
    operator: dict
    temperature_range_K: tuple[float, float]
    h: float
    n_steps: int
    architecture: dict
    training: dict
    metrics: dict
    rrim_version: str
    torch_version: str
    created: str
    provenance: dict
    rrim_format: str = FORMAT_VERSION
    regularization: dict = field(default_factory=dict)
    prior: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: dict, source: str = "model") -> "ModelInfo":
        """Validate a ``custom_metadata_map``; raises :class:`ModelFileError` naming ``source`` and the key."""
        missing = [k for k in METADATA_KEYS if k not in meta]
        if missing:
            raise ModelFileError(f"{source}: model metadata incomplete, missing {missing}")
        if meta["rrim_format"] != FORMAT_VERSION:
            raise ModelFileError(f"{source}: metadata 'rrim_format' is {meta['rrim_format']!r}; this rrim reads {FORMAT_VERSION!r}")
        if meta["form"] not in FORMS:
            raise ModelFileError(f"{source}: metadata 'form' must be one of {FORMS}, got {meta['form']!r}")

        def js(key):
            try:
                return json.loads(meta[key])
            except (TypeError, json.JSONDecodeError) as e:
                raise ModelFileError(f"{source}: metadata {key!r} is not valid JSON ({e})") from None

        try:
            info = cls(
                model_name=meta["model_name"], model_version=meta["model_version"], form=meta["form"],
                operator=js("operator"), temperature_range_K=tuple(float(t) for t in js("temperature_range_K")),
                h=float(meta["h"]), n_steps=int(meta["n_steps"]), architecture=js("architecture"),
                training=js("training"), metrics=js("metrics"), rrim_version=meta["rrim_version"],
                torch_version=meta["torch_version"], created=meta["created"], provenance=js("provenance"),
                regularization=js("regularization") if "regularization" in meta else {},
                prior=js("prior") if "prior" in meta else {},
                extra={k: v for k, v in meta.items() if k not in METADATA_KEYS and k not in OPTIONAL_KEYS},
            )
            info.base_operator()
            reg = info.regularization
            if reg and not (isinstance(reg, dict) and reg.get("rule") == "gcv"
                            and _count(reg, "correction_steps", 100) and _count(reg, "polish_iterations", 1000)
                            and _count(reg, "polish_max_iterations", 10000) and _bounds(reg)):
                raise ModelFileError(f"{source}: metadata 'regularization' is {reg!r}; this rrim knows rule 'gcv' "
                                     "with 0–100 correction_steps, 0–1000 polish_iterations, 0–10000 "
                                     "polish_max_iterations and 0 < h_min ≤ h_max")
            if info.prior:
                if not reg:
                    raise ModelFileError(f"{source}: metadata 'prior' belongs to a noise-adaptive model (no 'regularization')")
                n, k = (int(v) for v in info.prior["shape"])
                if n != len(info.Omega):
                    raise ModelFileError(f"{source}: metadata 'prior' is not on the model's Ω grid of {len(info.Omega)} points")
                decode_array(info.prior["mean"], (n,))
                decode_array(info.prior["factor"], (n, k))
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{source}: metadata does not describe a usable model ({e})") from None
        return info

    def to_metadata(self) -> dict[str, str]:
        """String-valued metadata properties for the ONNX file."""
        meta = {
            "rrim_format": self.rrim_format, "model_name": self.model_name, "model_version": self.model_version,
            "form": self.form, "operator": json.dumps(self.operator),
            "temperature_range_K": json.dumps(list(self.temperature_range_K)), "h": repr(float(self.h)),
            "n_steps": str(int(self.n_steps)), "architecture": json.dumps(self.architecture),
            "training": json.dumps(self.training), "metrics": json.dumps(self.metrics),
            "rrim_version": self.rrim_version, "torch_version": self.torch_version, "created": self.created,
            "provenance": json.dumps(self.provenance),
        }
        if self.regularization:
            meta["regularization"] = json.dumps(self.regularization)
        if self.prior:
            meta["prior"] = json.dumps(self.prior)
        meta.update({k: str(v) for k, v in self.extra.items()})
        return meta

    def base_operator(self, temperature: float | None = None) -> ForwardOperator:
        """The operator the model was built for (optionally at another temperature, K)."""
        return ForwardOperator.from_description(self.operator, temperature=temperature)

    @property
    def omega(self) -> Grid:
        return Grid.from_description(self.operator["omega"], name="omega")

    @property
    def Omega(self) -> Grid:
        return Grid.from_description(self.operator["Omega"], name="Omega")

    @property
    def scale(self) -> float:
        return float(self.operator["scale_meV"])

    @property
    def temperature(self) -> float:
        return float(self.operator["temperature_K"])

    @property
    def adaptive(self) -> bool:
        """True for a noise-adaptive model (h per spectrum, measured-ω mask in its basis)."""
        return bool(self.regularization)


def input_shapes(info: ModelInfo) -> dict[str, tuple]:
    """Graph input name → shape ('batch' for the dynamic axis) that a model of ``info`` must take."""
    n_w, n_W = len(info.omega), len(info.Omega)
    r = min(n_w, n_W)
    shapes = {INPUT_Y: ("batch", n_w)}
    if info.adaptive:
        shapes = {INPUT_BETA: ("batch", r), INPUT_H: ("batch", 1)}
        if info.form == "input":
            shapes.update({INPUT_S: (r,), INPUT_VT: (r, n_W)})
        if info.prior:
            shapes[INPUT_X0] = ("batch", n_W)
    elif info.form == "input":
        shapes.update({INPUT_A: (n_w, n_W), INPUT_P: (n_W, n_w)})
    return shapes
