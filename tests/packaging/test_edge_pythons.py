"""The edge distribution installs and runs on the oldest and newest CPython onnxruntime ships for here.

``python_requires`` is ``>=3.9``: the device side needs only numpy and onnxruntime.  For 3.9 and 3.13
(pyenv's builds on this machine) the wheel is installed with its ``edge`` extra into a clean venv
(uv; numpy and onnxruntime resolved for that Python), and the SDK must import, parse a real trainer
artifact's contract and offer the device commands.  The quickstart test
(tests/docs/test_runnable_blocks.py) trains a real round from such an install on 3.12.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv" / "bin" / "uv"
PYTHONS = {"3.9": Path("/root/.pyenv/versions/3.9.18/bin/python3"),
           "3.13": Path("/root/.pyenv/versions/3.13.0/bin/python3")}

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("version", sorted(PYTHONS))
def test_edge_install_on(version: str, tmp_path: Path, built_wheel: dict):
    base = PYTHONS[version]
    assert base.exists(), f"pyenv's CPython {version} is missing at {base}"
    env_dir = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", str(base), str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    subprocess.run([str(UV), "pip", "install", "--quiet", "--python", str(py), f"{built_wheel['wheel']}[edge]"],
                   check=True, timeout=480)
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    code = ("import json, sys, importlib.util as u, numpy, onnxruntime, edge_sdk, fedmark.contract as c; "
            "print(json.dumps({'v': list(sys.version_info[:2]), 'ort': onnxruntime.__version__, "
            "'heavy': [m for m in ('tensorflow', 'flask', 'sqlalchemy') if u.find_spec(m)], "
            "'size': c.encoded_size(10, 'q8'), 'client': hasattr(edge_sdk, 'Client')}))")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout)
    assert info["v"] == [int(x) for x in version.split(".")] and info["heavy"] == [] and info["client"], info
    assert info["size"] == c_size_q8(10)
    helps = subprocess.run([str(py.parent / "fedmark"), "device", "train", "--help"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=120)
    assert helps.returncode == 0 and "--wait-round" in helps.stdout, helps.stderr[-2000:]
    version_out = subprocess.run([str(py.parent / "fedmark"), "--version"], capture_output=True, text=True,
                                 cwd=tmp_path, env=env, timeout=60)
    assert f"(Python {version}." in version_out.stdout, version_out.stdout


def c_size_q8(n: int) -> int:
    from fedmark.contract import encoded_size

    return encoded_size(n, "q8")
