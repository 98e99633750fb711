"""Run an exported trainer artifact with ONNX Runtime: local training and scoring.

Why this exists: devices and browsers cannot install TensorFlow, and ONNX
Runtime's own training builds are deprecated.  A fedmark artifact therefore
ships its train step as a plain ONNX graph (params + batch in, new params +
loss out) plus a fused-epoch variant (an ONNX ``Loop`` over batches), and this
module drives those graphs with numpy arrays.  It imports only numpy,
onnxruntime and ``fedmark.contract`` so it runs in the leanest install.

Two families (``manifest.family``):

* ``propensity`` – data is ``(x [N, width], y [N])``; each epoch shuffles with
  ``seed``, pads the last batch with mask 0 and makes one ``train_epoch`` call.
* ``recommender`` – data is the user's positive item indices.  The device
  samples negatives (uniform over items the user has not bought), first
  *reconstructs* its private user vector with the items frozen
  (``recon_epoch``), then trains only the item rows it touched
  (``train_epoch`` on gathered blocks of K rows, scattered back), so a step
  never rewrites the whole item table.

See docs/ARTIFACT.md for every graph's inputs and outputs.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from fedmark.contract import PARAMS_FILE, ContractError, Manifest, ManifestError, load_artifact_manifest, params_file

__all__ = ["PARAMS_FILE", "TrainerError", "TrainResult", "Blocks", "RecommenderPlan", "Trainer"]


class TrainerError(ContractError):
    """Training input does not fit the artifact (shape, dtype, values)."""


@dataclass
class TrainResult:
    """Outcome of local training."""

    params: list[np.ndarray]
    local: dict[str, np.ndarray]
    loss: float
    num_examples: int


@dataclass
class Blocks:
    """Fixed-size blocks of (item index, label, mask) rows for the recommender graphs."""

    idx: np.ndarray     # int64 [num_blocks, K]
    labels: np.ndarray  # float32 [num_blocks, K]
    mask: np.ndarray    # float32 [num_blocks, K]


@dataclass
class RecommenderPlan:
    """Everything random about one recommender ``train`` call, drawn up front.

    Public so that a simulation (e.g. TFF in the parity tests) can replay the
    exact same negatives and block order the device used.
    """

    positives: np.ndarray
    recon: Blocks                 # recon_steps blocks, cycling over one negative sample
    epochs: list[Blocks] = field(default_factory=list)  # one fresh sample per epoch


class Trainer:
    """Runs an exported artifact's graphs with onnxruntime."""

    manifest: Manifest

    def __init__(self, artifact_dir: str | os.PathLike[str], *, verify: bool = True, threads: int = 1) -> None:
        self.directory = os.fspath(artifact_dir)
        self.manifest = load_artifact_manifest(self.directory, verify=verify)
        if self.manifest.family not in ("propensity", "recommender"):
            raise ManifestError(f"unknown model family {self.manifest.family!r}; this trainer runs propensity and recommender")
        needed = ("train_epoch", "infer") + (("recon_epoch",) if self.manifest.family == "recommender" else ())
        missing = [g for g in needed if g not in self.manifest.graphs]
        if missing:
            raise ManifestError(f"artifact lacks graph(s) {missing}; re-export it with `fedmark export`")
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads
        self._sessions: dict[str, ort.InferenceSession] = {}
        self.hyperparams: dict[str, Any] = dict(self.manifest.hyperparams)

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

    def _run(self, role: str, feeds: Mapping[str, Any]) -> list[np.ndarray]:
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
        """Fresh device-only params: N(0, init_scale²) user vector; {} for propensity."""
        scale = float(self.hyperparams.get("init_scale", 0.1))
        rng = np.random.default_rng(seed)
        return {p.name: (rng.standard_normal(p.shape) * scale).astype(np.float32) for p in self.manifest.local_params}

    def _check_params(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
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

    def _check_local(self, local: Mapping[str, np.ndarray] | None, seed: int) -> dict[str, np.ndarray]:
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

        ``shuffle=False`` keeps the data order (simulations that must replay
        the same batches elsewhere); devices should leave it on.
        """
        epochs = int(self.hyperparams.get("epochs", 1) if epochs is None else epochs)
        lr = float(self.hyperparams.get("learning_rate", 0.1) if lr is None else lr)
        if epochs < 1:
            raise TrainerError(f"epochs must be >= 1, got {epochs}")
        if not (math.isfinite(lr) and lr > 0):
            raise TrainerError(f"learning rate must be a positive number, got {lr}")
        params = self._check_params(params)
        if self.manifest.family == "propensity":
            return self._train_propensity(params, data, epochs, lr, seed, shuffle)
        return self._train_recommender(params, data, self._check_local(local, seed), epochs, lr, seed)

    def _names(self) -> list[str]:
        return [p.name for p in self.manifest.params]

    def check_tabular(self, x: Any, y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate (x, y) for the propensity graphs; returns float32 copies."""
        width = int(self.manifest.features.get("width", self.manifest.params[0].shape[0]))
        xa = np.asarray(x, dtype=np.float32)
        if xa.ndim != 2 or xa.shape[1] != width:
            raise TrainerError(f"x has shape {xa.shape}, expected [N, {width}]: encode records with "
                               "manifest.schema().encode(records)")
        if not np.all(np.isfinite(xa)):
            raise TrainerError("x contains NaN or Inf; the schema encoder fills missing values, use it")
        if y is None:
            return xa, None
        ya = np.asarray(y, dtype=np.float32).reshape(-1)
        if ya.shape[0] != xa.shape[0]:
            raise TrainerError(f"x has {xa.shape[0]} rows but y has {ya.shape[0]} labels")
        if np.any((ya < 0) | (ya > 1)) or not np.all(np.isfinite(ya)):
            raise TrainerError("labels y must be 0/1 (or probabilities in [0, 1])")
        return xa, ya

    def batches(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack rows in ``order`` into [num_batches, B, ...] with a 0/1 mask padding the last batch."""
        b = self.manifest.batch_size
        n = order.size
        nb = max(1, -(-n // b))
        xs = np.zeros((nb * b, x.shape[1]), np.float32)
        ys = np.zeros(nb * b, np.float32)
        ms = np.zeros(nb * b, np.float32)
        xs[:n], ys[:n], ms[:n] = x[order], y[order], 1.0
        return xs.reshape(nb, b, -1), ys.reshape(nb, b), ms.reshape(nb, b)

    def _train_propensity(self, params: list[np.ndarray], data: Any, epochs: int, lr: float, seed: int,
                          shuffle: bool) -> TrainResult:
        try:
            x, y = data
        except (TypeError, ValueError) as exc:
            raise TrainerError("propensity data must be a pair (x [N, width], y [N])") from exc
        x, y = self.check_tabular(x, y)
        if x.shape[0] == 0:
            raise TrainerError("no training rows: a device needs at least one consented record")
        rng = np.random.default_rng(seed)
        names = self._names()
        loss = float("nan")
        for _ in range(epochs):
            order = rng.permutation(x.shape[0]) if shuffle else np.arange(x.shape[0])
            xs, ys, ms = self.batches(x, y, order)
            feeds = dict(zip(names, params))
            feeds.update(x=xs, y=ys, mask=ms, lr=np.array(lr, np.float32))
            out = self._run("train_epoch", feeds)
            params = [np.asarray(o, np.float32) for o in out[:len(names)]]
            losses = out[len(names)]
            counts = ms.sum(axis=1)
            loss = float((losses * counts).sum() / counts.sum())
        return TrainResult(params=params, local={}, loss=loss, num_examples=int(x.shape[0]))

    # ------------------------------------------------------------------ recommender
    def _positives(self, data: Any) -> np.ndarray:
        n_items = self.manifest.params[0].shape[0]
        try:
            raw = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise TrainerError("recommender data must be a 1-D array of item indices") from exc
        if raw.ndim != 1 or raw.size == 0:
            raise TrainerError("recommender data must be a non-empty 1-D array of positive item indices")
        if not np.issubdtype(raw.dtype, np.integer):
            raise TrainerError(f"item indices must be integers, got dtype {raw.dtype}; map item codes with "
                               "manifest.features['items'].index(code)")
        pos = raw.astype(np.int64)
        if pos.min() < 0 or pos.max() >= n_items:
            raise TrainerError(f"item indices must be in [0, {n_items}); got range [{pos.min()}, {pos.max()}]")
        _, first = np.unique(pos, return_index=True)
        return pos[np.sort(first)]  # distinct, in first-seen order

    def _sample_blocks(self, positives: np.ndarray, rng: np.random.Generator) -> Blocks:
        n_items = self.manifest.params[0].shape[0]
        k = self.manifest.batch_size
        negatives = int(self.hyperparams.get("negatives", 4))
        pool = np.setdiff1d(np.arange(n_items, dtype=np.int64), positives, assume_unique=True)
        n_neg = min(negatives * positives.size, pool.size)
        neg = rng.choice(pool, size=n_neg, replace=False) if n_neg else np.zeros(0, np.int64)
        idx = np.concatenate([positives, neg])
        lab = np.concatenate([np.ones(positives.size, np.float32), np.zeros(n_neg, np.float32)])
        perm = rng.permutation(idx.size)
        idx, lab = idx[perm], lab[perm]
        nb = -(-idx.size // k)
        pad = nb * k - idx.size
        mask = np.concatenate([np.ones(idx.size, np.float32), np.zeros(pad, np.float32)])
        idx = np.concatenate([idx, np.zeros(pad, np.int64)])
        lab = np.concatenate([lab, np.zeros(pad, np.float32)])
        return Blocks(idx.reshape(nb, k), lab.reshape(nb, k), mask.reshape(nb, k))

    def recommender_plan(self, data: Any, *, epochs: int | None = None, seed: int = 0) -> RecommenderPlan:
        """Draw the negatives and block order that ``train(…, seed=seed)`` will use."""
        epochs = int(self.hyperparams.get("epochs", 1) if epochs is None else epochs)
        pos = self._positives(data)
        rng = np.random.default_rng(seed)
        steps = int(self.hyperparams.get("recon_steps", 20))
        sample = self._sample_blocks(pos, rng)
        cyc = np.arange(steps) % sample.idx.shape[0]
        recon = Blocks(sample.idx[cyc], sample.labels[cyc], sample.mask[cyc])
        return RecommenderPlan(positives=pos, recon=recon, epochs=[self._sample_blocks(pos, rng) for _ in range(epochs)])

    def _reconstruct(self, params: list[np.ndarray], blocks: Blocks, user: np.ndarray) -> tuple[np.ndarray, float]:
        item_emb, item_bias = params
        if blocks.idx.shape[0] == 0:
            return user, float("nan")
        out = self._run("recon_epoch", {
            "user_emb": user, "rows": item_emb[blocks.idx], "row_bias": item_bias[blocks.idx],
            "labels": blocks.labels, "mask": blocks.mask,
            "lr": np.array(float(self.hyperparams.get("recon_lr", 1.0)), np.float32)})
        return np.asarray(out[0], np.float32), float(out[1][-1])

    def reconstruct(self, params: Sequence[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
        """Fit the private user vector to ``data`` with the items frozen (no item update)."""
        self._require("recommender")
        params = self._check_params(params)
        plan = self.recommender_plan(data, epochs=0, seed=seed)
        user, _ = self._reconstruct(params, plan.recon, self._check_local(local, seed)["user_emb"])
        return {"user_emb": user}

    def _train_recommender(self, params: list[np.ndarray], data: Any, local: dict[str, np.ndarray], epochs: int,
                           lr: float, seed: int) -> TrainResult:
        plan = self.recommender_plan(data, epochs=epochs, seed=seed)
        item_emb, item_bias = (p.copy() for p in params)
        user, _ = self._reconstruct([item_emb, item_bias], plan.recon, local["user_emb"])
        loss = float("nan")
        for blocks in plan.epochs:
            out = self._run("train_epoch", {
                "user_emb": user, "rows": item_emb[blocks.idx], "row_bias": item_bias[blocks.idx],
                "labels": blocks.labels, "mask": blocks.mask, "lr": np.array(lr, np.float32)})
            rows_new, bias_new, losses = out
            real = blocks.mask > 0  # padded slots point at item 0: never write them back
            item_emb[blocks.idx[real]] = rows_new[real]
            item_bias[blocks.idx[real]] = bias_new[real]
            counts = blocks.mask.sum(axis=1)
            loss = float((losses * counts).sum() / counts.sum())
        return TrainResult(params=[item_emb, item_bias], local={"user_emb": user}, loss=loss,
                           num_examples=int(plan.positives.size))

    # ------------------------------------------------------------------ inference
    def _require(self, family: str) -> None:
        if self.manifest.family != family:
            raise TrainerError(f"this operation needs a {family} artifact, this one is {self.manifest.family}")

    def predict(self, params: Sequence[np.ndarray], data: Any = None, *,
                local: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Propensity: probabilities [N] for x.  Recommender: a logit score for every item [n_items].

        For the recommender pass ``local`` (the user vector from training); if
        it is missing but ``data`` (the user's positives) is given, the user
        vector is reconstructed first.
        """
        params = self._check_params(params)
        if self.manifest.family == "propensity":
            if data is None:
                raise TrainerError("propensity predict needs x [N, width]")
            x, _ = self.check_tabular(data)
            feeds = dict(zip(self._names(), params))
            feeds["x"] = x
            return np.asarray(self._run("infer", feeds)[0], np.float32)
        if local is None:
            if data is None:
                raise TrainerError("recommender predict needs local={'user_emb': …} (from train) or the user's "
                                   "positive items as data to reconstruct it")
            local = self.reconstruct(params, data)
        user = self._check_local(local, 0)["user_emb"]
        out = self._run("infer", {"user_emb": user, "item_emb": params[0], "item_bias": params[1]})
        return np.asarray(out[0], np.float32)
