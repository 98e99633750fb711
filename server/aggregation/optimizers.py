"""Server optimizers with explicit, serialisable state.

Why server optimizers: the aggregate of client deltas is a pseudo-gradient; a
server learning rate and momentum (FedAvgM) or an adaptive method (FedAdam,
Reddi et al. 2021, "Adaptive Federated Optimization") make federated training
converge in fewer rounds and cope with noisy DP aggregates.

Convention: ``delta`` is the aggregated client update (new - old weights), i.e.
a step *downhill*, so updates add it: plain FedAvg with lr = 1 sets the model to
the average of the client models.

Interface: ``initialize(params) -> OptimizerState`` and
``next(state, params, delta) -> (OptimizerState, new_params)``; vectors are
float32 and the state holds its moment vectors as float32 (stored as raw bytes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from . import codec
from .errors import ConfigError, StateError


@dataclass(frozen=True)
class OptimizerState:
    """Step counter plus named moment vectors (``m`` for momentum, ``m``/``v`` for Adam)."""

    step: int = 0
    slots: dict[str, np.ndarray] = field(default_factory=dict)

    def tree(self) -> dict[str, Any]:
        return {"step": self.step, "slots": dict(self.slots)}

    @staticmethod
    def from_tree(t: Any) -> "OptimizerState":
        try:
            slots = {str(k): np.asarray(v, dtype=np.float32) for k, v in t["slots"].items()}
            return OptimizerState(int(t["step"]), slots)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StateError(f"bad optimizer state: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return codec.to_jsonable(self.tree())

    @staticmethod
    def from_json(d: Any) -> "OptimizerState":
        return OptimizerState.from_tree(codec.from_jsonable(d))

    def to_bytes(self) -> bytes:
        return codec.pack(self.tree())

    @staticmethod
    def from_bytes(b: bytes) -> "OptimizerState":
        return OptimizerState.from_tree(codec.unpack(b))


def _check_vectors(params: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(params, dtype=np.float32).reshape(-1)
    d = np.asarray(delta, dtype=np.float32).reshape(-1)
    if p.shape != d.shape:
        raise ConfigError(f"params have {p.size} entries but the aggregate delta has {d.size}")
    if not np.isfinite(d).all():
        raise ConfigError("aggregate delta contains NaN or Inf; refusing to apply it")
    return p, d


def _slot(state: OptimizerState, name: str, size: int) -> np.ndarray:
    v = state.slots.get(name)
    if v is None or v.size != size:
        raise StateError(f"optimizer state has no slot {name!r} of length {size}: was it initialised for these params?")
    return v


@dataclass(frozen=True)
class ServerSGD:
    """FedAvg server step: x <- x + lr * m with heavy-ball momentum m <- momentum * m + delta.

    momentum = 0 is plain FedAvg with a server learning rate (no slot stored).
    """

    lr: float = 1.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"server_optimizer.lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"server_optimizer.momentum must be in [0, 1), got {self.momentum}")

    def initialize(self, params: np.ndarray) -> OptimizerState:
        n = np.asarray(params).size
        return OptimizerState(0, {"m": np.zeros(n, np.float32)} if self.momentum else {})

    def next(self, state: OptimizerState, params: np.ndarray, delta: np.ndarray) -> tuple[OptimizerState, np.ndarray]:
        p, d = _check_vectors(params, delta)
        if self.momentum:
            m = (self.momentum * _slot(state, "m", p.size) + d).astype(np.float32)
            return OptimizerState(state.step + 1, {"m": m}), (p + np.float32(self.lr) * m).astype(np.float32)
        return OptimizerState(state.step + 1, {}), (p + np.float32(self.lr) * d).astype(np.float32)


@dataclass(frozen=True)
class ServerAdam:
    """FedAdam (Reddi et al. 2021, Algorithm 2, no bias correction).

    m <- b1 m + (1 - b1) delta;  v <- b2 v + (1 - b2) delta^2;
    x <- x + lr * m / (sqrt(v) + tau).   tau (the paper's adaptivity, 1e-3 by
    default) keeps steps bounded while v is still near 0.
    """

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"server_optimizer.lr must be > 0, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"server_optimizer.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.tau > 0:
            raise ConfigError(f"server_optimizer.tau must be > 0, got {self.tau}")

    def initialize(self, params: np.ndarray) -> OptimizerState:
        n = np.asarray(params).size
        return OptimizerState(0, {"m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32)})

    def next(self, state: OptimizerState, params: np.ndarray, delta: np.ndarray) -> tuple[OptimizerState, np.ndarray]:
        p, d = _check_vectors(params, delta)
        m = (self.beta1 * _slot(state, "m", p.size) + (1 - self.beta1) * d).astype(np.float32)
        v = (self.beta2 * _slot(state, "v", p.size) + (1 - self.beta2) * np.square(d)).astype(np.float32)
        step = (self.lr * m / (np.sqrt(v) + self.tau)).astype(np.float32)
        return OptimizerState(state.step + 1, {"m": m, "v": v}), (p + step).astype(np.float32)


ServerOptimizer = Union[ServerSGD, ServerAdam]
