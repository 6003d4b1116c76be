"""Helpers for the runtime tests: small ONNX models built with ``onnx`` (tests only), archives and their comparison.

The fixture model is ``n_steps`` of projected iterated Tikhonov x ← relu(x + P(y − Aₛx)) from
x = 0, in float32: a stand-in for the rRIM with the same contract (inputs y, and A, P in the
'input' form; output x), so that the runtime is tested without torch.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

import rrim
from rrim.models.modelfile import ModelInfo

N_STEPS = 15


def fixture_info(op: rrim.ForwardOperator, form: str, n_steps: int = N_STEPS, **overrides) -> ModelInfo:
    fields = dict(
        model_name=f"fixture-tikhonov-{form}", model_version="0.0-test", form=form, operator=op.describe(),
        temperature_range_K=(op.temperature, op.temperature) if form == "baked" else (5.0, 300.0),
        h=rrim.DEFAULT_H, n_steps=n_steps, architecture={"kind": "projected iterated Tikhonov (test fixture)"},
        training={"data": "none: analytic fixture"}, metrics={}, rrim_version=rrim.__version__, torch_version="none",
        created=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).isoformat(), provenance={"made_by": "tests/runtime_helpers.py"},
    )
    fields.update(overrides)
    return ModelInfo(**fields)


def tikhonov_model_bytes(op: rrim.ForwardOperator, form: str = "baked", n_steps: int = N_STEPS, opset: int = 18,
                         metadata: dict | None = None) -> bytes:
    """Serialized ONNX model of ``n_steps`` projected iterated-Tikhonov steps on ``op``'s grids."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_w, n_W = op.shape
    a = op.scaled_matrix.astype(np.float32)
    p = op.preconditioner(rrim.DEFAULT_H).astype(np.float32)
    nodes, inits = [], []
    inputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_w])]
    if form == "baked":
        inits += [numpy_helper.from_array(np.ascontiguousarray(a.T), "AT"),
                  numpy_helper.from_array(np.ascontiguousarray(p.T), "PT")]
    else:
        inputs += [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n_w, n_W]),
                   helper.make_tensor_value_info("P", TensorProto.FLOAT, [n_W, n_w])]
        nodes += [helper.make_node("Transpose", ["A"], ["AT"], perm=[1, 0]),
                  helper.make_node("Transpose", ["P"], ["PT"], perm=[1, 0])]
    x = None
    for t in range(n_steps):
        if x is None:
            nodes.append(helper.make_node("MatMul", ["y", "PT"], [f"g{t}"]))
            nodes.append(helper.make_node("Relu", [f"g{t}"], [f"x{t}"]))
        else:
            nodes += [helper.make_node("MatMul", [x, "AT"], [f"ax{t}"]),
                      helper.make_node("Sub", ["y", f"ax{t}"], [f"r{t}"]),
                      helper.make_node("MatMul", [f"r{t}", "PT"], [f"g{t}"]),
                      helper.make_node("Add", [x, f"g{t}"], [f"s{t}"]),
                      helper.make_node("Relu", [f"s{t}"], [f"x{t}"])]
        x = f"x{t}"
    nodes.append(helper.make_node("Identity", [x], ["x"]))
    graph = helper.make_graph(nodes, "tikhonov", inputs,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="rrim-tests")
    model.ir_version = 9
    meta = fixture_info(op, form, n_steps).to_metadata() if metadata is None else metadata
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def write_model(folder: Path, op: rrim.ForwardOperator, form: str = "baked", **kw) -> Path:
    path = Path(folder) / f"tikhonov-{form}.onnx"
    path.write_bytes(tikhonov_model_bytes(op, form, **kw))
    return path


def write_archive(path: Path, y, omega, *, omega_units="cm-1", y_units="cm-1", dims=("sample", "omega"),
                  temperature=100.0, temperature_as="coord", var="scattering_rate", engine="netcdf4", extra=None) -> Path:
    """A small archive: ``y`` (…, n_in) on ``omega`` (in ``omega_units``), temperature stored as asked."""
    import xarray as xr

    attrs_w = {} if omega_units is None else {"units": omega_units}
    attrs_y = {"long_name": "optical scattering rate"} | ({} if y_units is None else {"units": y_units})
    ds = xr.Dataset({var: (dims, np.asarray(y), attrs_y)}, coords={dims[-1]: (dims[-1], np.asarray(omega), attrs_w)})
    if temperature_as == "coord":
        ds = ds.assign_coords(temperature=((), temperature, {"units": "K"}))
    elif temperature_as == "attr":
        ds.attrs["temperature_K"] = temperature
    for k, v in (extra or {}).items():
        ds[k] = v
    ds.to_netcdf(path, engine=engine)
    return path


def sha256_file(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def noisy_spectra(op: rrim.ForwardOperator, n: int, seed: int = 7, sigma: float = 1e-3):
    """(x_true (n, n_Ω), y (n, n_ω) meV): realistic glue through ``op`` with noise σ·max(y)."""
    from rrim.physics.glue_families import realistic_glue
    from rrim.physics.synthetic import add_noise

    rng = np.random.default_rng(seed)
    x = realistic_glue(op.Omega, n, rng)
    return x, add_noise(op.forward(x), sigma, rng)


def assert_same_dataset(a, b, what: str) -> None:
    """Datasets ``a`` and ``b`` hold the same variables, coordinates, indexes, dimensions, values (bitwise)
    and attributes (``what`` names the comparison in a failure)."""
    assert set(a.data_vars) == set(b.data_vars), what
    assert set(a.coords) == set(b.coords), what
    assert set(a.indexes) == set(b.indexes), what
    for name in [*a.data_vars, *a.coords]:
        assert a[name].dims == b[name].dims, (what, name)
        x, y = a[name].values, b[name].values
        if x.dtype.kind in "fc":
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: {name}")
        else:
            assert (x == y).all(), (what, name)
        strip = lambda d: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        assert strip(a[name].attrs) == strip(b[name].attrs), (what, name)
