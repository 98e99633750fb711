"""The floors of docs/ARCHITECTURE.md, checked on the source.

Two levels of floors, both enforced by reading every ``import`` in the tree,
including imports placed inside function bodies (which a runtime check, and a
reader skimming the top of a file, would miss):

* **Packages.** ``fedmark`` (the shared contract and metrics: stdlib + numpy
  only) <- ``edge_sdk``, ``server``, ``models`` (never each other) <- the
  simulator ``simulate`` (drives all three) <- the umbrella command
  ``fedmark_cli`` and the demo in ``examples/demo``.
* **Inside ``server/``.** Every sub-package or top module is a *unit* on a
  floor; a unit may import only units on strictly lower floors (and itself).
  With strict floors a cycle between units is impossible, and a second test
  also refuses module-level cycles inside a unit.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY_BUILD = {"tensorflow", "tensorflow_federated", "tf2onnx", "onnx", "keras", "jax"}
ABOVE = {"fedmark_cli", "examples", "bench", "tests"}
SIM = {"simulate"}  # the floor between edge_sdk/server/models and fedmark_cli

RULES: dict[str, set[str]] = {
    # package -> top-level names it must never import
    "fedmark": {"edge_sdk", "server", "models", "onnxruntime", "flask", "sqlalchemy"} | HEAVY_BUILD | ABOVE | SIM,
    "edge_sdk": {"server", "models", "flask", "sqlalchemy", "alembic", "psycopg"} | HEAVY_BUILD | ABOVE | SIM,
    "server": {"models", "edge_sdk"} | HEAVY_BUILD | ABOVE | SIM,
    "models": {"server", "edge_sdk"} | ABOVE | SIM,
    # the simulator drives edge_sdk, server and models (TensorFlow only via models, when exporting)
    "simulate": HEAVY_BUILD | ABOVE,
    "fedmark_cli": {"examples", "bench", "tests"},
}

#: The floors inside server/, lowest first.  A unit imports only units on lower floors.
SERVER_FLOORS: list[set[str]] = [
    {"server.errors", "server.clock"},
    {"server.config"},
    {"server.storage", "server.aggregation"},   # aggregation also holds the statistics release maths (#15)
    {"server.migrations", "server.auth"},
    {"server.governance"},   # decisions only: eligible? exported? suppressed? (no version or round changes)
    {"server.registry"},     # versions, artifacts, lineage
    {"server.rounds"},       # round state, tasks, ingestion, the fold; statistics tasks (#15) are a round kind
    {"server.lifecycle"},    # use cases that change versions or end rounds: policy, gate, publish, rollback
    {"server.federation"},   # roles region/global: pull versions, push regional aggregates, global rounds
    {"server.api"},          # one blueprint per resource
    {"server.app"},
    {"server.wsgi", "server.serving"},   # what runs the app: gunicorn or werkzeug
    {"server.cli", "server.testing", "server"},
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against ``path``)."""
    if node.level == 0:
        return node.module or ""
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    base = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(name: str) -> bool:
    p = ROOT.joinpath(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file; ``from pkg import sub`` counts as ``pkg.sub``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(path, node)
            if not mod or mod == "__future__":
                continue
            subs = [f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")]
            out.update(subs or [mod])
            if len(subs) < len(node.names):
                out.add(mod)
    return out


def _imports(path: Path) -> set[str]:
    return {m.split(".")[0] for m in _imported_modules(path)}


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


def test_shared_package_imports_only_stdlib_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "fedmark"}
    bad = {str(f.relative_to(ROOT)): sorted(_imports(f) - allowed) for f in _files("fedmark")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"fedmark/ must stay pure (stdlib + numpy): {bad}"


def _unit_of(module: str) -> str | None:
    """The server unit a module belongs to (``server.rounds.ingest`` -> ``server.rounds``)."""
    if module != "server" and not module.startswith("server."):
        return None
    parts = module.split(".")
    return "server" if len(parts) == 1 else ".".join(parts[:2])


def _floor(unit: str) -> int:
    for i, units in enumerate(SERVER_FLOORS):
        if unit in units:
            return i
    raise AssertionError(f"{unit} has no floor in SERVER_FLOORS: give it one (tests/test_layout.py)")


def test_server_floors_point_down():
    bad = []
    for f in _files("server"):
        here = _unit_of(_module_name(f))
        assert here is not None
        for mod in sorted(_imported_modules(f)):
            there = _unit_of(mod)
            if there is None or there == here or there == "server":
                continue  # outside server/, inside the same unit, or the lazy package facade
            if _floor(there) >= _floor(here):
                bad.append(f"{f.relative_to(ROOT)} ({here}, floor {_floor(here)}) imports {mod} "
                           f"({there}, floor {_floor(there)})")
    assert not bad, "server/ imports that do not point down:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_cycles_in_server():
    graph: dict[str, set[str]] = {}
    for f in _files("server"):
        name = _module_name(f)
        # A package's own __init__ re-exporting its submodules is not a dependency of those submodules.
        graph[name] = {m for m in _imported_modules(f) if m.startswith("server") and m != name
                       and not name.startswith(m + ".")}
    cycles = _cycles(graph)
    assert not cycles, "import cycles inside server/: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_server_unit_has_a_floor():
    units = {_unit_of(_module_name(f)) for f in _files("server")}
    for u in sorted(units):
        _floor(u)


def test_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    import tensorflow as tf\n    from server.app import x\n")
    assert {"tensorflow", "server"} <= _imports(f)


def test_floor_checker_catches_an_upward_import():
    # registry importing rounds is exactly the kind of import that built the old cycle
    assert _floor("server.rounds") > _floor("server.registry") > _floor("server.governance")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
