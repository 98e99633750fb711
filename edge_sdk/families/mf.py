"""Protocol ``mf-reconstruction/1``: matrix factorisation with a device-only user vector.

Data is one customer's positive item indices.  Following Federated
Reconstruction (Singhal et al. 2021), the device samples negatives (uniform
over items the customer has not bought), first *reconstructs* its private user
vector with the items frozen (``recon_epoch``), then trains only the item rows
it touched (``train_epoch`` on gathered blocks of K rows, scattered back), so
a step never rewrites the whole item table.  The user vector and the purchase
history stay on the device (``PersonalStore``); only item deltas are uploaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk.families.base import TrainerError, TrainingProtocol, TrainResult, register
from fedmark.contract import PROTOCOL_MF

__all__ = ["Blocks", "RecommenderPlan", "MFReconstruction"]


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


@register
class MFReconstruction(TrainingProtocol):
    """Item table global, user vector local."""

    name = PROTOCOL_MF
    graphs = ("train_epoch", "recon_epoch", "infer")
    verbs = frozenset({"recommend"})
    needs_personal_state = True

    @property
    def hyperparams(self) -> Mapping[str, Any]:
        return self.trainer.hyperparams

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
        out = self.trainer.run("recon_epoch", {
            "user_emb": user, "rows": item_emb[blocks.idx], "row_bias": item_bias[blocks.idx],
            "labels": blocks.labels, "mask": blocks.mask,
            "lr": np.array(float(self.hyperparams.get("recon_lr", 1.0)), np.float32)})
        return np.asarray(out[0], np.float32), float(out[1][-1])

    def reconstruct(self, params: Sequence[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
        """Fit the private user vector to ``data`` with the items frozen (no item update)."""
        params = self.trainer.check_params(params)
        plan = self.recommender_plan(data, epochs=0, seed=seed)
        user, _ = self._reconstruct(params, plan.recon, self.trainer.check_local(local, seed)["user_emb"])
        return {"user_emb": user}

    def train(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None, epochs: int,
              lr: float, seed: int, shuffle: bool) -> TrainResult:
        start = self.trainer.check_local(local, seed)
        plan = self.recommender_plan(data, epochs=epochs, seed=seed)
        item_emb, item_bias = (p.copy() for p in params)
        user, _ = self._reconstruct([item_emb, item_bias], plan.recon, start["user_emb"])
        loss = float("nan")
        for blocks in plan.epochs:
            out = self.trainer.run("train_epoch", {
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

    def predict(self, params: list[np.ndarray], data: Any, *, local: Mapping[str, np.ndarray] | None) -> np.ndarray:
        """A logit score for every item [n_items]; ``local`` from training, or ``data`` to reconstruct it."""
        if local is None:
            if data is None:
                raise TrainerError("recommender predict needs local={'user_emb': …} (from train) or the user's "
                                   "positive items as data to reconstruct it")
            local = self.reconstruct(params, data)
        user = self.trainer.check_local(local, 0)["user_emb"]
        out = self.trainer.run("infer", {"user_emb": user, "item_emb": params[0], "item_bias": params[1]})
        return np.asarray(out[0], np.float32)

    # ---------------------------------------------------------------- device side
    def item_codes(self, items: np.ndarray) -> list[str]:
        return [str(self.manifest.features["items"][i]) for i in items]

    def training_input(self, rows: Sequence[Any], *, purposes: Sequence[str] | None, strict: bool,
                       consent_field: str) -> tuple[Any, Any]:
        from edge_sdk import data as data_mod
        from edge_sdk.errors import SchemaError

        items, report = data_mod.prepare_interactions(rows, self.manifest, strict=strict, consent_field=consent_field,
                                                      purposes=purposes)
        if items.size == 0:
            raise SchemaError("none of the consented records names an item this model knows; nothing to train")
        return items, report

    def after_training(self, store: Any, model: str, train_data: Any, result: TrainResult,
                       history: list[str]) -> None:
        store.save(model, result.local, history + self.item_codes(train_data))

    def evaluate(self, store: Any, model: str, rows: Sequence[Any], *, k: int, consent_field: str,
                 purposes: Sequence[str] | None) -> Any:
        from edge_sdk import data as data_mod
        from edge_sdk.errors import ConfigurationError
        from edge_sdk.metrics import recommender_metrics
        from edge_sdk.reports import EvalReport
        from edge_sdk.runtime import converted

        held, report = data_mod.prepare_interactions(rows, self.manifest, consent_field=consent_field,
                                                     purposes=purposes)
        local, history = store.load(model, self.manifest.local_params)
        if not local:
            raise ConfigurationError(f"no personal state for {model!r}: personalise before evaluating")
        items = [str(c) for c in self.manifest.features["items"]]
        held_set, bought = set(held.tolist()), set(history)
        known = np.array([i for i, c in enumerate(items) if c in bought and i not in held_set], np.int64)
        with converted("evaluation"):
            scores = np.asarray(self.trainer.predict(self.trainer.initial_params(), local=local)).ravel()
        return EvalReport(model, self.manifest.version, recommender_metrics(scores, held, k, known), report)
