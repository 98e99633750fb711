"""The device side trains with numpy + onnxruntime only: no TensorFlow anywhere.

A separate venv (cached in .venv-lean/, gitignored) gets just numpy and
onnxruntime.  Only the shared package and the SDK are copied beside the test
script — fedmark/ (contract + metrics) and edge_sdk/ (the trainer and its
protocol plug-ins) — so any hidden import of TensorFlow, tf2onnx, onnx,
``models`` or ``server`` fails.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEAN = os.path.join(ROOT, ".venv-lean")
UV = os.path.join(ROOT, ".venv", "bin", "uv")
REQUIREMENTS = ["numpy", "onnxruntime"]
STAMP = os.path.join(LEAN, ".fedmark-lean")

SCRIPT = r"""
import importlib.util, json, sys
import numpy as np

for heavy in ("tensorflow", "tensorflow_federated", "tf2onnx", "onnx", "keras"):
    try:
        __import__(heavy)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{heavy} is importable in the lean environment")

from edge_sdk import trainer

out = {}
t = trainer.Trainer(sys.argv[2])
x, y = np.load(sys.argv[4]), np.load(sys.argv[5])
p0 = t.initial_params()
r = t.train(p0, (x, y), epochs=1)
out["propensity"] = {"changed": float(max(np.abs(a - b).max() for a, b in zip(p0, r.params))), "loss": r.loss,
                     "n": r.num_examples, "prob": float(t.predict(r.params, x[:3]).mean())}
t = trainer.Trainer(sys.argv[3])
q0 = t.initial_params()
r = t.train(q0, np.load(sys.argv[6]), local=t.initial_local(1))
out["recommender"] = {"changed": float(max(np.abs(a - b).max() for a, b in zip(q0, r.params))), "loss": r.loss,
                      "n": r.num_examples, "scores": int(t.predict(r.params, local=r.local).shape[0])}
t = trainer.Trainer(sys.argv[7])
xr, yr = np.load(sys.argv[8]), np.load(sys.argv[9])
r0 = t.initial_params()
r = t.train(r0, (xr, yr), epochs=2)
out["regression"] = {"protocol": t.manifest.protocol, "changed": float(max(np.abs(a - b).max() for a, b in zip(r0, r.params))),
                     "loss": r.loss, "n": r.num_examples, "pred": t.predict(r.params, xr[:4]).tolist()}
t = trainer.Trainer(sys.argv[10])  # the country through an Embedding: Gather / ScatterND in plain onnxruntime
xe, ye = np.load(sys.argv[11]), np.load(sys.argv[12])
e0 = t.initial_params()
r = t.train(e0, (xe, ye), epochs=2)
out["embedding"] = {"kinds": [c.kind for c in t.manifest.schema().columns], "n": r.num_examples, "loss": r.loss,
                    "table_rows_changed": int((np.abs(r.params[0] - e0[0]).max(axis=1) > 0).sum())}
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "onnx", "tf2onnx", "models", "server"))
out["heavy_modules"] = heavy
print(json.dumps(out))
"""


def _lean_python() -> str:
    """Create (once) and return the lean venv's python; reruns reuse it."""
    py = os.path.join(LEAN, "bin", "python")
    if os.path.exists(STAMP) and os.path.exists(py):
        return py
    tmp = f"{LEAN}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["python3.11", "-m", "venv", "--without-pip", tmp], check=True, timeout=120)
    base = [UV, "pip", "install", "--quiet", "--python", os.path.join(tmp, "bin", "python"), *REQUIREMENTS]
    # The uv cache is warm on this machine: try offline first, fall back to the index.
    if subprocess.run(base + ["--offline"], capture_output=True, timeout=300).returncode != 0:
        subprocess.run(base, check=True, capture_output=True, timeout=600)
    with open(os.path.join(tmp, ".fedmark-lean"), "w") as f:
        f.write(" ".join(REQUIREMENTS) + "\n")
    shutil.rmtree(LEAN, ignore_errors=True)
    os.rename(tmp, LEAN)
    return py


def test_trainer_runs_without_tensorflow(tmp_path, propensity_artifact, recommender_artifact, bank_xy, retail,
                                         regression_artifact, embedding_artifact, value_split):
    py = _lean_python()
    code = tmp_path / "code"
    code.mkdir(parents=True)
    shutil.copytree(os.path.join(ROOT, "fedmark"), code / "fedmark", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(ROOT, "edge_sdk"), code / "edge_sdk",
                    ignore=shutil.ignore_patterns("__pycache__", "web"))
    (code / "run.py").write_text(SCRIPT)
    np.save(tmp_path / "x.npy", bank_xy[0][:500])
    np.save(tmp_path / "y.npy", bank_xy[1][:500])
    np.save(tmp_path / "pos.npy", retail.train[8])
    from fedmark.contract import load_artifact_manifest

    xr, yr, _ = load_artifact_manifest(regression_artifact).schema().encode(value_split[0][:400])
    np.save(tmp_path / "xr.npy", xr)
    np.save(tmp_path / "yr.npy", yr)
    xe, ye, _ = load_artifact_manifest(embedding_artifact).schema().encode(value_split[0][:400])
    np.save(tmp_path / "xe.npy", xe)
    np.save(tmp_path / "ye.npy", ye)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code), "HOME": str(tmp_path)}
    proc = subprocess.run([py, str(code / "run.py"), "-", str(propensity_artifact),
                           str(recommender_artifact), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                           str(tmp_path / "pos.npy"), str(regression_artifact), str(tmp_path / "xr.npy"),
                           str(tmp_path / "yr.npy"), str(embedding_artifact), str(tmp_path / "xe.npy"),
                           str(tmp_path / "ye.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy_modules"] == []
    assert out["propensity"]["changed"] > 1e-4 and out["propensity"]["n"] == 500
    assert 0.0 < out["propensity"]["loss"] < 1.0 and 0.0 < out["propensity"]["prob"] < 1.0
    assert out["recommender"]["changed"] > 1e-5 and out["recommender"]["n"] == len(np.unique(retail.train[8]))
    assert out["recommender"]["scores"] == retail.n_items
    reg = out["regression"]  # a family exported by `fedmark export tabular` (issue 14)
    assert reg["protocol"] == "supervised-tabular/1" and reg["n"] == 400 and reg["changed"] > 1e-4
    assert np.isfinite(reg["loss"]) and len(reg["pred"]) == 4 and all(np.isfinite(reg["pred"]))
    emb = out["embedding"]
    countries = len(np.unique(xe[:, emb["kinds"].index("index")]))
    assert "index" in emb["kinds"] and emb["n"] == 400 and np.isfinite(emb["loss"])
    assert emb["table_rows_changed"] == countries  # exactly the rows of the countries trained on moved
    # and the lean interpreter really lacks TensorFlow (not just this script's view of it)
    probe = subprocess.run([py, "-c", "import tensorflow"], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr
