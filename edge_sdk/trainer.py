"""Run an exported trainer artifact with ONNX Runtime: local training and scoring.

Why this exists: devices and browsers cannot install TensorFlow, and ONNX
Runtime's own training builds are deprecated.  A fedmark artifact therefore
ships its train step as a plain ONNX graph (params + batch in, new params +
loss out) plus a fused-epoch variant (an ONNX ``Loop`` over batches), and this
module drives those graphs with numpy arrays.  It imports only numpy,
onnxruntime, ``fedmark.contract`` and the protocol plug-ins
(``edge_sdk.families``, numpy only), so it runs in the leanest install.

What the graphs are fed depends on the manifest's training *protocol*, and
lives in its plug-in (:func:`edge_sdk.families.protocol_for`):
``supervised-tabular/1`` (records with a binary, numeric or class label) and
``mf-reconstruction/1`` (the recommender with a device-only user vector).
The Trainer keeps what every protocol shares — sessions, parameter checks,
hyperparameter defaults — and forwards protocol helpers (``batches``,
``check_tabular``, ``recommender_plan``, ``reconstruct``) to the plug-in.
An artifact of a protocol this SDK does not know is refused on load.

See docs/ARTIFACT.md for every graph's inputs and outputs.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from edge_sdk.families import TrainerError, TrainingProtocol, TrainResult, protocol_for
from edge_sdk.families.mf import Blocks, RecommenderPlan
from fedmark.contract import PARAMS_FILE, Manifest, ManifestError, load_artifact_manifest, params_file

__all__ = ["PARAMS_FILE", "TrainerError", "TrainResult", "Blocks", "RecommenderPlan", "Trainer"]


class Trainer:
    """Runs an exported artifact's graphs with onnxruntime."""

    manifest: Manifest
    protocol: TrainingProtocol

    def __init__(self, artifact_dir: str | os.PathLike[str], *, verify: bool = True, threads: int = 1) -> None:
        self.directory = os.fspath(artifact_dir)
        self.manifest = load_artifact_manifest(self.directory, verify=verify)
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self.hyperparams: dict[str, Any] = dict(self.manifest.hyperparams)
        self.protocol = protocol_for(self.manifest, self)

    def __getattr__(self, name: str) -> Any:
        # Protocol helpers (batches, recommender_plan, …) are the plug-in's; only public names are forwarded.
        if name.startswith("_") or name in ("protocol", "manifest"):
            raise AttributeError(name)
        try:
            return getattr(self.protocol, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__!r} for protocol {self.manifest.protocol} has no attribute "
                                 f"{name!r}") from None

    # ------------------------------------------------------------------ sessions
    def session(self, role: str) -> ort.InferenceSession:
        """The (cached) onnxruntime session for a graph role, e.g. 'train_epoch'."""
        if role not in self._sessions:
            if role not in self.manifest.graphs:
                raise ManifestError(f"artifact has no {role!r} graph; it has {sorted(self.manifest.graphs)}")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            path = os.path.join(self.directory, self.manifest.graphs[role])
            self._sessions[role] = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        return self._sessions[role]

    def run(self, role: str, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Run one graph of the artifact on numpy feeds."""
        return self.session(role).run(None, {k: np.asarray(v) for k, v in feeds.items()})

    # ------------------------------------------------------------------ parameters
    def initial_params(self) -> list[np.ndarray]:
        """Global params from the artifact's params file (``fedmark.contract.params_file``: raw LE float32,
        manifest order)."""
        name = params_file(self.manifest)
        raw = np.fromfile(os.path.join(self.directory, name), dtype="<f4")
        if raw.size != self.manifest.num_params:
            raise ManifestError(f"{name} holds {raw.size} values, the manifest's parameters need {self.manifest.num_params}")
        out, off = [], 0
        for spec in self.manifest.params:
            out.append(raw[off:off + spec.size].astype(np.float32).reshape(spec.shape))
            off += spec.size
        return out

    def initial_local(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Fresh device-only params (the recommender's N(0, init_scale²) user vector); {} when there are none."""
        scale = float(self.hyperparams.get("init_scale", 0.1))
        rng = np.random.default_rng(seed)
        return {p.name: (rng.standard_normal(p.shape) * scale).astype(np.float32) for p in self.manifest.local_params}

    def check_params(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        specs = self.manifest.params
        if len(params) != len(specs):
            raise TrainerError(f"got {len(params)} parameter arrays, the artifact has {len(specs)} "
                               f"({', '.join(s.name for s in specs)})")
        out = []
        for p, s in zip(params, specs):
            a = np.asarray(p, dtype=np.float32)
            if a.shape != s.shape:
                raise TrainerError(f"parameter {s.name!r} has shape {a.shape}, the artifact expects {s.shape}")
            if not np.all(np.isfinite(a)):
                raise TrainerError(f"parameter {s.name!r} contains NaN or Inf")
            out.append(np.ascontiguousarray(a))
        return out

    def check_local(self, local: Mapping[str, np.ndarray] | None, seed: int) -> dict[str, np.ndarray]:
        if local is None:
            return self.initial_local(seed)
        out = {}
        for s in self.manifest.local_params:
            if s.name not in local:
                raise TrainerError(f"local params lack {s.name!r}; pass trainer.initial_local() or a previous result.local")
            a = np.asarray(local[s.name], dtype=np.float32)
            if a.shape != s.shape:
                raise TrainerError(f"local param {s.name!r} has shape {a.shape}, the artifact expects {s.shape}")
            out[s.name] = a.copy()
        return out

    # ------------------------------------------------------------------ training
    def train(self, params: Sequence[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None = None,
              epochs: int | None = None, lr: float | None = None, seed: int = 0, shuffle: bool = True) -> TrainResult:
        """Local training from ``params``; returns the new params (the caller computes the delta).

        ``data`` is what the protocol trains on: ``(x, y)`` for
        supervised-tabular, the customer's item indices for mf-reconstruction.
        ``shuffle=False`` keeps the data order (simulations that must replay
        the same batches elsewhere); devices should leave it on.
        """
        epochs = int(self.hyperparams.get("epochs", 1) if epochs is None else epochs)
        lr = float(self.hyperparams.get("learning_rate", 0.1) if lr is None else lr)
        if epochs < 1:
            raise TrainerError(f"epochs must be >= 1, got {epochs}")
        if not (math.isfinite(lr) and lr > 0):
            raise TrainerError(f"learning rate must be a positive number, got {lr}")
        return self.protocol.train(self.check_params(params), data, local=local, epochs=epochs, lr=lr, seed=seed,
                                   shuffle=shuffle)

    # ------------------------------------------------------------------ inference
    def predict(self, params: Sequence[np.ndarray], data: Any = None, *,
                local: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The protocol's inference output: probabilities / predictions / class probabilities for x
        (supervised-tabular), a logit score for every item (mf-reconstruction, from ``local`` or by
        reconstructing the user vector from ``data``)."""
        return self.protocol.predict(self.check_params(params), data, local=local)
