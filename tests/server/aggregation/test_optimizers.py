"""Server optimizers follow their published update rules, with state carried explicitly."""
from __future__ import annotations

import numpy as np
import pytest

from server.aggregation import ConfigError, OptimizerState, ServerAdam, ServerSGD, StateError


def test_fedavg_sgd_applies_server_learning_rate():
    opt = ServerSGD(lr=0.5)
    p = np.array([1.0, 2.0], np.float32)
    st, new = opt.next(opt.initialize(p), p, np.array([2.0, -2.0], np.float32))
    np.testing.assert_allclose(new, [2.0, 1.0])
    assert st.step == 1 and st.slots == {}


def test_momentum_accumulates_like_heavy_ball():
    opt = ServerSGD(lr=0.1, momentum=0.9)
    p = np.zeros(2, np.float32)
    st = opt.initialize(p)
    m = np.zeros(2)
    ref = np.zeros(2)
    for t in range(5):
        d = np.array([1.0, -0.5]) * (t + 1)
        st, p = opt.next(st, p, d.astype(np.float32))
        m = 0.9 * m + d
        ref = ref + 0.1 * m
    np.testing.assert_allclose(p, ref, rtol=1e-5)
    np.testing.assert_allclose(st.slots["m"], m, rtol=1e-6)


def test_fedadam_matches_reddi_et_al_algorithm():
    opt = ServerAdam(lr=0.03, beta1=0.9, beta2=0.99, tau=1e-3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=20).astype(np.float32)
    st = opt.initialize(x)
    m = np.zeros(20)
    v = np.zeros(20)
    ref = x.astype(np.float64)
    for _ in range(10):
        d = rng.normal(size=20) * 0.1
        st, x = opt.next(st, x, d.astype(np.float32))
        st = OptimizerState.from_bytes(st.to_bytes())   # persisted between rounds
        m = 0.9 * m + 0.1 * d
        v = 0.99 * v + 0.01 * d * d
        ref = ref + 0.03 * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(x, ref, rtol=1e-4, atol=1e-5)
    assert st.step == 10


def test_optimizer_errors_are_clear():
    with pytest.raises(ConfigError, match="lr"):
        ServerSGD(lr=0)
    with pytest.raises(ConfigError, match="momentum"):
        ServerSGD(momentum=1.0)
    opt = ServerAdam()
    st = opt.initialize(np.zeros(3, np.float32))
    with pytest.raises(ConfigError, match="3 entries"):
        opt.next(st, np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ConfigError, match="NaN"):
        opt.next(st, np.zeros(3, np.float32), np.array([0, np.nan, 0], np.float32))
    with pytest.raises(StateError, match="slot 'm'"):
        opt.next(st, np.zeros(5, np.float32), np.zeros(5, np.float32))
