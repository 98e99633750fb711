"""The training configuration an admin sets per model (``PUT /v1/models/{name}/training``).

Why validate everything up front: a typo in a key or an impossible value
(``min_clients`` above ``goal``) would otherwise surface rounds later as a
stuck or privacy-violating round.  Unknown keys are refused by name.
"""
from __future__ import annotations

import json
from functools import lru_cache

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from fedmark.contract import ENCODINGS
from server.errors import ApiError



def _bad(key: str, why: str) -> ApiError:
    return ApiError(400, "bad_training_config", f"training config: {key} {why}")


def _num(d: Mapping[str, Any], key: str, default: float, lo: float | None = None, hi: float | None = None,
         *, lo_open: bool = False, integer: bool = False) -> Any:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(key, f"must be a finite number, got {v!r}")
    if integer and int(v) != v:
        raise _bad(key, f"must be an integer, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _bad(key, f"must be {'>' if lo_open else '>='} {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise _bad(key, f"must be <= {hi}, got {v!r}")
    return int(v) if integer else float(v)


#: Largest ``hyperparams`` / ``eligibility`` section (JSON bytes): each task carries both to its device.
MAX_SECTION_BYTES = 16 * 1024


@dataclass(frozen=True)
class TrainingConfig:
    mode: str = "sync"
    goal: int = 10
    min_clients: int = 5
    over_select: float = 1.3
    deadline_s: float = 300.0
    buffer_size: int = 10
    max_staleness: int = 5
    staleness_power: float = 0.5
    clip: Mapping[str, Any] | None = field(default_factory=lambda: {"norm": 1.0, "adaptive": False})
    noise_multiplier: float = 0.0
    server_optimizer: Mapping[str, Any] = field(default_factory=lambda: {"name": "fedavg", "lr": 1.0})
    robust: Mapping[str, Any] | None = None
    max_examples_weight: float = 1000.0
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    eligibility: Mapping[str, Any] = field(default_factory=lambda: {
        "require_charging": False, "require_unmetered": False, "require_idle": False, "min_battery": 0.0})
    local_noise: float = 0.0
    delta: float = 1e-5
    epsilon_budget: float | None = None
    sampling_rate: float = 1.0
    encoding: str = "f32"

    @property
    def task_cap(self) -> int:
        """Sync over-selection: tasks handed out per round (goal x over_select, rounded up)."""
        return max(self.goal, math.ceil(self.goal * self.over_select - 1e-9))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["clip"] = dict(self.clip) if self.clip is not None else None
        d["server_optimizer"] = dict(self.server_optimizer)
        d["hyperparams"] = dict(self.hyperparams)
        d["eligibility"] = dict(self.eligibility)
        d["robust"] = dict(self.robust) if self.robust is not None else None
        return d

    @staticmethod
    def from_json(d: Any) -> "TrainingConfig":
        if not isinstance(d, Mapping):
            raise _bad("body", "must be a JSON object")
        known = set(TrainingConfig.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise _bad(", ".join(unknown), f"unknown key(s); known keys: {', '.join(sorted(known))}")
        mode = d.get("mode", "sync")
        if mode not in ("sync", "async"):
            raise _bad("mode", f"must be 'sync' or 'async', got {mode!r}")
        goal = _num(d, "goal", 10, 1, integer=True)
        min_clients = _num(d, "min_clients", min(5, goal), 1, goal, integer=True)
        clip = d.get("clip", {"norm": 1.0, "adaptive": False})
        if clip is not None and not isinstance(clip, Mapping):
            raise _bad("clip", "must be null or an object such as {\"norm\": 1.0, \"adaptive\": true}")
        opt = d.get("server_optimizer", {"name": "fedavg", "lr": 1.0})
        if not isinstance(opt, Mapping):
            raise _bad("server_optimizer", "must be an object such as {\"name\": \"fedavg\", \"lr\": 1.0}")
        robust = d.get("robust")
        if robust is not None and not isinstance(robust, Mapping):
            raise _bad("robust", "must be null or an object such as {\"method\": \"trimmed_mean\", \"trim_fraction\": 0.1}")
        for key in ("hyperparams", "eligibility"):
            if key in d and not isinstance(d[key], Mapping):
                raise _bad(key, "must be an object")
            if key in d and len(json.dumps(d[key])) > MAX_SECTION_BYTES:
                raise _bad(key, f"is larger than {MAX_SECTION_BYTES} bytes as JSON; every task carries it to every "
                                "device, so keep it to the few settings the trainer reads")
        encoding = d.get("encoding", "f32")
        if encoding not in ENCODINGS:
            raise _bad("encoding", f"must be one of {', '.join(sorted(ENCODINGS))}, got {encoding!r}")
        budget = d.get("epsilon_budget")
        base = TrainingConfig()
        eligibility = dict(base.eligibility)
        eligibility.update(d.get("eligibility", {}))
        cfg = TrainingConfig(
            mode=mode, goal=goal, min_clients=min_clients,
            over_select=_num(d, "over_select", 1.3, 1.0),
            deadline_s=_num(d, "deadline_s", 300.0, 0, lo_open=True),
            buffer_size=_num(d, "buffer_size", 10, 1, integer=True),
            max_staleness=_num(d, "max_staleness", 5, 0, integer=True),
            staleness_power=_num(d, "staleness_power", 0.5, 0),
            clip=dict(clip) if clip is not None else None, noise_multiplier=_num(d, "noise_multiplier", 0.0, 0),
            server_optimizer=dict(opt), robust=dict(robust) if robust is not None else None,
            max_examples_weight=_num(d, "max_examples_weight", 1000.0, 0, lo_open=True),
            hyperparams=dict(d.get("hyperparams", {})), eligibility=eligibility,
            local_noise=_num(d, "local_noise", 0.0, 0),
            delta=_num(d, "delta", 1e-5, 0, 1, lo_open=True),
            epsilon_budget=None if budget is None else _num(d, "epsilon_budget", 0, 0, lo_open=True),
            sampling_rate=_num(d, "sampling_rate", 1.0, 0, 1, lo_open=True),
            encoding=encoding,
        )
        if cfg.epsilon_budget is not None and cfg.noise_multiplier == 0:
            raise _bad("epsilon_budget", "needs DP noise: set noise_multiplier > 0 (without noise epsilon is infinite)")
        cfg.pipeline()  # the aggregation keys are validated by the aggregation package itself
        return cfg

    def pipeline(self) -> Any:
        """The aggregation pipeline (``server.aggregation.Pipeline``) for this configuration."""
        from server.aggregation import ConfigError, from_config

        try:
            return from_config(self.to_json())
        except ConfigError as exc:
            raise ApiError(400, "bad_training_config", str(exc)) from exc


@lru_cache(maxsize=256)
def config_of(text: str) -> TrainingConfig:
    """The configuration stored as JSON ``text`` (a round's or a model's), parsed once per distinct text.

    Why cached: every upload, task and tick of a round reads the same stored
    document; parsing and validating it (which builds a pipeline) on each call
    cost more than the rest of the request's Python work.  The result is
    immutable, so sharing it between requests is safe.
    """
    return TrainingConfig.from_json(json.loads(text))


@lru_cache(maxsize=256)
def pipeline_of(text: str) -> Any:
    """The aggregation pipeline of the configuration ``text`` (stateless: its state is persisted apart)."""
    return config_of(text).pipeline()
