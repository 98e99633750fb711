"""Delta, clipping, within-clip bit, local noise and encoding: the privacy-critical maths."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge_sdk.errors import ConfigurationError, ModelError
from edge_sdk.update import build_update, compute_delta, privatize
from fedmark.contract import ParamSpec, decode_update

SPECS = (ParamSpec("w", (2, 3)), ParamSpec("b", (3,)))


def _params(rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    return [rng.normal(0, scale, s.shape).astype(np.float32) for s in SPECS]


def test_delta_is_new_minus_old_flattened_in_manifest_order():
    old = [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)]
    new = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([10, 11, 12], np.float32)]
    np.testing.assert_array_equal(compute_delta(new, old, SPECS), [0, 1, 2, 3, 4, 5, 10, 11, 12])
    with pytest.raises(ModelError, match="shape"):
        compute_delta([new[0].T, new[1]], old, SPECS)
    with pytest.raises(ModelError, match="manifest lists 2"):
        compute_delta(new[:1], old, SPECS)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(1, 64), elements=st.floats(-1e4, 1e4, width=32)),
       st.floats(1e-3, 1e3))
def test_clipped_norm_never_exceeds_c_and_the_bit_is_taken_before_clipping(vec, clip):
    out, norm, within = privatize(vec, clip)
    assert float(np.linalg.norm(out.astype(np.float64))) <= clip
    assert norm == pytest.approx(float(np.linalg.norm(vec.astype(np.float64))))
    assert within == (norm <= clip)
    if within:
        np.testing.assert_array_equal(out, vec)
    else:  # direction is kept
        cos = float(out.astype(np.float64) @ vec.astype(np.float64)) / (np.linalg.norm(out) * norm)
        assert cos == pytest.approx(1.0, abs=1e-5)


def test_local_noise_has_std_noise_times_c():
    z, c = 0.5, 2.0
    out, _, _ = privatize(np.zeros(200_000, np.float32), c, z, np.random.default_rng(1))
    assert float(out.std()) == pytest.approx(z * c, rel=0.01)
    assert abs(float(out.mean())) < 0.01


def test_noise_is_unseeded_by_default():
    a, _, _ = privatize(np.zeros(100, np.float32), 1.0, 1.0)
    b, _, _ = privatize(np.zeros(100, np.float32), 1.0, 1.0)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("encoding,tol", [("f32", 0.0), ("f16", 1e-3), ("q8", None)])
def test_build_update_encodes_what_it_reports(encoding, tol):
    rng = np.random.default_rng(3)
    old, new = _params(rng), _params(rng, 0.01)
    up = build_update(new, old, SPECS, clip_norm=0.5, num_examples=7, encoding=encoding)
    decoded, name = decode_update(up.body, expected_count=9)
    assert name == encoding and up.num_examples == 7
    assert float(np.linalg.norm(up.vector)) <= 0.5
    assert up.within_clip is False and up.norm > 0.5
    if tol is None:  # q8: error at most one quantisation step
        step = (up.vector.max() - up.vector.min()) / 255
        assert float(np.max(np.abs(decoded - up.vector))) <= step * 1.0001
    else:
        np.testing.assert_allclose(decoded, up.vector, atol=tol)


def test_q8_stochastic_rounding_is_unbiased():
    vec = np.linspace(-0.3, 0.3, 50).astype(np.float32)
    rng = np.random.default_rng(5)
    zeros = [np.zeros_like(vec)]
    mean = np.mean([decode_update(build_update([vec], zeros, (ParamSpec("v", (50,)),), clip_norm=10.0,
                                               num_examples=1, encoding="q8", rng=rng).body)[0]
                    for _ in range(400)], axis=0)
    step = 0.6 / 255
    assert float(np.max(np.abs(mean - vec))) < step * 0.2


def test_bad_settings_are_refused():
    rng = np.random.default_rng(0)
    old, new = _params(rng), _params(rng)
    with pytest.raises(ConfigurationError, match="encoding"):
        build_update(new, old, SPECS, clip_norm=1.0, num_examples=1, encoding="f8")
    with pytest.raises(ConfigurationError, match="clip norm"):
        build_update(new, old, SPECS, clip_norm=0.0, num_examples=1)
    with pytest.raises(ConfigurationError, match="at least one"):
        build_update(new, old, SPECS, clip_norm=1.0, num_examples=0)
    bad = [p.copy() for p in new]
    bad[0][0, 0] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        build_update(bad, old, SPECS, clip_norm=1.0, num_examples=1)
