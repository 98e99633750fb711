"""From a summed item-item Gram to the published EASE model: k-threshold, closed-form solve, low rank.

Why here (the aggregation floor): it is pure maths on an aggregate, like the server optimizer
that turns a mean update into new weights - a round of Gram contributions closes into
``B = I - P diag(1/diag P)``, ``P = (G + lambda I)^-1`` (Steck 2019, EASE), instead of
``w + lr * mean``.  The round close (rounds) decides *when* it runs; this module only says *what*.

Privacy step: entries of the Gram summed from fewer than ``k_min`` devices (pairs of items bought
together by fewer than k customers, and items bought by fewer than k) are zeroed before the solve,
so no published weight rests on one customer's pair.  With 0/1 contributions
(``fedmark.contract.gram``: sampling, not scaling, enforces the cap) every entry *is* that count.

Zeroing entries breaks positive semi-definiteness: at k = 5 (cap 100, 1,000 items) the thresholded
Gram has eigenvalues down to -422, so for lambda near 400 ``G + lambda I`` is nearly singular and
HR@10 collapses (0.244; sweeps/results/recommender_ease.json).  The thresholded Gram is therefore
projected back onto the PSD cone (negative eigenvalues set to 0) before the solve; at k = 1
nothing is zeroed and nothing is projected, so the federated B equals the central one exactly.

Low rank: the dense B over 3,659 items is 13.4M floats (54 MB) for every device to download;
its rank-r truncated SVD ``B ~ L R`` (L = U_r S_r, R = V_r') is 2 r n floats (rank 256: 7.5 MB).
A device scores its history h as ``(h L) R``; ``h L`` is a sum over its own items only.
"""
from __future__ import annotations

import numpy as np

from fedmark.contract.gram import GramSpace, gram_from_triu

__all__ = ["threshold_counts", "nearest_psd", "ease_weights", "low_rank_factors", "gram_sum_of", "published_factors"]


def threshold_counts(gram: np.ndarray, k_min: int) -> np.ndarray:
    """A copy of the summed Gram with every entry below ``k_min`` set to 0 (k_min <= 1: unchanged)."""
    g = np.array(gram, dtype=np.float64, copy=True)
    if k_min > 1:
        g[g < k_min] = 0.0
    return g


def nearest_psd(g: np.ndarray) -> np.ndarray:
    """The nearest (Frobenius) positive semi-definite matrix to symmetric ``g``: negative eigenvalues -> 0."""
    w, v = np.linalg.eigh(g)
    if w[0] >= 0:
        return g
    return (v * np.clip(w, 0.0, None)) @ v.T


def ease_weights(gram: np.ndarray, lam: float, k_min: int = 1) -> np.ndarray:
    """EASE's item-item weights B (zero diagonal) from a summed Gram: ``score = history @ B``."""
    if not lam > 0:
        raise ValueError(f"lambda must be > 0 (it keeps G + lambda I invertible), got {lam}")
    g = threshold_counts(gram, k_min)
    if k_min > 1:
        g = nearest_psd(g)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def low_rank_factors(b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(L, R), float32, with ``L @ R`` the best rank-``rank`` approximation of B (truncated SVD)."""
    if not 1 <= rank <= min(b.shape):
        raise ValueError(f"rank must be in [1, {min(b.shape)}], got {rank}")
    u, s, vt = np.linalg.svd(b, full_matrices=False)
    return (u[:, :rank] * s[:rank]).astype(np.float32), vt[:rank].astype(np.float32)


def gram_sum_of(mean: np.ndarray, weight: float, exact_counts: bool) -> np.ndarray:
    """The round's Gram sum from the released mean (``sum / weight``, float32): with uniform 0/1
    contributions and no noise every entry is an integer count, recovered exactly by rounding."""
    s = np.asarray(mean, np.float64) * float(weight)
    return np.rint(s) if exact_counts else s


def published_factors(space: GramSpace, gram_triu: np.ndarray) -> np.ndarray:
    """The flat parameters a Gram round publishes: L (items x rank), then R (rank x items), float32."""
    b = ease_weights(gram_from_triu(gram_triu, space.items), space.lam, space.k_min)
    left, right = low_rank_factors(b, space.rank)
    return np.concatenate([left.ravel(), right.ravel()]).astype(np.float32)
