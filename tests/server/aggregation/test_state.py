"""Persisted state round-trips exactly, through JSON text and through bytes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from server.aggregation import (Accumulator, AggregatorState, ClipState, OptimizerState, PipelineState,
                                PrivacyLedger, StateError, dp_fedavg)

pos = st.floats(1e-12, 1e12, allow_nan=False, allow_infinity=False)
events = st.lists(st.tuples(st.floats(0.0, 50.0, allow_nan=False), st.floats(1e-6, 1.0), st.integers(1, 10_000)),
                  max_size=6)
vec32 = arrays(np.float32, st.integers(0, 64), elements=st.floats(width=32, allow_nan=False, allow_infinity=False))


@st.composite
def pipeline_states(draw):
    ledger = PrivacyLedger()
    for z, q, n in draw(events):
        ledger = ledger.record(z, q, n)
    clip = draw(st.none() | pos.map(ClipState))
    agg = AggregatorState(draw(st.integers(0, 10**9)), clip, ledger)
    n = draw(st.integers(0, 64))
    slots = {name: draw(arrays(np.float32, n, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
             for name in draw(st.sampled_from([(), ("m",), ("m", "v")]))}
    return PipelineState(agg, OptimizerState(draw(st.integers(0, 10**9)), slots))


def _same(a: PipelineState, b: PipelineState) -> None:
    assert a.aggregator == b.aggregator
    assert a.optimizer.step == b.optimizer.step
    assert a.optimizer.slots.keys() == b.optimizer.slots.keys()
    for k in a.optimizer.slots:
        assert a.optimizer.slots[k].dtype == b.optimizer.slots[k].dtype == np.float32
        assert a.optimizer.slots[k].tobytes() == b.optimizer.slots[k].tobytes()  # bit-exact (incl. -0.0)


@settings(max_examples=200, deadline=None)
@given(pipeline_states())
def test_pipeline_state_round_trips_through_json_text_and_bytes(state):
    _same(state, PipelineState.from_json(json.loads(json.dumps(state.to_json()))))
    _same(state, PipelineState.from_bytes(state.to_bytes()))


@settings(max_examples=200, deadline=None)
@given(pipeline_states())
def test_aggregator_state_json_is_plain_and_exact(state):
    agg = state.aggregator
    text = json.dumps(agg.to_json())
    assert AggregatorState.from_json(json.loads(text)) == agg
    assert AggregatorState.from_bytes(agg.to_bytes()) == agg
    assert AggregatorState.from_json(json.loads(text)).privacy.rounds == agg.privacy.rounds


@settings(max_examples=100, deadline=None)
@given(st.lists(vec32, min_size=0, max_size=5), st.integers(1, 64))
def test_accumulator_checkpoint_round_trips(vs, n):
    acc = Accumulator(round_index=3, num_params=n, clip_norm=0.5, uniform=False, max_weight=10.0,
                      boundary_rtol=1e-3, capacity=None)
    rng = np.random.default_rng(n)
    for _ in range(len(vs)):
        acc.add(rng.normal(size=n).astype(np.float32), float(rng.integers(1, 20)), bool(rng.integers(0, 2)))
    back = Accumulator.from_bytes(acc.to_bytes())
    assert back.tree().keys() == acc.tree().keys()
    for k, v in acc.tree().items():
        if isinstance(v, np.ndarray):
            assert v.tobytes() == back.tree()[k].tobytes()
        else:
            assert v == back.tree()[k]


def test_real_dp_pipeline_state_survives_a_restart_mid_training():
    """Persist after every round; a restored state continues exactly like the in-memory one."""
    rng = np.random.default_rng(0)
    pipe = dp_fedavg(1.0, 100, clip=0.5, adaptive=True, sampling_rate=0.05)
    params = np.zeros(50, np.float32)
    a = pipe.initialize(params)
    b = PipelineState.from_bytes(a.to_bytes())
    updates = [rng.normal(size=(100, 50)).astype(np.float32) * 0.1 for _ in range(3)]
    pa = pb = params
    for r, ups in enumerate(updates):
        outs = []
        for st_, p in ((a, pa), (b, pb)):
            acc = pipe.start(st_, 50)
            for u in ups:
                acc.add(u, 1.0)
            outs.append(pipe.finish(st_, acc, p, np.random.default_rng([42, r])))
        a, pa = outs[0].state, outs[0].params
        b, pb = PipelineState.from_json(json.loads(json.dumps(outs[1].state.to_json()))), outs[1].params
        np.testing.assert_array_equal(pa, pb)
    _same(a, b)
    assert a.epsilon(1e-5) == b.epsilon(1e-5) > 0


@pytest.mark.parametrize("bad", [{"round": 1, "clip": {"norm": -1.0}, "privacy": []},
                                 {"round": 1, "clip": None, "privacy": [{"z": 1.0}]},
                                 {"clip": None}, {"round": "x", "privacy": []}])
def test_corrupt_aggregator_state_is_refused(bad):
    with pytest.raises(StateError):
        AggregatorState.from_json(bad)
