"""from_config builds the pipeline the training config of docs/API.md describes, and refuses bad configs."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from server.aggregation import (AdaptiveClip, ConfigError, CoordinateMedian, FixedClip, ServerAdam, ServerSGD,
                                TrimmedMean, WeightedMean, dp_fedavg, from_config, plain_fedavg)

# The example body of PUT /v1/models/{name}/training in docs/API.md.
API_EXAMPLE = {"mode": "sync", "goal": 10, "min_clients": 5, "over_select": 1.3, "deadline_s": 300,
               "buffer_size": 10, "max_staleness": 5,
               "clip": {"norm": 1.0, "adaptive": True, "target_quantile": 0.5, "lr": 0.2},
               "noise_multiplier": 1.0, "server_optimizer": {"name": "fedavg", "lr": 1.0}, "robust": None,
               "max_examples_weight": 1000, "hyperparams": {}, "eligibility": {}, "local_noise": 0.0,
               "delta": 1e-5, "epsilon_budget": 10.0, "sampling_rate": 0.01}


def cfg(**changes):
    c = copy.deepcopy(API_EXAMPLE)
    c.update(changes)
    return c


def test_api_example_is_rejected_with_a_fix_because_goal_10_cannot_carry_z_1_adaptively():
    # sigma_b defaults to 0.05 x 10 = 0.5, and adaptive clipping needs sigma_b > z/2 = 0.5.
    with pytest.raises(ConfigError, match="sigma_b"):
        from_config(API_EXAMPLE)
    pipe = from_config(cfg(clip={"norm": 1.0, "adaptive": True, "count_stddev": 2.0}))
    assert pipe.aggregator.noise.bit_stddev == 2.0


def test_dp_config_builds_uniform_dp_mean_with_budget():
    pipe = from_config(cfg(goal=100))
    a = pipe.aggregator
    assert isinstance(a.clip, AdaptiveClip) and a.clip.target_quantile == 0.5 and a.clip.learning_rate == 0.2
    assert a.noise.noise_multiplier == 1.0 and a.noise.expected_clients == 100 and a.noise.sampling_rate == 0.01
    assert a.combiner == WeightedMean(uniform=True)
    assert (a.budget.epsilon, a.budget.delta) == (10.0, 1e-5)
    assert pipe.optimizer == ServerSGD(1.0)
    assert pipe.clip_norm(pipe.initialize(np.zeros(3, np.float32))) == 1.0
    # async mode: the denominator is the buffer size; an explicit override wins
    assert from_config(cfg(mode="async", buffer_size=200)).aggregator.noise.expected_clients == 200
    assert from_config(cfg(goal=100), clients_per_round=150).aggregator.noise.expected_clients == 150


def test_non_dp_configs():
    plain = from_config(cfg(noise_multiplier=0, clip=None))
    assert plain.aggregator.noise is None and plain.aggregator.clip is None
    assert plain.aggregator.combiner == WeightedMean(1000.0)
    fixed = from_config(cfg(noise_multiplier=0.0, clip={"norm": 2.5}))
    assert fixed.aggregator.clip == FixedClip(2.5) and fixed.aggregator.budget is None
    adam = from_config(cfg(noise_multiplier=0, server_optimizer={"name": "fedadam", "lr": 0.01, "tau": 1e-2}))
    assert adam.optimizer == ServerAdam(0.01, 0.9, 0.99, 1e-2)
    med = from_config(cfg(noise_multiplier=0, robust={"method": "median"}))
    assert med.aggregator.combiner == CoordinateMedian(10)
    tm = from_config(cfg(noise_multiplier=0, clip=None, robust={"method": "trimmed_mean", "capacity": 20,
                                                                 "trim_fraction": 0.2}))
    assert tm.aggregator.combiner == TrimmedMean(20, 0.2)
    nb = from_config(cfg(noise_multiplier=0, clip=None, robust={"method": "norm_bound", "max_norm": 3.0}))
    assert nb.aggregator.clip == FixedClip(3.0)


@pytest.mark.parametrize("changes, match", [
    (dict(clip={"norm": 1.0, "adaptve": True}), r"unknown key\(s\) \['adaptve'\]"),
    (dict(clip={"adaptive": True}), "clip.norm' is required"),
    (dict(clip=None, goal=100), "needs clipping"),
    (dict(noise_multiplier="high"), "finite number"),
    (dict(robust={"method": "median"}, goal=100), "robust aggregation cannot be combined with DP"),
    (dict(noise_multiplier=0, robust={"method": "median", "capacity": 5}), "below the round size"),
    (dict(noise_multiplier=0, robust={"method": "krum"}), "robust.method"),
    (dict(noise_multiplier=0, robust={"method": "norm_bound"}), "max_norm"),
    (dict(noise_multiplier=0, robust={"method": "norm_bound", "max_norm": 1.0}), "duplicates 'clip'"),
    (dict(server_optimizer={"name": "lamb"}), "fedavg' or 'fedadam'"),
    (dict(server_optimizer={"name": "fedavg", "lr": -1}, noise_multiplier=0), "lr must be > 0"),
    (dict(goal=None, mode="sync"), "expected clients per round"),
    (dict(goal=100, sampling_rate=2.0), "sampling_rate"),
    (dict(goal=100, epsilon_budget=-1), "epsilon_budget"),
    (dict(noise_multiplier=0, max_examples_weight=0), "max_examples_weight"),
    (dict(noise_multiplier=0, clip={"norm": 1.0, "adaptive": True, "target_quantile": 2}), "target_quantile"),
])
def test_bad_configs_say_what_is_wrong(changes, match):
    with pytest.raises(ConfigError, match=match):
        from_config(cfg(**changes))


def test_recipes_match_their_description():
    dp = dp_fedavg(1.0, 100, clip=0.3, adaptive=False, epsilon_budget=5.0)
    assert dp.aggregator.clip == FixedClip(0.3) and dp.aggregator.noise.value_multiplier(False) == 1.0
    assert plain_fedavg(max_examples_weight=50).aggregator.combiner.max_weight == 50
