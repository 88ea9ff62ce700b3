"""Components are named once, in ``core.components``: a string literal spelling a component's name anywhere
else in the package is a second, unchecked copy of it (the checkpoint folder ``text_encoder``, spelled the same,
is ``Part.TEXT_ENCODER`` there too)."""

from __future__ import annotations

import ast
from pathlib import Path

import ideogram_trt
from ideogram_trt.core.components import Component

PACKAGE = Path(ideogram_trt.__file__).parent
REGISTRY = PACKAGE / "core" / "components.py"
NAMES = {c.value for c in Component}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def literal_names(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant (docstrings aside) that is exactly a component name."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES
        and id(node) not in skip
    ]  # fmt: skip


def test_no_component_name_is_spelled_outside_the_registry() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != REGISTRY
        for line, text in literal_names(path.read_text())
    ]
    assert not found, "use Component.X (or Part.X for a checkpoint folder) instead of:\n" + "\n".join(found)


def test_the_check_sees_literals_and_not_docstrings_or_attributes() -> None:
    source = '"""dit_cond in a docstring."""\nx = Component.DIT_COND\ny = {"vae_decoder": 1}\nz = f"{x}.onnx"\n'
    assert literal_names(source) == [(3, "vae_decoder")]
