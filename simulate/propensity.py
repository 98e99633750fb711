"""The propensity workload: tabular records on devices, AUC on a held-out split.

Why the baselines train with the artifact itself: "centralized" must mean the
same architecture, the same batch size and the same optimizer step as the
devices run, only on pooled data; running the artifact's own ``train_epoch``
graph on the pooled rows guarantees that (no second implementation in Keras
that could drift).  Local-only is each device alone, scored on the same split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_sdk.data import prepare_tabular
from edge_sdk.trainer import Trainer
from fedmark.metrics import binary_report, roc_auc
from simulate.stats import bootstrap_auc

__all__ = ["PropensityWorkload"]

Record = Mapping[str, Any]


@dataclass
class PropensityWorkload:
    """Devices' encoded (x, y) and the held-out split, encoded as a device encodes (``edge_sdk.data``)."""

    trainer: Trainer
    data: list[tuple[np.ndarray, np.ndarray]]
    x_test: np.ndarray
    y_test: np.ndarray
    primary = "auc"

    @staticmethod
    def build(trainer: Trainer, parts: Sequence[Sequence[Record]], test: Sequence[Record]) -> "PropensityWorkload":
        data = []
        for part in parts:
            x, y, _, _ = prepare_tabular(part, trainer.manifest, with_label=True)
            if x.shape[0]:  # a device whose records are all unconsented has nothing to train
                assert y is not None
                data.append((x, y))
        # Held-out rows are scored, not trained on: no consent filter (a device's scoring is not gated by it).
        x_t, y_t, errors = trainer.manifest.schema().encode(test, with_label=True, strict=False)
        if errors or y_t is None:
            raise ValueError(f"{len(errors)} held-out record(s) do not match the artifact's schema, e.g. {errors[:1]}")
        if not data:
            raise ValueError("no device holds a consented record: check the data's consent column")
        return PropensityWorkload(trainer, data, x_t, y_t)

    @property
    def sizes(self) -> list[int]:
        return [int(x.shape[0]) for x, _ in self.data]

    def scores(self, params: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.trainer.predict(list(params), self.x_test), np.float64).ravel()

    def evaluate(self, params: Sequence[np.ndarray]) -> dict[str, Any]:
        return {"auc": roc_auc(self.y_test, self.scores(params))}

    def report(self, params: Sequence[np.ndarray], seed: int = 0) -> dict[str, Any]:
        s = self.scores(params)
        rep = binary_report(self.y_test, s)
        auc, lo, hi = bootstrap_auc(self.y_test, s, seed=seed)
        rep.update(auc=auc, auc_ci=[lo, hi], test_rows=int(self.y_test.size))
        return rep

    def centralized(self, init: Sequence[np.ndarray], epochs: int, lr: float | None, seed: int,
                    progress: Callable[..., Any] | None = None) -> tuple[list[tuple[int, dict[str, Any]]], list[np.ndarray]]:
        """SGD on the pooled rows with the artifact's epoch graph; the curve per epoch and the last params."""
        x = np.concatenate([d[0] for d in self.data])
        y = np.concatenate([d[1] for d in self.data])
        params, curve = list(init), []
        it = range(1, epochs + 1)
        for e in (progress(it, desc="centralized", unit="epoch") if progress else it):
            params = self.trainer.train(params, (x, y), epochs=1, lr=lr, seed=seed + e).params
            curve.append((e, self.evaluate(params)))
        return curve, params

    def local_only(self, init: Sequence[np.ndarray], devices: int, epochs: int, lr: float | None,
                   seed: int) -> dict[str, Any]:
        """Mean held-out AUC of devices that each train alone (the 'why federate at all' baseline)."""
        pick = np.random.default_rng(seed).choice(len(self.data), min(devices, len(self.data)), replace=False)
        aucs = [self.evaluate(self.trainer.train(list(init), self.data[int(i)], epochs=epochs, lr=lr,
                                                 seed=seed + int(i)).params)["auc"] for i in pick]
        return {"auc": float(np.mean(aucs)), "auc_min": float(np.min(aucs)), "auc_max": float(np.max(aucs)),
                "devices": len(aucs), "epochs": epochs}

    def baseline(self) -> dict[str, Any]:
        """Random targeting: AUC 0.5 and lift 1 by construction; the positive rate is the base conversion."""
        return {"random_targeting": {"auc": 0.5, "lift_top_decile": 1.0,
                                     "positive_rate": float(self.y_test.mean())}}
