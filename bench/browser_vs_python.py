"""Local training in a browser vs in Python: the same propensity artifact, the same rows, one thread each.

Why: the design's promise is that the exported train graph runs on *any*
ONNX Runtime, the browser's WebAssembly build included.  This measures what a
visitor's browser pays for that, side by side in one run:

* **browser**: headless Chromium (Debian's, driven by playwright-core) on the
  fedmark server's ``/train`` page, the JavaScript SDK's ``Trainer`` on
  onnxruntime-web (WebAssembly, ``ort.env.wasm.numThreads = 1``);
* **python**: ``edge_sdk.trainer.Trainer(threads=1)`` on onnxruntime (CPU EP);
* **node**: the same JavaScript ``Trainer`` on onnxruntime-node (one intra-op thread).

Each repetition times ``--epochs`` local epochs per runtime (rotated order:
A B C, B C A, …, so background load on the shared machine hits all alike);
every epoch starts from the artifact's initial parameters and visits the rows
in input order.  Two figures per epoch: ``Trainer.train`` (what an app calls:
batching + one graph call + copies) and the bare graph call on pre-built
inputs (the runtime alone).  A parity check compares the parameters after one
epoch across the three runtimes.

Run:  .venv/bin/python bench/browser_vs_python.py [--rows 5000] [--reps 15] [--epochs 5] [--write]
``--write`` replaces the "## Browser trainer" section of BENCHMARKS.md (other sections are left alone).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.stats import interleave, median  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "bench" / "browser_vs_python.mjs"
SECTION = "## Browser trainer"
COMMAND = ".venv/bin/python bench/browser_vs_python.py --rows 5000 --reps 15 --epochs 5 --write"
# The update-level parity is measured by the tests (which print it with `pytest -s`), not by this script;
# its figure is kept here so that rewriting the section keeps it.  Update it when the tests' output changes.
PARITY = ("Update parity (`.venv/bin/python -m pytest tests/web/test_browser_round.py tests/web/test_node_trainer.py "
          "-s`: 800 real Bank Marketing records of which 720 consented, 2 epochs in a fixed order, clipped to 0.5): "
          "the browser's update vector differs from the Python SDK's by at most **2.98e-08** (max abs over 1,953 "
          "values; norms 0.939395 both); onnxruntime-node's is bit-identical to Python's (max abs diff 0).")


def export_artifact(out: Path) -> Path:
    """Export the propensity artifact in a child process (TensorFlow stays out of this one)."""
    code = "import sys; from models.export import export; export('propensity', sys.argv[1], seed=0)"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        raise SystemExit(f"exporting the propensity artifact failed:\n{proc.stderr[-3000:]}")
    return out


def bank_rows(artifact: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``rows`` Bank Marketing training records, encoded by the artifact's own schema."""
    from fedmark.contract import load_artifact_manifest
    from models.data import load_bank, stratified_split

    train, _ = stratified_split(load_bank(), seed=0)
    if rows > len(train):
        raise SystemExit(f"--rows {rows} exceeds the {len(train)} training records")
    manifest = load_artifact_manifest(str(artifact), verify=True)
    x, y, _ = manifest.schema().encode(train[:rows])
    assert y is not None
    return np.ascontiguousarray(x, dtype="<f4"), np.ascontiguousarray(y, dtype="<f4")


class JsWorker:
    """A bench/browser_vs_python.mjs process (browser or node mode), driven one JSON line at a time."""

    def __init__(self, mode: str, origin: str, artifact: Path, xfile: Path, yfile: Path, lr: float) -> None:
        self.proc = subprocess.Popen(["node", str(WORKER), mode, origin, str(artifact), str(xfile), str(yfile), repr(lr)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the JavaScript worker exited (code {self.proc.wait()}); see its output above")
        return json.loads(line)

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


class PyWorker:
    """The Python SDK's trainer, in this process, with the same protocol as JsWorker."""

    def __init__(self, artifact: Path, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        import onnxruntime

        from edge_sdk.trainer import Trainer

        self.trainer = Trainer(artifact, threads=1)
        self.params = self.trainer.initial_params()
        self.x, self.y, self.lr = x, y, lr
        xs, ys, ms = self.trainer.batches(x, y, np.arange(len(y)))
        names = [p.name for p in self.trainer.manifest.params]
        self.feeds = {**dict(zip(names, self.params)), "x": xs, "y": ys, "mask": ms, "lr": np.array(lr, np.float32)}
        self.session = self.trainer.session("train_epoch")  # compiled outside the timed region
        self.info = {"runtime": f"onnxruntime {onnxruntime.__version__} (intra_op_num_threads=1)",
                     "python": platform.python_version()}

    def _epoch(self) -> Any:
        return self.trainer.train(self.params, (self.x, self.y), epochs=1, lr=self.lr, shuffle=False)

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "params":
            return {"hex": np.concatenate([p.ravel() for p in self._epoch().params]).astype("<f4").tobytes().hex()}
        train_ms, graph_ms, loss = [], [], float("nan")
        for _ in range(int(cmd["epochs"])):
            t0 = time.perf_counter()
            loss = self._epoch().loss
            train_ms.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            self.session.run(None, self.feeds)
            graph_ms.append((time.perf_counter() - t0) * 1e3)
        return {"train_ms": train_ms, "graph_ms": graph_ms, "loss": loss}

    def close(self) -> None:
        pass


def run(args: argparse.Namespace) -> dict[str, Any]:
    from server.testing import running_server

    work = Path(tempfile.mkdtemp(prefix="fedmark-bench-browser-"))
    artifact = Path(args.artifact) if args.artifact else export_artifact(work / "propensity")
    x, y = bank_rows(artifact, args.rows)
    (work / "x.bin").write_bytes(x.tobytes())
    (work / "y.bin").write_bytes(y.tobytes())
    manifest = json.loads((artifact / "manifest.json").read_text())
    lr = float(manifest["hyperparams"].get("learning_rate", 0.1))
    batch = int(manifest["batch_size"])
    systems = ["browser", "python"] + ([] if args.no_node else ["node"])
    workers: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    with running_server(work / "server") as srv:  # serves /train: the page, the SDK and onnxruntime-web
        try:
            workers["python"] = PyWorker(artifact, x, y, lr)
            workers["browser"] = JsWorker("browser", srv.base_url, artifact, work / "x.bin", work / "y.bin", lr)
            if "node" in systems:
                workers["node"] = JsWorker("node", "-", artifact, work / "x.bin", work / "y.bin", lr)
            for w in workers.values():  # warm-up: first epochs fill caches and JIT the JavaScript
                w.ask({"cmd": "run", "epochs": 2})
            params = {s: np.frombuffer(bytes.fromhex(workers[s].ask({"cmd": "params"})["hex"]), "<f4") for s in systems}
            timings = interleave(systems, args.reps, lambda s, r: workers[s].ask({"cmd": "run", "epochs": args.epochs}))
        finally:
            for w in workers.values():
                w.close()
    out: dict[str, Any] = {"load_before": load_before, "load_after": os.getloadavg()[0], "rows": args.rows, "batch": batch, "batches": -(-args.rows // batch), "reps": args.reps,
                           "epochs_per_rep": args.epochs, "lr": lr, "systems": {}}
    # per-repetition ratios show how much the shared machine's load moved the figures during the run
    per_rep = [median(b["train_ms"]) / median(p["train_ms"]) for b, p in zip(timings["browser"], timings["python"])]
    out["browser_over_python_per_rep"] = {"median": median(per_rep), "min": min(per_rep), "max": max(per_rep)}
    for s in systems:
        reps = timings[s]
        train = [v for r in reps for v in r["train_ms"]]
        graph = [v for r in reps for v in r["graph_ms"]]
        out["systems"][s] = {"info": workers[s].info, "train_ms": train, "graph_ms": graph,
                             "train_median": median(train), "graph_median": median(graph),
                             "train_min": min(train), "graph_min": min(graph),
                             "loss": reps[-1]["loss"],
                             "max_abs_diff_vs_python": float(np.max(np.abs(params[s] - params["python"])))}
    return out


def report(res: dict[str, Any], parity: str | None) -> str:
    sy = res["systems"]
    py = sy["python"]
    names = {"browser": "Browser: headless Chromium, onnxruntime-web (WebAssembly, 1 thread)",
             "python": "Python: `edge_sdk.trainer.Trainer` (onnxruntime CPU, 1 thread)",
             "node": "Node: JavaScript `Trainer` on onnxruntime-node (1 thread)"}
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d')} on the shared 2-core build machine "
             f"({platform.processor() or platform.machine()}, other jobs running, so absolute times wobble). "
             f"The propensity artifact (`fedmark export propensity`, width 59 → 32 → 1, batch {res['batch']}) trained "
             f"on the first {res['rows']:,} Bank Marketing training rows ({res['batches']} batches, one graph call per "
             "epoch), the same encoded rows in the same order in every runtime, every epoch from the initial "
             f"parameters. {res['reps']} interleaved repetitions (rotated order) × {res['epochs_per_rep']} epochs "
             "each after a warm-up; medians of all epochs. `Trainer.train` is what an app calls (batching, the "
             "graph call, copies); *graph only* is the bare session run on pre-built inputs.",
             "", "Reproduce (needs `scripts/install_browser_deps.sh`):", "", "```", COMMAND, "```", "",
             "| runtime | `Trainer.train` epoch, median (fastest) | graph only, median (fastest) | "
             "epoch ÷ Python, medians (fastest) | max abs Δ params vs Python (1 epoch) |",
             "|---|---|---|---|---|"]
    for s in ("browser", "python", "node"):
        if s not in sy:
            continue
        d = sy[s]
        lines.append(f"| {names[s]} | {d['train_median']:.1f} ms ({d['train_min']:.1f}) | "
                     f"{d['graph_median']:.1f} ms ({d['graph_min']:.1f}) | "
                     f"{d['train_median'] / py['train_median']:.2f}× ({d['train_min'] / py['train_min']:.2f}×) | "
                     f"{'–' if s == 'python' else format(d['max_abs_diff_vs_python'], '.1e')} |")
    lines += ["", "Runtimes: " + "; ".join(f"{s}: {sy[s]['info']['runtime']}" for s in sy)
              + (f"; browser user agent `{sy['browser']['info'].get('user_agent', '?')}`" if "browser" in sy else "")
              + "."]
    if parity:
        lines += ["", parity]
    pr = res["browser_over_python_per_rep"]
    lines += ["", f"Browser ÷ Python per repetition (median epoch of each): median {pr['median']:.2f}×, range "
                  f"{pr['min']:.2f}×–{pr['max']:.2f}×. Load average during the run: {res['load_before']:.1f} before, {res['load_after']:.1f} after "
                  "(2 cores): the fastest epochs are the better estimate of the intrinsic cost, the medians of what "
                  "a busy machine sees.", "",
              f"Reading the figures: on its fastest epochs the browser's WebAssembly build needs "
              f"{sy['browser']['graph_min'] / py['graph_min']:.1f}× the native runtime's time for the same graph "
              f"call and {sy['browser']['train_min'] / py['train_min']:.1f}× for the whole `Trainer.train` epoch; "
              f"{res['rows']:,} rows take about {sy['browser']['train_min']:.0f} ms per epoch in the page, so a "
              "visitor's few hundred records train in a few milliseconds and the page's cost is dominated by "
              "loading onnxruntime-web (a 14 MB .wasm, cached by the browser) and the network round trips.", ""]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace (or append) our section of BENCHMARKS.md; other sections are untouched."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if nxt < 0 else old[nxt + 1:])
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per runtime per repetition")
    ap.add_argument("--artifact", help="an exported propensity artifact (default: export one now)")
    ap.add_argument("--no-node", action="store_true", help="skip onnxruntime-node")
    ap.add_argument("--parity", default=PARITY, help="the browser-vs-Python update parity sentence to record")
    ap.add_argument("--json", help="also write the raw results to this file")
    ap.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = ap.parse_args()
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    text = report(res, args.parity)
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
