"""The dependency direction of DESIGN.md, checked on the source.

edge_sdk -> fedmark.contract only; server -> fedmark.contract only (never models,
never TensorFlow); the contract -> stdlib + numpy.  A static check catches an
import hidden in a function body too, which a runtime check would miss.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY_BUILD = {"tensorflow", "tensorflow_federated", "tf2onnx", "onnx", "keras", "jax"}

RULES: dict[str, set[str]] = {
    # package (or module path) -> top-level names it must never import
    "edge_sdk": {"server", "models", "flask", "sqlalchemy", "alembic", "psycopg"} | HEAVY_BUILD,
    "server": {"models", "edge_sdk"} | HEAVY_BUILD,
    "fedmark/contract.py": {"edge_sdk", "server", "models", "onnxruntime", "flask", "sqlalchemy"} | HEAVY_BUILD,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(target: str) -> list[Path]:
    p = ROOT / target
    if p.suffix == ".py":
        return [p]
    # edge_sdk/web holds JavaScript; only Python files are checked here.
    return sorted(f for f in p.rglob("*.py") if "node_modules" not in f.parts)


@pytest.mark.parametrize("target", sorted(RULES))
def test_dependency_direction(target):
    files = _files(target)
    assert files, f"{target} has no Python files"
    bad = []
    for f in files:
        hit = _imports(f) & RULES[target]
        if hit:
            bad.append(f"{f.relative_to(ROOT)} imports {sorted(hit)}")
    assert not bad, "dependency direction broken:\n" + "\n".join(bad)


def test_contract_imports_only_stdlib_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    extra = _imports(ROOT / "fedmark" / "contract.py") - allowed
    assert not extra, f"fedmark/contract.py must stay pure (stdlib + numpy); it imports {sorted(extra)}"


def test_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    import tensorflow as tf\n    from server.app import x\n")
    assert {"tensorflow", "server"} <= _imports(f)
