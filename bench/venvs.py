"""Side virtual environments: for peers whose pins clash with this project's, and for
install tests (``create``: e.g. an edge-only install of this checkout's wheel).

Why separate environments: Flower, ONNX Runtime's (deprecated) training build
and schemathesis each pull numpy / protobuf / typing-extensions versions that
TensorFlow 2.14 and TFF 0.87 (pinned in ``.venv``) refuse.  A benchmark or
fuzz test that needs one creates it here, once, with the project's own ``uv``
(registry packages only), and runs the peer as a separate process with that
environment's interpreter.  The directories are gitignored.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"

#: name -> pinned requirement list.  Bumping a pin rebuilds that environment (the stamp records the list).
SPECS: dict[str, tuple[str, ...]] = {
    # The last line whose classic start_server/start_client (gRPC bidi stream) is not deprecated.
    "flwr": ("flwr==1.13.1", "numpy==1.26.4", "psutil"),
    # ORT's last training release; it needs numpy<2 and an onnx that matches its opset support.
    "orttrain": ("onnxruntime-training==1.19.2", "onnx==1.16.2", "numpy==1.26.4"),
    # schemathesis wants typing-extensions>=4.12 while tensorflow 2.14 needs <4.6.
    "fuzz": ("schemathesis==4.32.5",),
}


def create(env_dir: str | Path, requirements: Sequence[str], *, constraints: str | Path | None = None,
           offline_first: bool = False, compile_bytecode: bool = False, timeout: float = 600.0) -> Path:
    """Make ``env_dir`` a Python 3.11 venv holding ``requirements`` (installed with the project's uv);
    returns its interpreter.

    ``constraints`` (e.g. ``requirements.lock``) pins whatever gets resolved; ``offline_first``
    tries uv's warm cache before the index; ``compile_bytecode`` writes ``.pyc`` files at install
    time, as ``pip install`` does (uv does not by default).
    """
    env_dir = Path(env_dir)
    py = env_dir / "bin" / "python"
    if not UV.exists():
        raise RuntimeError(f"{UV} is missing: run `make venv` first (it installs uv into .venv)")
    subprocess.run([str(UV), "venv", "--quiet", "--allow-existing", "--python", "3.11", str(env_dir)],
                   check=True, timeout=timeout)
    cmd = [str(UV), "pip", "install", "--quiet", "--python", str(py), *requirements]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    if compile_bytecode:
        cmd.append("--compile-bytecode")
    if offline_first and subprocess.run(cmd + ["--offline"], capture_output=True, timeout=timeout).returncode == 0:
        return py
    subprocess.run(cmd, check=True, timeout=timeout)
    return py


def ensure(name: str, timeout: float = 600.0) -> Path:
    """The interpreter of ``.venv-<name>``, created (or rebuilt after a pin change) if needed."""
    pins: Sequence[str] = SPECS[name]
    env_dir = ROOT / f".venv-{name}"
    py = env_dir / "bin" / "python"
    stamp = env_dir / ".fedmark-pins"
    want = "\n".join(pins) + "\n"
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    create(env_dir, pins, timeout=timeout)
    stamp.write_text(want)
    return py


if __name__ == "__main__":
    for n in sys.argv[1:] or list(SPECS):
        print(n, ensure(n))
