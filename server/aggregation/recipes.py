"""Named constructors for common pipelines, and ``from_config`` for the training config.

Why recipes apart from building blocks: most deployments want one of three
well-understood set-ups; naming them keeps the DP-relevant choices (uniform
weights, fixed denominator, noise split) in one reviewed place, while the
pieces stay available for anything else.

TFF counterparts (what the parity tests compare against):
- ``plain_fedavg``  ~ ``tff.aggregators.MeanFactory()``
- ``clipped_fedavg``~ ``tff.aggregators.clipping_factory(C | PrivateQuantileEstimationProcess.no_noise(...), MeanFactory())``
- ``dp_fedavg``     ~ ``tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive`` / ``gaussian_fixed``
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from .accounting import PrivacyBudget
from .aggregator import Aggregator
from .clipping import AdaptiveClip, FixedClip
from .errors import ConfigError
from .noise import GaussianNoise
from .optimizers import ServerAdam, ServerOptimizer, ServerSGD
from .process import Pipeline
from .robust import CoordinateMedian, TrimmedMean, WeightedMean


def plain_fedavg(max_examples_weight: float | None = None, server_lr: float = 1.0,
                 momentum: float = 0.0) -> Pipeline:
    """Example-weighted FedAvg, no clipping, no noise (weights capped at ``max_examples_weight``)."""
    return Pipeline(Aggregator(WeightedMean(max_examples_weight)), ServerSGD(server_lr, momentum))


def clipped_fedavg(clip: float = 1.0, *, adaptive: bool = False, target_quantile: float = 0.5,
                   clip_lr: float = 0.2, max_examples_weight: float | None = None,
                   server_optimizer: ServerOptimizer | None = None) -> Pipeline:
    """Weighted FedAvg of server-clipped updates (norm bounding), fixed or adaptive C, no noise."""
    est = AdaptiveClip(clip, target_quantile, clip_lr) if adaptive else FixedClip(clip)
    return Pipeline(Aggregator(WeightedMean(max_examples_weight), est), server_optimizer or ServerSGD())


def dp_fedavg(noise_multiplier: float, clients_per_round: float, *, clip: float = 0.1, adaptive: bool = True,
              target_quantile: float = 0.5, clip_lr: float = 0.2, bit_stddev: float | None = None,
              sampling_rate: float = 1.0, epsilon_budget: float | None = None, delta: float = 1e-5,
              server_optimizer: ServerOptimizer | None = None) -> Pipeline:
    """DP-FedAvg (McMahan et al. 2018) with Gaussian noise, as TFF's ``gaussian_adaptive`` / ``gaussian_fixed``.

    Uniform client weights, mean = noised sum / ``clients_per_round``; with
    ``adaptive`` the total multiplier z is split between the sum and the
    clipped-count (``bit_stddev`` defaults to 0.05 x clients_per_round).
    """
    est = AdaptiveClip(clip, target_quantile, clip_lr) if adaptive else FixedClip(clip)
    noise = GaussianNoise(noise_multiplier, float(clients_per_round), sampling_rate, bit_stddev)
    budget = PrivacyBudget(epsilon_budget, delta) if epsilon_budget is not None else None
    return Pipeline(Aggregator(WeightedMean(uniform=True), est, noise, budget), server_optimizer or ServerSGD())


def robust_fedavg(method: str = "median", *, capacity: int = 100, trim_fraction: float = 0.1,
                  norm_bound: float | None = None, server_optimizer: ServerOptimizer | None = None) -> Pipeline:
    """Poisoning-resistant aggregation: coordinate median or trimmed mean over a bounded buffer,
    optionally after norm bounding (server clipping to ``norm_bound``)."""
    if method == "median":
        comb: Any = CoordinateMedian(capacity)
    elif method == "trimmed_mean":
        comb = TrimmedMean(capacity, trim_fraction)
    else:
        raise ConfigError(f"robust.method must be 'median', 'trimmed_mean' or 'norm_bound', got {method!r}")
    est = FixedClip(norm_bound) if norm_bound is not None else None
    return Pipeline(Aggregator(comb, est), server_optimizer or ServerSGD())


# ---------------------------------------------------------------------------- from_config
_CLIP_KEYS = {"norm", "adaptive", "target_quantile", "lr", "count_stddev"}
_OPT_KEYS = {"name", "lr", "momentum", "beta1", "beta2", "tau"}
_ROBUST_KEYS = {"method", "capacity", "trim_fraction", "max_norm"}


def _section(cfg: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any] | None:
    sec = cfg.get(key)
    if sec is None:
        return None
    if not isinstance(sec, Mapping):
        raise ConfigError(f"training config '{key}' must be an object or null, got {type(sec).__name__}")
    unknown = set(sec) - allowed
    if unknown:
        raise ConfigError(f"training config '{key}' has unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return sec


def _num(sec: Mapping[str, Any], key: str, default: Any, where: str) -> Any:
    v = sec.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"training config '{where}.{key}' must be a finite number, got {v!r}")
    return float(v)


def _optimizer(cfg: Mapping[str, Any]) -> ServerOptimizer:
    sec = _section(cfg, "server_optimizer", _OPT_KEYS) or {}
    name = str(sec.get("name", "fedavg")).lower()
    if name in ("fedavg", "sgd", "fedavgm"):
        return ServerSGD(_num(sec, "lr", 1.0, "server_optimizer"), _num(sec, "momentum", 0.0, "server_optimizer"))
    if name in ("fedadam", "adam"):
        return ServerAdam(_num(sec, "lr", 0.01, "server_optimizer"), _num(sec, "beta1", 0.9, "server_optimizer"),
                          _num(sec, "beta2", 0.99, "server_optimizer"), _num(sec, "tau", 1e-3, "server_optimizer"))
    raise ConfigError(f"server_optimizer.name must be 'fedavg' or 'fedadam', got {sec.get('name')!r}")


def _clients_per_round(cfg: Mapping[str, Any], override: float | None) -> float | None:
    if override is not None:
        return float(override)
    key = "buffer_size" if cfg.get("mode") == "async" else "goal"
    v = cfg.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def from_config(config: Mapping[str, Any], *, clients_per_round: float | None = None) -> Pipeline:
    """Build the pipeline from the training config of docs/API.md (``PUT /v1/models/{name}/training``).

    Keys read (others are the round policy's and are ignored here):
    ``clip`` {norm, adaptive, target_quantile, lr, count_stddev} or null;
    ``noise_multiplier`` (0/absent = no DP); ``sampling_rate``; ``delta``;
    ``epsilon_budget`` (enforced only with noise_multiplier > 0); ``server_optimizer`` {name: fedavg|fedadam, lr, momentum,
    beta1, beta2, tau}; ``robust`` null or {method: median|trimmed_mean|norm_bound,
    capacity, trim_fraction, max_norm}; ``max_examples_weight``.
    With DP the expected clients per round (the mean's denominator) is
    ``clients_per_round`` if given, else ``buffer_size`` in async mode, else ``goal``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"training config must be a JSON object, got {type(config).__name__}")
    opt = _optimizer(config)
    clip_sec = _section(config, "clip", _CLIP_KEYS)
    robust = _section(config, "robust", _ROBUST_KEYS)
    z = _num(config, "noise_multiplier", 0.0, "config") or 0.0
    max_w = _num(config, "max_examples_weight", None, "config")

    est: Any = None
    count_stddev = None
    if clip_sec is not None:
        norm = _num(clip_sec, "norm", None, "clip")
        if norm is None:
            raise ConfigError("training config 'clip.norm' is required when 'clip' is set (the initial / fixed C)")
        count_stddev = _num(clip_sec, "count_stddev", None, "clip")
        if clip_sec.get("adaptive", False):
            est = AdaptiveClip(norm, _num(clip_sec, "target_quantile", 0.5, "clip"), _num(clip_sec, "lr", 0.2, "clip"))
        else:
            est = FixedClip(norm)

    comb: Any = WeightedMean(max_w)
    if robust is not None:
        method = robust.get("method")
        if z > 0:
            raise ConfigError("robust aggregation cannot be combined with DP noise (noise_multiplier > 0): "
                              "set robust to null or noise_multiplier to 0")
        default_cap = _clients_per_round(config, None) or 100
        capacity = int(_num(robust, "capacity", default_cap, "robust"))
        if capacity < default_cap:
            raise ConfigError(f"robust.capacity={capacity} is below the round size {default_cap:g}; "
                              f"the buffer must hold every update of a round")
        if method == "median":
            comb = CoordinateMedian(capacity)
        elif method == "trimmed_mean":
            comb = TrimmedMean(capacity, _num(robust, "trim_fraction", 0.1, "robust"))
        elif method == "norm_bound":
            bound = _num(robust, "max_norm", None, "robust")
            if bound is None:
                raise ConfigError("robust.method 'norm_bound' needs robust.max_norm")
            if est is not None:
                raise ConfigError("robust 'norm_bound' duplicates 'clip': set clip.norm instead, or clip to null")
            est = FixedClip(bound)
        else:
            raise ConfigError(f"robust.method must be 'median', 'trimmed_mean' or 'norm_bound', got {method!r}")

    if z == 0:
        return Pipeline(Aggregator(comb, est), opt)

    if est is None:
        raise ConfigError("noise_multiplier > 0 needs clipping: set clip.norm (noise is calibrated to the clip norm)")
    n = _clients_per_round(config, clients_per_round)
    if n is None:
        raise ConfigError("DP needs the expected clients per round: set 'goal' (sync) or 'buffer_size' (async)")
    q = _num(config, "sampling_rate", 1.0, "config")
    delta = _num(config, "delta", 1e-5, "config")
    eps = _num(config, "epsilon_budget", None, "config")
    noise = GaussianNoise(z, n, q, count_stddev)
    budget = PrivacyBudget(eps, delta) if eps is not None else None
    return Pipeline(Aggregator(WeightedMean(uniform=True), est, noise, budget), opt)
