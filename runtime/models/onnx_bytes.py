"""Reading an ONNX file's protobuf bytes without the onnx package: the opsets it imports, and the
tensors that keep their data in external files (refused: a model must be one self-contained file)."""
from __future__ import annotations

from rrim.models.modelfile import ModelFileError


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes):
    """Top-level protobuf fields (number, wire type, value) of ``data``; raises ValueError if malformed."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(data):
            raise ValueError("truncated field")
        yield number, wire, value


def onnx_opsets(data: bytes, source: str) -> dict[str, int]:
    """Opset imports of a serialized ONNX ModelProto ({domain: version}), parsed without ``onnx``.

    Raises :class:`ModelFileError` when the bytes are not an ONNX model (no graph, no opset).
    """
    opsets, has_graph, has_ir = {}, False, False
    try:
        for number, wire, value in _fields(data):
            if number == 1 and wire == 0:
                has_ir = True
            elif number == 7 and wire == 2:
                has_graph = True
            elif number == 8 and wire == 2:
                domain, version = "", 1
                for n2, w2, v2 in _fields(value):
                    if n2 == 1 and w2 == 2:
                        domain = v2.decode()
                    elif n2 == 2 and w2 == 0:
                        version = v2
                opsets[domain] = version
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{source}: not an ONNX model file ({e})") from None
    if not (has_ir and has_graph and opsets):
        raise ModelFileError(f"{source}: not an ONNX model file (no graph or opset import)")
    return opsets


#: Protobuf fields of an ONNX model that lead to tensors: message → {field number: message}.
_TENSOR_FIELDS = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def external_tensors(data: bytes, source: str) -> list[str]:
    """Names of the tensors (initializers, constants, sparse tensors, in subgraphs and functions too) of a
    serialized ONNX model that keep their data in external files; :class:`ModelFileError` if malformed."""
    found, stack = [], [("model", memoryview(data))]
    try:
        while stack:
            kind, blob = stack.pop()
            if kind == "tensor":
                name, external = "", False
                for number, wire, value in _fields(blob):
                    if number == 8 and wire == 2:
                        name = bytes(value).decode("utf-8", "backslashreplace")
                    elif (number == 13 and wire == 2) or (number == 14 and wire == 0 and value == 1):
                        external = True  # external_data entries, or data_location = EXTERNAL
                if external:
                    found.append(name or "(unnamed)")
                continue
            stack.extend((_TENSOR_FIELDS[kind][number], value) for number, wire, value in _fields(blob)
                         if wire == 2 and number in _TENSOR_FIELDS[kind])
    except ValueError as e:
        raise ModelFileError(f"{source}: not an ONNX model file ({e})") from None
    return found


def check_self_contained(data: bytes, source: str) -> None:
    """Refuse a model whose weights live outside its file: the sha256 pin must cover every byte it runs."""
    names = external_tensors(data, source)
    if names:
        shown = ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
        raise ModelFileError(f"{source}: tensor(s) {shown} keep their data in external files; an rrim model must be "
                             "one self-contained file (its sha256 must cover the weights) — refusing it")
