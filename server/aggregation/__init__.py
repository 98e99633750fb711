"""Server-side aggregation: composable pieces with explicit, persistable state.

Pure numpy (+ dp-accounting for epsilon); no Flask, SQLAlchemy or TensorFlow.

Typical use by the round loop::

    from server import aggregation as agg

    pipe = agg.from_config(training_config)          # or agg.dp_fedavg(...), agg.plain_fedavg()
    state = agg.PipelineState.from_bytes(blob) if blob else pipe.initialize(params)
    pipe.check_budget(state)                         # raises PrivacyBudgetExceeded before opening a round
    clip_norm = pipe.clip_norm(state)                # goes into each task
    acc = pipe.start(state, num_params)              # O(params) memory for the mean
    info = acc.add(vec, weight=num_examples, within_clip=claim)   # per durable update -> Contribution
    blob = acc.to_bytes()                            # optional checkpoint (or re-add stored updates in id order)
    res = pipe.finish(state, acc, params, np.random.default_rng(round_seed))
    res.params, res.state.to_bytes(), res.metrics, res.public_metrics, res.state.epsilon(1e-5)

Pieces: ``WeightedMean`` / ``CoordinateMedian`` / ``TrimmedMean`` (combiners),
``FixedClip`` / ``AdaptiveClip`` (clip-norm estimators), ``GaussianNoise`` (DP),
``PrivacyBudget`` + ``PrivacyLedger`` (accounting), ``ServerSGD`` / ``ServerAdam``
(server optimizers), composed by ``Aggregator`` and ``Pipeline``; ``PartitionedAggregator``
wraps an ``Aggregator`` per disjoint cell (region x partner) with per-cell privacy ledgers.
"""
from __future__ import annotations

from .accounting import PrivacyBudget, PrivacyEvent, PrivacyLedger, check_budget, epsilon_for
from .accumulator import Accumulator, Contribution
from .aggregator import PUBLIC_METRICS, AggregateResult, Aggregator, AggregatorState, Release
from .cells import CellRelease, PartitionedAggregator
from .clipping import BOUNDARY_RTOL, AdaptiveClip, ClipState, FixedClip, clip_scale, l2_norm, unclipped_bit
from .errors import (AggregationError, BufferFull, ConfigError, EmptyRound, PrivacyBudgetExceeded, StateError,
                     UpdateRejected)
from .noise import GaussianNoise, default_bit_stddev, value_noise_multiplier
from .optimizers import OptimizerState, ServerAdam, ServerSGD
from .process import Pipeline, PipelineState, RoundResult, reset_optimizer
from .recipes import clipped_fedavg, dp_fedavg, from_config, plain_fedavg, robust_fedavg
from .robust import CoordinateMedian, TrimmedMean, WeightedMean

__all__ = [
    # composition and state
    "Pipeline", "PipelineState", "RoundResult", "Aggregator", "AggregatorState", "AggregateResult", "Release",
    "Accumulator", "Contribution", "PUBLIC_METRICS", "reset_optimizer",
    # per-cell (partitioned) aggregation
    "PartitionedAggregator", "CellRelease",
    # recipes
    "from_config", "plain_fedavg", "clipped_fedavg", "dp_fedavg", "robust_fedavg",
    # pieces
    "WeightedMean", "CoordinateMedian", "TrimmedMean", "FixedClip", "AdaptiveClip", "ClipState",
    "GaussianNoise", "ServerSGD", "ServerAdam", "OptimizerState",
    "clip_scale", "unclipped_bit", "l2_norm", "BOUNDARY_RTOL", "value_noise_multiplier", "default_bit_stddev",
    # accounting
    "PrivacyLedger", "PrivacyEvent", "PrivacyBudget", "check_budget", "epsilon_for",
    # errors
    "AggregationError", "ConfigError", "UpdateRejected", "StateError", "EmptyRound", "BufferFull",
    "PrivacyBudgetExceeded",
]
