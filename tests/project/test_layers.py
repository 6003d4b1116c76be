"""The runtime's layers import one way: each package only from itself and the layers below it; likewise
the subpackages of rrim.export."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rrim

#: Bottom to top (docs/ARCHITECTURE.md, "Layers"); ``rrim`` itself is the forward model's public API.
LAYERS = ("rrim.files", "rrim.physics", "rrim.solvers", "rrim.models", "rrim.inversion", "rrim.io", "rrim.jobs",
          "rrim.plugins", "rrim.cli")
#: rrim.export bottom to top; packages of one rank do not import each other.
EXPORT_LAYERS = (("rrim.export.config",), ("rrim.export.nets", "rrim.export.data"),
                 ("rrim.export.training", "rrim.export.onnx"), ("rrim.export.recipes",), ("rrim.export.commands",))
ROOT = Path(rrim.__file__).resolve().parent
PLUGINS = ROOT.parent / "plugins"
EXPORT = ROOT.parent / "export"


def layer(module: str) -> int | None:
    return next((i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")), None)


def imports(path: Path) -> set[str]:
    """Every rrim module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "rrim" or m.startswith("rrim.")}


def modules():
    for path in sorted(ROOT.rglob("*.py")):
        if "data" not in path.relative_to(ROOT).parts:
            yield "rrim." + ".".join(path.relative_to(ROOT).with_suffix("").parts), path
    for path in sorted(PLUGINS.rglob("*.py")):
        yield "rrim.plugins." + ".".join(path.relative_to(PLUGINS).with_suffix("").parts), path


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_flow_down(name, path):
    here = layer(name.removesuffix(".__init__"))
    if here is None:  # rrim/__init__.py, rrim/__main__.py
        return
    upward = [m for m in imports(path) if layer(m) is not None and layer(m) > here]
    assert not upward, f"{name} (layer {LAYERS[here]}) imports from higher layers: {upward}"


def test_no_relative_imports():
    """Absolute imports only, so that an import graph shows the arrows between runtime/, export/ and plugins/."""
    paths = [p for _, p in modules()] + sorted(EXPORT.rglob("*.py"))
    relative = [f"{p}:{n.lineno}" for p in paths for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not relative, relative


def export_package(module: str) -> tuple[int, str] | None:
    """(rank, package) of an rrim.export module in :data:`EXPORT_LAYERS`, None outside them."""
    return next(((rank, name) for rank, names in enumerate(EXPORT_LAYERS) for name in names
                 if module == name or module.startswith(name + ".")), None)


@pytest.mark.parametrize("path", sorted(EXPORT.rglob("*.py")), ids=lambda p: str(p.relative_to(EXPORT)))
def test_export_imports_flow_down(path):
    name = "rrim.export." + ".".join(path.relative_to(EXPORT).with_suffix("").parts)
    here = export_package(name.removesuffix(".__init__"))
    if here is None:  # rrim/export/__init__.py
        return
    bad = [m for m in imports(path) if (there := export_package(m)) is not None and there[1] != here[1]
           and there[0] >= here[0]]
    assert not bad, f"{name} imports from its own rank or above: {bad}"
