"""ONNX export of a trained rRIM, checked against PyTorch, with its metadata and a golden file.

The exported graph maps scaled spectra ``y`` = y/s (batch, n_ω) float32 to the final iterate ``x``
(batch, n_Ω) float32, N_t steps unrolled (no ONNX Loop). Forms (see :mod:`rrim.models.modelfile`):
``baked`` holds A/s and P = (AₛᵀAₛ + hI)⁻¹Aₛᵀ of ``operator`` as float32 initializers; ``input``
takes them as graph inputs ``A`` (n_ω, n_Ω) and ``P`` (n_Ω, n_ω). One self-contained file, opset
:data:`OPSET`, dynamic batch axis, exported on CPU in eval mode with the TorchScript exporter
(``dynamo=False``: for hidden = 16 on the default grids it exported in 3 s against 23 s for dynamo,
a file half the size, outputs equal to float32 rounding, and it never writes external data).
Constants are folded at export; no further offline simplification: onnxruntime's basic graph
optimizations (987 → 728 nodes, 5 % smaller for that model) run anyway when a session loads the
file, and a graph saved after them imports onnxruntime-only opset domains.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from rrim import __version__ as rrim_version
from rrim.export.data.adaptive import adaptive_physics
from rrim.export.data.fixed import physics_tensors
from rrim.export.nets.checkpoints import load_checkpoint
from rrim.export.nets.recurrent import RRIM, AdaptiveRRIM
from rrim.inversion.regularization import H_MAX, H_MIN, POLISH_ITERATIONS, POLISH_MAX_ITERATIONS
from rrim.models.modelfile import (FORMS, INPUT_A, INPUT_BETA, INPUT_H, INPUT_P, INPUT_S, INPUT_VT, INPUT_X0,
                                   INPUT_Y, METADATA_KEYS, MIN_OPSET, OUTPUT_X, PER_ROW, ModelInfo, input_shapes)
from rrim.models.sessions import cpu_name, sha256_bytes
from rrim.physics.glue_families import COVERAGE_END_MIN, COVERAGE_START_MAX, ood_shapes
from rrim.physics.operator import DEFAULT_H, ForwardOperator
from rrim.physics.synthetic import DatasetSettings, make_dataset

OPSET = max(18, MIN_OPSET)
#: Parity bar: max|x_onnx − x_torch| ≤ PARITY_RTOL·max|x_torch|. 1e-4 ≈ 840·eps(float32): room for
#: float32 rounding of length-200 dot products accumulated over N_t = 15 steps and a different
#: summation order in onnxruntime; a wrong graph errs by O(1).
PARITY_RTOL = 1e-4
#: Batch sizes checked by :func:`verify_onnx` (1, an odd size, and all representative spectra).
PARITY_BATCHES = (1, 7)
#: Caller-supplied metadata: every one must be given and non-empty.
INFO_FIELDS = ("model_name", "model_version", "temperature_range_K", "training", "metrics", "provenance")


class FinalIterate(nn.Module):
    """The rRIM returning only its final estimate; graph inputs ``names`` in the contract's order
    (:func:`rrim.models.modelfile.input_shapes`), the physics among them baked in as float32 buffers
    ``baked`` (name → tensor) when the form is 'baked'."""

    def __init__(self, rrim: nn.Module, names: list[str], baked: dict[str, torch.Tensor]):
        super().__init__()
        self.rrim, self.names = rrim, names
        for k, v in baked.items():
            self.register_buffer(f"baked_{k}", v)
        self.baked = list(baked)

    def forward(self, first: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, (first, *inputs)))
        given.update({k: getattr(self, f"baked_{k}") for k in self.baked})
        return _call(self.rrim, given)[-1]


def _call(rrim: nn.Module, inputs: dict) -> list[torch.Tensor]:
    """``rrim``'s iterates for its graph inputs by contract name (tensors)."""
    x0 = {"x0": inputs[INPUT_X0]} if INPUT_X0 in inputs else {}
    return rrim(inputs[_first_input(rrim)], *(inputs[k] for k in _physics_order(rrim)), **x0)


def graph_model(model: nn.Module) -> nn.Module:
    """The part of ``model`` the ONNX graph holds: a float32 CPU copy in eval mode, for the adaptive
    rRIM without its float64 data-consistency steps (the runtime applies those, see the metadata)."""
    rrim = copy.deepcopy(model).cpu().float().eval()
    if isinstance(rrim, AdaptiveRRIM):
        rrim.settings = dataclasses.replace(rrim.settings, correction_steps=0)
    return rrim


def _physics_order(rrim: nn.Module) -> tuple[str, ...]:
    """The contract names of the physics arguments of ``rrim.forward`` after y, in order."""
    return (INPUT_S, INPUT_VT, INPUT_H) if isinstance(rrim, AdaptiveRRIM) else (INPUT_A, INPUT_P)


def graph_inputs(model: nn.Module, operator: ForwardOperator, h: float, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every float32 graph input of ``model`` for scaled spectra y (B, n_ω) measured everywhere, by
    contract name: y, A, P for the paper's rRIM; β = Uᵀy, S, Vt and h (B, 1) for the adaptive one, and
    x0 (B, n_Ω) when it starts from its prior."""
    if isinstance(model, AdaptiveRRIM):
        beta, *tensors = adaptive_physics(operator, np.asarray(y, dtype=np.float64), prior=model.prior)
        x0 = {INPUT_X0: tensors[-1].numpy()} if model.prior is not None else {}
        return {INPUT_BETA: beta.numpy(), **{k: t.numpy() for k, t in zip(_physics_order(model), tensors)}, **x0}
    tensors = physics_tensors(operator, h)
    return {INPUT_Y: np.asarray(y, dtype=np.float32), **{k: t.numpy() for k, t in zip(_physics_order(model), tensors)}}


def _first_input(model: nn.Module) -> str:
    return INPUT_BETA if isinstance(model, AdaptiveRRIM) else INPUT_Y


@dataclass(frozen=True)
class ParityReport:
    """Result of :func:`verify_onnx`: worst absolute and relative (to max|x|) deviation over the batches."""

    max_abs: float
    max_rel: float
    tolerance: float
    batches: tuple[int, ...]


def model_info(model: nn.Module, operator: ForwardOperator, form: str, h: float, measured_range=None,
               polish_max_iterations: int = POLISH_MAX_ITERATIONS, **info_fields) -> ModelInfo:
    """The model file's metadata; ``ValueError`` naming the first missing or empty field of :data:`INFO_FIELDS`.
    ``measured_range`` (start_max, end_min) meV: an adaptive model trained on partial ω coverage serves
    spectra measured from at most start_max to at least end_min (in the input form it takes the mask).
    ``polish_max_iterations``: how far the runtime's polish may go on towards the noise (0: exactly the
    fixed iterations the PyTorch model's loss saw, for parity checks)."""
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    unknown = sorted(set(info_fields) - set(INFO_FIELDS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown metadata field; known: {list(INFO_FIELDS)}")
    for key in INFO_FIELDS:
        value = info_fields.get(key)
        if value is None or (hasattr(value, "__len__") and len(value) == 0):
            raise ValueError(f"{key}: model metadata incomplete, '{key}' is missing or empty; refusing to export")
    low, high = (float(t) for t in info_fields["temperature_range_K"])
    if not 0 < low <= high:
        raise ValueError(f"temperature_range_K: expected 0 < low ≤ high (K), got {info_fields['temperature_range_K']!r}")
    if form == "baked" and not low <= operator.temperature <= high:
        raise ValueError(f"temperature_range_K: a baked model holds A and P at {operator.temperature:g} K, "
                         f"outside the stated range [{low:g}, {high:g}] K")
    info = ModelInfo(
        model_name=str(info_fields["model_name"]), model_version=str(info_fields["model_version"]), form=form,
        operator=operator.describe(), temperature_range_K=(low, high), h=float(h), n_steps=model.settings.n_steps,
        architecture={"kind": "rrim", **model.settings.to_dict()}, training=dict(info_fields["training"]),
        regularization=({"rule": "gcv", "h_min": H_MIN, "h_max": H_MAX, "mask": form == "input" and bool(measured_range),
                         "correction_steps": model.settings.correction_steps,
                         "polish_iterations": POLISH_ITERATIONS if model.settings.correction_steps else 0,
                         "polish_max_iterations": polish_max_iterations if model.settings.correction_steps else 0,
                         **({"measured_range_meV": list(measured_range)} if measured_range else {})}
                        if isinstance(model, AdaptiveRRIM) else {}),
        prior=model.prior.describe() if getattr(model, "prior", None) is not None else {},
        metrics=dict(info_fields["metrics"]), rrim_version=rrim_version, torch_version=torch.__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        provenance=dict(info_fields["provenance"]),
    )
    missing = [k for k in METADATA_KEYS if k not in info.to_metadata()]
    if missing:  # the contract grew keys this exporter does not fill
        raise ValueError(f"{missing[0]}: model metadata incomplete; refusing to export")
    return info


def representative_spectra(operator: ForwardOperator, n: int = 9, sigma: float = 1e-3, seed: int = 1234) -> np.ndarray:
    """Scaled float32 spectra (n + #OOD shapes, n_ω) for parity checks: ``n`` seeded Gaussian-mixture
    spectra with noise ``sigma`` and the noiseless spectra of :func:`rrim.physics.glue_families.ood_shapes`."""
    ds = make_dataset(operator, DatasetSettings(n=n, sigma=sigma, seed=seed))
    ood = operator.forward(np.stack(list(ood_shapes(operator.Omega).values())))
    return (np.concatenate([ds.y, ood]) / operator.scale).astype(np.float32)


def export_onnx(model: nn.Module, operator: ForwardOperator, path, *, form: str = "baked", h: float = DEFAULT_H,
                verify: bool = True, measured_range=None, polish_max_iterations: int = POLISH_MAX_ITERATIONS,
                **info_fields) -> Path:
    """Export ``model`` for ``operator`` (its grids, kernel, temperature, scale) to the ONNX file ``path``.

    ``info_fields``: every one of :data:`INFO_FIELDS` (``model_name``, ``model_version``,
    ``temperature_range_K`` [low, high] K, ``training``, ``metrics``, ``provenance`` dicts); the rest
    of the metadata comes from ``model``, ``operator``, ``h``, ``polish_max_iterations`` (:func:`model_info`)
    and the environment. With ``verify``
    (default) the file passes ``onnx.checker`` (full check) and :func:`verify_onnx`, and
    ``PATH.golden.npz`` is written beside it (``y``, ``x``, and for the input form ``A``, ``P``).
    Raises ``ValueError`` for incomplete metadata, a bad form or a failed parity check.
    """
    if not isinstance(model, (RRIM, AdaptiveRRIM)):
        raise ValueError(f"model: expected an rrim.export.nets.recurrent.RRIM or AdaptiveRRIM, got {type(model).__name__}")
    info = model_info(model, operator, form, h, measured_range, polish_max_iterations, **info_fields)
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path: expected a file name ending in .onnx, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rrim = graph_model(model)
    inputs = graph_inputs(rrim, operator, h, representative_spectra(operator)[:2])
    names = list(input_shapes(info))
    module = FinalIterate(rrim, names, {k: torch.as_tensor(v) for k, v in inputs.items() if k not in names}).eval()
    args = tuple(torch.as_tensor(inputs[k]) for k in names)
    dynamic = {k: {0: "batch"} for k in (*PER_ROW, OUTPUT_X) if k in names or k == OUTPUT_X}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice (see module doc)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # grid sizes (the coarse path's matrices) are constants
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=[OUTPUT_X], do_constant_folding=True, dynamic_axes=dynamic)
    proto = onnx.load(str(path))
    proto.producer_name, proto.doc_string = "rrim.export", f"rRIM ({info.model_name}), {form} form; see metadata"
    onnx.helper.set_model_props(proto, info.to_metadata())
    onnx.save(proto, str(path), save_as_external_data=False)
    if verify:
        onnx.checker.check_model(str(path), full_check=True)
        verify_onnx(path, model, operator, h)
        write_golden(path, model, operator, h)
    return path


def _onnx_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _reference(model: nn.Module, operator: ForwardOperator, h: float, y: np.ndarray):
    """(PyTorch's graph output (B, n_Ω) float32, the graph inputs by contract name) for scaled y."""
    inputs = graph_inputs(model, operator, h, y)
    with torch.no_grad():
        x = _call(graph_model(model), {k: torch.as_tensor(v) for k, v in inputs.items()})
    return x[-1].numpy(), inputs


def verify_onnx(path, model: nn.Module, operator: ForwardOperator, h: float = DEFAULT_H,
                y: np.ndarray | None = None) -> ParityReport:
    """onnxruntime (CPU) against PyTorch on ``y`` (default :func:`representative_spectra`) in batches
    of 1, 7 and all; ``ValueError`` if max|Δx| > :data:`PARITY_RTOL`·max|x|."""
    y = representative_spectra(operator) if y is None else np.asarray(y, dtype=np.float32)
    x_ref, inputs = _reference(model, operator, h, y)
    session = _onnx_session(path)
    names = [i.name for i in session.get_inputs()]
    scale = max(float(np.abs(x_ref).max()), float(np.finfo(np.float32).tiny))
    tol, worst, batches = PARITY_RTOL * scale, 0.0, (*PARITY_BATCHES, len(y))
    for b in batches:
        for i in range(0, len(y), b):
            (x,) = session.run([OUTPUT_X], {k: inputs[k][i:i + b] if k in PER_ROW else inputs[k] for k in names})
            if x.dtype != np.float32 or x.shape != x_ref[i:i + b].shape:
                raise ValueError(f"{path}: output {OUTPUT_X!r} is {x.dtype} {x.shape}, expected float32 {x_ref[i:i + b].shape}")
            worst = max(worst, float(np.abs(x - x_ref[i:i + b]).max()))
    if not worst <= tol:
        raise ValueError(f"{path}: onnxruntime differs from PyTorch by {worst:.3g} > {tol:.3g} "
                         f"({PARITY_RTOL:g}·max|x|); refusing the export")
    return ParityReport(max_abs=worst, max_rel=worst / scale, tolerance=tol, batches=batches)


def golden_path(path) -> Path:
    """``MODEL.golden.npz`` beside ``MODEL.onnx``."""
    path = Path(path)
    return path.with_name(path.stem + ".golden.npz")


def write_golden(path, model: nn.Module, operator: ForwardOperator, h: float = DEFAULT_H) -> Path:
    """Golden file for ``path``: ``y`` (representative scaled spectra, float32), ``x`` (PyTorch's
    graph output, float32) and every other graph input of the model (``A``, ``P``; or ``beta``, ``h``…)."""
    y = representative_spectra(operator)
    x, inputs = _reference(model, operator, h, y)
    names = {i.name for i in _onnx_session(path).get_inputs()}
    arrays = {"y": y, "x": x.astype(np.float32), **{k: v for k, v in inputs.items() if k in names and k != INPUT_Y}}
    out = golden_path(path)
    np.savez_compressed(out, **arrays)
    return out


def export_checkpoint(checkpoint, output, *, form: str = "baked", name: str | None = None,
                      model_version: str = "0.1.0", temperature_range_K=None, metrics: dict | None = None,
                      command: str = "", verify: bool = True) -> dict:
    """Export the rRIM of a :func:`rrim.export.nets.checkpoints.save_checkpoint` file; returns a JSON-able summary
    (path, golden, sha256, bytes, form, parity). Metadata: the checkpoint's configuration and test
    metrics (or ``metrics``), ``temperature_range_K`` defaulting to the training temperature, and
    provenance (``command``, the checkpoint's sha256, this machine)."""
    checkpoint, output = Path(checkpoint), Path(output)
    model, config, extra = load_checkpoint(checkpoint)
    if not isinstance(model, (RRIM, AdaptiveRRIM)):
        raise ValueError(f"{checkpoint}: holds a {config.model.kind!r} model; only the rRIM is exported")
    operator, h = config.operator.build(), config.training.h
    T = operator.temperature
    measured = (COVERAGE_START_MAX, COVERAGE_END_MIN) if config.data.coverage == "partial" else None
    training = {"config": config.to_dict(), **{k: extra[k] for k in ("best_epoch", "best_val_loss", "seconds") if k in extra}}
    path = export_onnx(model, operator, output, form=form, h=h, verify=verify, measured_range=measured,
                       model_name=name or output.stem,
                       model_version=model_version,
                       temperature_range_K=list(temperature_range_K) if temperature_range_K else [T, T],
                       training=training, metrics=extra.get("test_metrics", {}) if metrics is None else metrics,
                       provenance={"command": command or f"export_checkpoint({str(checkpoint)!r})",
                                   "checkpoint": checkpoint.name, "checkpoint_sha256": sha256_file(checkpoint),
                                   "machine": machine_description()})
    parity = verify_onnx(path, model, operator, h) if verify else None
    return {"path": str(path), "golden": str(golden_path(path)) if verify else None, "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "form": form,
            "parity_max_rel": parity.max_rel if parity else None}


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    return sha256_bytes(Path(path).read_bytes())


def machine_description() -> str:
    """One line naming the machine: OS, CPU architecture and count, Python and torch versions."""
    import os

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu_name()}), "
            f"Python {platform.python_version()}, torch {torch.__version__}")
