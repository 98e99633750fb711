"""The wheel an app team installs, built once per session from a clean copy of the checkout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv*", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
                                     "out", "var", "test-artifacts", ".pytest_cache", ".hypothesis", ".schemathesis",
                                     ".fedmark-device", "*.csv.gz", "fedmark.env")


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{"wheel": Path, "build_s": float}``: the checkout (no venvs, node_modules, caches or data sets) copied
    and built with this environment's setuptools, as ``pip install .`` would."""
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
    t0 = time.perf_counter()
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--wheel-dir", str(dist), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("fedmark-*.whl")
    return {"wheel": wheel, "build_s": round(time.perf_counter() - t0, 2)}
