"""Federated EASE: the Gram the server sums from devices' sparse bodies, and what devices score with it.

Parity is exact by construction and tested as such: with k = 1 and no noise, the Gram summed from
every device's FMS1 body through ``Accumulator.add_sparse`` equals X'X bit for bit, so the B solved
from it equals central EASE's, and a device's ``history @ B`` equals the central scores.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.families.ease import contribution_body, history_vector, recommend, scores
from fedmark.contract.clipping import l2_norm
from fedmark.contract.gram import clip_norm_for, gram_contribution, gram_from_triu, triu_size
from fedmark.contract.wire import decode_sparse_update
from server.aggregation.accumulator import Accumulator
from server.aggregation.clipping import BOUNDARY_RTOL
from server.aggregation.ease import ease_weights, low_rank_factors, nearest_psd, threshold_counts
from server.aggregation.errors import UpdateRejected

N_ITEMS = 60


def fleet(n_devices: int = 300, seed: int = 0) -> list[list[str]]:
    """Skewed histories (a few popular items, long tails), as item ids."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    pop /= pop.sum()
    return [[f"sku{i}" for i in rng.choice(N_ITEMS, rng.integers(1, 25), p=pop)] for _ in range(n_devices)]


def accumulator(n: int, cap: int) -> Accumulator:
    return Accumulator(round_index=0, num_params=triu_size(n), clip_norm=clip_norm_for(cap), uniform=True,
                       max_weight=None, boundary_rtol=BOUNDARY_RTOL, capacity=None)


def central_ease(x: np.ndarray, lam: float) -> np.ndarray:
    """Steck (2019), written from the paper: B = I - P diagMat(1 / diag P), P = (X'X + lambda I)^-1."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    return np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))


@pytest.fixture(scope="module")
def setup():
    histories = fleet()
    index = {f"sku{i}": i for i in range(N_ITEMS)}
    x = np.stack([history_vector(h, index, N_ITEMS) for h in histories]).astype(np.float64)
    acc = accumulator(N_ITEMS, cap=N_ITEMS)  # no device exceeds the cap: nothing sampled
    for d, h in enumerate(histories):
        idx, val = decode_sparse_update(contribution_body(h, index, N_ITEMS, cap=N_ITEMS, seed=d), triu_size(N_ITEMS))
        c = acc.add_sparse(idx, val)
        assert not c.clipped or c.norm == clip_norm_for(N_ITEMS)  # an honest body is never scaled
    return histories, index, x, acc


def test_federated_gram_equals_the_central_gram_exactly(setup):
    _h, _i, x, acc = setup
    assert acc.count == x.shape[0]
    assert np.array_equal(gram_from_triu(acc.sum, N_ITEMS), x.T @ x)


def test_device_scores_equal_central_ease_scores(setup):
    histories, index, x, acc = setup
    lam = 20.0
    b_fed = ease_weights(gram_from_triu(acc.sum, N_ITEMS), lam, k_min=1)
    b_central = central_ease(x, lam)
    np.testing.assert_allclose(b_fed, b_central, rtol=0, atol=1e-12)
    for d in (0, 7, 123):
        xd = history_vector(histories[d], index, N_ITEMS)
        np.testing.assert_allclose(scores(xd, b_fed), x[d] @ b_central, rtol=0, atol=1e-10)
        assert not set(recommend(xd, b_fed, 5)) & set(np.flatnonzero(xd).tolist())
    # the published low-rank factors at full rank are B again (to float32)
    left, right = low_rank_factors(b_fed, N_ITEMS)
    np.testing.assert_allclose(scores(x[3], (left, right)), x[3] @ b_central, atol=1e-4)


def test_cap_samples_and_the_server_re_clips_a_dishonest_body():
    items = list(range(30))
    idx, val = gram_contribution(items, N_ITEMS, cap=10, rng=np.random.default_rng(1))
    assert idx.size == triu_size(10) and l2_norm(val) == clip_norm_for(10)
    acc = accumulator(N_ITEMS, cap=10)
    c = acc.add_sparse(idx, val)
    assert acc.sum[idx].tolist() == [1.0] * idx.size, "an honest capped body is folded unscaled"
    big, ones = gram_contribution(items, N_ITEMS)  # all 30 items: norm above the clip
    c = acc.add_sparse(big, ones * 5)
    assert c.clipped and np.sqrt((acc.sum[big] - np.isin(big, idx)) @ (acc.sum[big] - np.isin(big, idx))) <= clip_norm_for(10)


def test_add_sparse_equals_the_dense_add():
    rng = np.random.default_rng(3)
    dense, sparse = accumulator(N_ITEMS, 5), accumulator(N_ITEMS, 5)
    for _ in range(20):
        idx = np.sort(rng.choice(triu_size(N_ITEMS), 40, replace=False)).astype(np.uint32)
        val = rng.normal(size=40).astype(np.float32)
        vec = np.zeros(triu_size(N_ITEMS), np.float32)
        vec[idx] = val
        a, b = dense.add(vec, within_clip=True), sparse.add_sparse(idx, val, within_clip=True)
        assert np.isclose(a.norm, b.norm, rtol=1e-14) and (a.clipped, a.unclipped_bit, a.claim_mismatch) == (b.clipped, b.unclipped_bit, b.claim_mismatch)
    np.testing.assert_allclose(sparse.sum, dense.sum, rtol=1e-12, atol=1e-12)
    assert (sparse.count, sparse.unclipped, sparse.mismatches) == (dense.count, dense.unclipped, dense.mismatches)


@pytest.mark.parametrize("idx, val, words", [
    (np.array([3, 2], np.uint32), np.ones(2, np.float32), "increasing"),
    (np.array([1, triu_size(N_ITEMS)], np.int64), np.ones(2, np.float32), "increasing"),
    (np.array([1, 2], np.uint32), np.ones(3, np.float32), "matching"),
    (np.array([1.0, 2.0]), np.ones(2, np.float32), "integer"),
    (np.array([1, 2], np.uint32), np.array([1.0, np.nan], np.float32), "NaN"),
])
def test_add_sparse_refuses_bad_updates_and_changes_nothing(idx, val, words):
    acc = accumulator(N_ITEMS, 5)
    with pytest.raises(UpdateRejected, match=words):
        acc.add_sparse(idx, val)
    assert acc.count == 0 and not acc.sum.any()


def test_k_threshold_zeroes_rare_pairs_and_the_solve_stays_well_posed(setup):
    _h, _i, x, acc = setup
    g = gram_from_triu(acc.sum, N_ITEMS)
    k = 8
    gk = threshold_counts(g, k)
    assert not ((gk > 0) & (gk < k)).any() and np.array_equal(gk[g >= k], g[g >= k])
    assert np.linalg.eigvalsh(gk)[0] < 0, "zeroing entries breaks PSD: the reason for the repair"
    assert np.linalg.eigvalsh(nearest_psd(gk))[0] > -1e-8
    b = ease_weights(g, 20.0, k_min=k)
    assert np.isfinite(b).all() and not np.diag(b).any()
    assert ease_weights(g, 20.0, k_min=1) is not None and np.array_equal(threshold_counts(g, 1), g)


def test_the_cap_sample_depends_on_the_history_alone_and_the_space_is_validated():
    from fedmark.contract import ManifestError
    from fedmark.contract.gram import capped_items, gram_space, history_seed

    items = list(range(0, 120, 2))
    a = capped_items(items, 10, np.random.default_rng(history_seed(items)))
    b = capped_items(items[::-1] + items[:5], 10, np.random.default_rng(history_seed(items[::-1] + items[:5])))
    assert a.tolist() == b.tolist() and a.size == 10  # same distinct history, same body (a retry is identical)
    assert history_seed(items) != history_seed(items[1:])
    assert gram_space({}) is None
    space = gram_space({"gram": {"items": 50, "cap": 10, "lambda": 3, "k_min": 2, "rank": 8}})
    assert (space.num_values, space.max_nnz, space.clip_norm) == (triu_size(50), triu_size(10), clip_norm_for(10))
    for bad in ({"items": 5, "cap": 10, "lambda": 1, "rank": 2}, {"items": 5, "cap": 2, "lambda": 0, "rank": 2},
                {"items": 5, "cap": 2, "lambda": 1}, {"items": "x", "cap": 2, "lambda": 1, "rank": 1}):
        with pytest.raises(ManifestError):
            gram_space({"gram": bad})


def test_only_a_full_triangle_of_ones_is_an_honest_contribution():
    from fedmark.contract.gram import check_contribution

    idx, val = gram_contribution([4, 9, 30], N_ITEMS)
    assert check_contribution(idx, val, N_ITEMS) == 3
    assert check_contribution(*gram_contribution([0, N_ITEMS - 1], N_ITEMS), N_ITEMS) == 2
    with pytest.raises(ValueError, match="values are all 1"):
        check_contribution(idx, val * 70, N_ITEMS)  # inside the clip norm, but one device posing as many
    with pytest.raises(ValueError, match="every pair"):
        check_contribution(idx[1:], val[1:], N_ITEMS)  # a pair without its items' diagonal
    other, ones = gram_contribution([4, 9, 31], N_ITEMS)
    mixed = np.union1d(idx[:3], other[3:])
    with pytest.raises(ValueError, match="every pair"):
        check_contribution(mixed, np.ones(mixed.size, np.float32), N_ITEMS)
