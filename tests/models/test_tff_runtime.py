"""TFF's worker_binary never outlives the process that started it (models.tff_runtime)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.tff

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, sys
import numpy as np
from models import tff_runtime
tff = tff_runtime.import_tff()

@tff.tensorflow.computation(tff.TensorType(np.float32, [3]))
def double(x):
    return x * 2.0

assert list(double(np.array([1.0, 2.0, 3.0], np.float32))) == [2.0, 4.0, 6.0]
seen = tff_runtime.worker_pids()
print(json.dumps({"workers": seen}), flush=True)
if sys.argv[1] == "explicit":
    stopped = tff_runtime.stop_workers()
    assert stopped == seen and tff_runtime.worker_pids() == [], (stopped, tff_runtime.worker_pids())
    assert list(double(np.array([1.0, 1.0, 1.0], np.float32))) == [2.0, 2.0, 2.0]  # a fresh worker serves
    print(json.dumps({"workers": tff_runtime.worker_pids()}), flush=True)
# "atexit": leave it to the exit hook
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["atexit", "explicit"])
def test_no_worker_binary_left_after_exit(mode, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    # Output to files, not pipes: a leaked worker would hold a pipe open and hang the test,
    # which is exactly the failure this guards against.
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, env=env, stdout=fo, stderr=fe,
                              timeout=240)
    assert proc.returncode == 0, err.read_text()[-3000:]
    reports = [json.loads(line)["workers"] for line in out.read_text().splitlines() if line.startswith("{")]
    seen = {pid for r in reports for pid in r}
    assert reports[0], "the computation should have started a worker_binary (else this test proves nothing)"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in seen):
        time.sleep(0.1)
    assert not [p for p in seen if _alive(p)], f"worker_binary left running: {seen}"
