"""The SDK is lean: in a venv with only numpy + onnxruntime, ``import edge_sdk`` is fast and pulls nothing heavy.

The venv lives under the checkout (``.venv-lean-sdk/``, gitignored) and is
built once with uv from its warm cache, pinned to the versions of the main
environment so no new download is needed.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "tensorflow_federated", "tf2onnx", "onnx", "flask", "sqlalchemy", "psycopg", "jax",
             "requests", "pandas", "server", "models", "onnxruntime")


def _run(py: Path, code: str) -> dict:
    out = subprocess.run([str(py), "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lean_env_has_only_numpy_and_onnxruntime(lean_python):
    res = _run(lean_python, "import json, importlib.metadata as m; "
                            "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))")
    assert "numpy" in res and "onnxruntime" in res
    for heavy in ("tensorflow", "flask", "sqlalchemy", "pandas", "requests"):
        assert heavy not in res


def test_import_is_fast_and_light(lean_python):
    code = ("import sys, time, json; t = time.perf_counter(); import edge_sdk, edge_sdk.cli; "
            "dt = time.perf_counter() - t; "
            f"print(json.dumps({{'dt': dt, 'loaded': [m for m in {FORBIDDEN!r} if m in sys.modules], "
            "'file': edge_sdk.__file__}))")
    best = min((_run(lean_python, code) for _ in range(3)), key=lambda r: r["dt"])
    assert best["file"].startswith(str(ROOT)), best["file"]
    assert best["loaded"] == [], f"import edge_sdk pulled in {best['loaded']}"
    assert best["dt"] < 1.0, f"import edge_sdk took {best['dt']:.3f} s"


def test_cli_registration_is_light(lean_python):
    code = ("import sys, json, argparse; from edge_sdk import cli; p = argparse.ArgumentParser(); "
            "cli.register(p.add_subparsers()); "
            f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))")
    assert _run(lean_python, code) == []


def test_the_fedmark_command_offers_device_actions_in_the_lean_env(lean_python):
    out = subprocess.run([str(lean_python), "-m", "fedmark_cli", "device", "train", "--help"], cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--server", "--app-key", "--device-id", "--region", "--data", "--model", "--charging"):
        assert flag in out.stdout
