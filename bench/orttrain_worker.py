"""ONNX Runtime's own (deprecated) on-device training API, driven for bench/training_peers.py.

Runs under ``.venv-orttrain/bin/python`` (onnxruntime-training 1.19.2, onnx 1.16,
numpy 1.26) — never imported by the project.  Protocol: argv = ARTIFACT_DIR
DATA.npz WORKDIR; it builds the forward model from the fedmark artifact's
``infer.onnx`` (parameter inputs become initializers holding ``params.bin``;
the final Sigmoid is dropped so the output is the logit), generates ORT's
training artifacts with ``generate_artifacts`` (BCEWithLogitsLoss, SGD),
creates the Module / Optimizer (single thread) and prints one JSON line
(artifact sizes, generation and cold-start seconds, parameters after a first
epoch for the equality check).  Then each ``epoch`` line on stdin runs one
local epoch (Module forward+backward, Optimizer.step, lazy_reset_grad per
batch) and prints its seconds; ``quit`` ends it.
"""
from __future__ import annotations

import json
import os
import sys
import time
import types

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper

# onnxruntime/training/__init__.py imports its torch-based optimizers (unused here, and torch is not installed):
# register the package without running that file so the torch-free submodules import.
_pkg = types.ModuleType("onnxruntime.training")
_pkg.__path__ = [os.path.join(os.path.dirname(onnxruntime.__file__), "training")]  # type: ignore[attr-defined]
sys.modules["onnxruntime.training"] = _pkg
from onnxruntime.training import artifacts  # noqa: E402
from onnxruntime.training.api import CheckpointState, Module, Optimizer  # noqa: E402


def forward_model(art: str) -> tuple[onnx.ModelProto, list[str]]:
    man = json.load(open(os.path.join(art, "manifest.json")))
    names = [p["name"] for p in man["params"]]
    flat = np.fromfile(os.path.join(art, "params.bin"), "<f4")
    m = onnx.load(os.path.join(art, man["graphs"]["infer"]))
    g = m.graph
    off = 0
    inits = []
    for p in man["params"]:
        size = int(np.prod(p["shape"])) if p["shape"] else 1
        inits.append(numpy_helper.from_array(flat[off:off + size].reshape(p["shape"]).astype(np.float32), p["name"]))
        off += size
    keep = [i for i in g.input if i.name not in names]
    del g.input[:]
    g.input.extend(keep)
    g.initializer.extend(inits)
    sig = [n for n in g.node if n.op_type == "Sigmoid" and n.output[0] == g.output[0].name]
    if sig:
        logit = sig[0].input[0]
        g.node.remove(sig[0])
        out = onnx.ValueInfoProto()
        out.CopyFrom(g.output[0])  # Sigmoid keeps the shape: the logit has the probability's type
        out.name = logit
        del g.output[:]
        g.output.append(out)
    return m, names


def main() -> None:
    art, data_path, work = sys.argv[1:4]
    d = np.load(data_path)
    x, y, order, batch, lr = d["x"], d["y"], d["order"], int(d["batch"]), float(d["lr"])
    model, names = forward_model(art)
    t0 = time.perf_counter()
    artifacts.generate_artifacts(model, requires_grad=names, frozen_params=[], loss=artifacts.LossType.BCEWithLogitsLoss,
                                 optimizer=artifacts.OptimType.SGD, artifact_directory=work)
    gen_s = time.perf_counter() - t0
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    t0 = time.perf_counter()
    state = CheckpointState.load_checkpoint(os.path.join(work, "checkpoint"))
    module = Module(os.path.join(work, "training_model.onnx"), state, os.path.join(work, "eval_model.onnx"),
                    device="cpu", session_options=opts)
    optimizer = Optimizer(os.path.join(work, "optimizer_model.onnx"), module)
    cold_s = time.perf_counter() - t0
    optimizer.set_learning_rate(lr)
    fwd_inputs = {i.name for i in model.graph.input}
    tm = onnx.load(os.path.join(work, "training_model.onnx"), load_external_data=False)
    label = [i for i in tm.graph.input if i.name not in fwd_inputs][0]
    label_rank = len(label.type.tensor_type.shape.dim)  # the loss's target has the logit's shape

    def epoch() -> float:
        module.train()
        loss = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            yb = y[idx].reshape(-1, 1) if label_rank == 2 else y[idx]
            loss = float(module(x[idx], yb))
            optimizer.step()
            module.lazy_reset_grad()
        return loss

    t0 = time.perf_counter()
    loss = epoch()
    first_s = time.perf_counter() - t0
    params = {n: np.asarray(state.parameters[n].data).ravel().tolist() for n in names}
    sizes = {f: os.path.getsize(os.path.join(work, f)) for f in sorted(os.listdir(work))}
    print(json.dumps({"gen_s": gen_s, "cold_s": cold_s, "first_epoch_s": first_s, "loss": loss, "sizes": sizes,
                      "params": params, "ort": onnxruntime.__version__}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        t0 = time.perf_counter()
        epoch()
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__":
    main()
