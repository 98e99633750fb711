"""``fedmark export`` from an installed ``fedmark[build]`` (no checkout, so no examples/data).

The wheel is installed with its ``build`` extra into a clean venv (uv, warm cache first, pinned by
requirements.lock plus the jax override in overrides.txt).  Without ``--data`` the command must say
which flag to pass (no traceback); with ``--data`` pointing at a team's own file it exports a trainer
artifact that the contract accepts.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv" / "bin" / "uv"

pytestmark = [pytest.mark.timeout(600), pytest.mark.tff]


@pytest.fixture(scope="module")
def build_env(tmp_path_factory: pytest.TempPathFactory, built_wheel: dict) -> dict:
    tmp = tmp_path_factory.mktemp("build-install")
    venv = tmp / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", "3.11", str(venv)], check=True, timeout=120)
    cmd = [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
           f"{built_wheel['wheel']}[build]", "--constraint", str(ROOT / "requirements.lock"),
           "--override", str(ROOT / "overrides.txt")]
    if subprocess.run(cmd + ["--offline"], capture_output=True, timeout=480).returncode != 0:
        subprocess.run(cmd, check=True, timeout=480)
    work = tmp / "cwd"
    work.mkdir()
    return {"bin": venv / "bin", "cwd": work,
            "env": {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "3"}}


def _export(b: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(b["bin"] / "fedmark"), "export", "propensity", *args], cwd=b["cwd"], env=b["env"],
                          capture_output=True, text=True, timeout=300)


def test_export_without_the_bundled_data_names_the_flag(build_env):
    out = _export(build_env, "--out", "art")
    assert out.returncode != 0 and "--data PATH" in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]


def test_export_with_a_teams_own_data_file(build_env):
    out = _export(build_env, "--out", "art", "--data", str(ROOT / "examples" / "data" / "bank-full.csv.gz"))
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((build_env["cwd"] / "art" / "manifest.json").read_text())
    assert manifest["model"] == "propensity" and manifest["family"] == "propensity"
    assert all((build_env["cwd"] / "art" / f).exists() for f in manifest["files"])
