"""FLOPs per spectrum counted from an ONNX graph, and the float32 GEMM rate that makes them a floor."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

#: Element-wise op types counted apart (not in the floor).
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh")


def graph_counts(path: Path) -> dict:
    """Per spectrum: 'flops' = 2 × MatMul/Gemm/Conv multiply-adds, 'elementwise' = output elements
    of element-wise ops; 'conv_gemm' = (rows per spectrum, K, N) of the costliest Conv as a GEMM."""
    model = onnx.load(str(path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1  # the batch axis, the only dynamic one
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    macs, elementwise, convs = 0, 0, {}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            a, out = shapes[node.input[0]], shapes[node.output[0]]
            trans_a = any(x.name == "transA" and x.i for x in node.attribute)
            macs += int(np.prod(out)) * (a[0] if node.op_type == "Gemm" and trans_a else a[-1])
        elif node.op_type == "Conv":
            w, out = shapes[node.input[1]], shapes[node.output[0]]
            m = int(np.prod(out)) * int(np.prod(w[1:]))
            macs += m
            gemm = (int(np.prod(out[2:])), int(np.prod(w[1:])), w[0])
            convs[gemm] = convs.get(gemm, 0) + m
        elif node.op_type in ELEMENTWISE:
            elementwise += int(np.prod(shapes.get(node.output[0], [0])))
    return {"flops": 2 * macs, "elementwise": elementwise, "conv_gemm": max(convs, key=convs.get)}


def gemm_rate(m: int, k: int, n: int, min_seconds: float = 0.05) -> float:
    """float32 FLOP/s of numpy's (m, k) @ (k, n), repeated for at least ``min_seconds``."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    reps, t = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t) < min_seconds or reps == 0:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / elapsed
