"""Federated EASE: which catalogue size, device cap, k-threshold, lambda and rank keep >= 1.6x popularity?

    .venv/bin/python sweeps/recommender_ease.py     # writes sweeps/results/recommender_ease.json

Each consented customer of the demo (``models.data.load_retail``, the demo's consent draw: 5 %
refuse) is a device.  A device's contribution is exactly what ``edge_sdk.families.ease`` sends:
the 0/1 upper triangle of x x' over its items inside the aggregated catalogue (the top ``items``
by count), a seeded sample of ``cap`` items when it holds more.  The server sums them, zeroes
entries below ``k`` devices, solves EASE with ``lambda`` (``server.aggregation.ease``) and, for
``rank``, publishes the truncated-SVD factors.  Every held-out customer scores on the device
with its whole training history in the catalogue; HR@10 over all of them, bootstrap 95 %
interval, against popularity (counts of the consented devices) and central EASE on all items.

The first point sums the devices' bodies through the production path (sparse wire body ->
``Accumulator.add_sparse``) and checks the sum equals the central X'X exactly; the grid then
builds the same sums with scipy (equal by construction, and checked at that point).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy import sparse

from common import RETAIL, data_file, log, save  # type: ignore[import-not-found]

from fedmark.contract.gram import clip_norm_for, gram_from_triu, triu_size
from fedmark.contract.wire import decode_sparse_update, sparse_size
from edge_sdk.families.ease import contribution_body
from server.aggregation.accumulator import Accumulator
from server.aggregation.clipping import BOUNDARY_RTOL
from server.aggregation.ease import ease_weights, low_rank_factors, threshold_counts
from simulate.ease import capped_matrix, consenting
from simulate.stats import bootstrap_mean

SEED = 0
NO_CONSENT = 0.05  # the demo's RecommenderConfig.no_consent, drawn with its seed + 3


def load() -> tuple[Any, list[int], list[int]]:
    from models.data import load_retail

    data = load_retail(data_file(RETAIL))
    consent = consenting(len(data.customers), NO_CONSENT, SEED)
    devices = [u for u in range(len(data.train)) if consent[u] and len(data.train[u])]
    held = [u for u, t in enumerate(data.test) if len(t) and len(data.train[u])]
    return data, devices, held


def catalogue(data: Any, devices: list[int], n_items: int) -> np.ndarray:
    """The top ``n_items`` items by how many devices bought them (ties by index), as global ids
    (``models.ease.catalogue``, the artifact's rule)."""
    from models.ease import catalogue as codes

    index = {code: i for i, code in enumerate(data.items)}
    return np.array(sorted(index[c] for c in codes([data.train[u] for u in devices], data.items, n_items)), np.int64)


def device_matrix(data: Any, users: list[int], cat: np.ndarray, cap: int | None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Rows = users' (capped) 0/1 vectors over the catalogue (the seeded sample each device draws);
    and each row's contributed item count."""
    pos = -np.ones(data.n_items, np.int64)
    pos[cat] = np.arange(cat.size)
    local = [pos[np.unique(data.train[u])] for u in users]
    return capped_matrix([h[h >= 0] for h in local], cat.size, cap)  # the protocol's own sample


def hr10(scores_of: Any, x_full: sparse.csr_matrix, data: Any, held: list[int], cat: np.ndarray) -> dict[str, Any]:
    """HR@10 over ``held``: scores over the catalogue, items already bought excluded."""
    hits = []
    for start in range(0, len(held), 512):
        users = held[start:start + 512]
        xs = x_full[users]
        s = np.asarray(scores_of(xs), np.float64)
        s[xs.toarray() > 0] = -np.inf
        top = cat[np.argpartition(-s, 10, axis=1)[:, :10]]
        hits += [float(bool(set(row.tolist()) & set(data.test[u].tolist()))) for row, u in zip(top, users)]
    hr, lo, hi = bootstrap_mean(np.array(hits), seed=SEED)
    return {"hr@10": hr, "hr@10_ci": [lo, hi], "users": len(hits)}


def production_sum_matches(data: Any, devices: list[int], cat: np.ndarray, cap: int | None) -> dict[str, Any]:
    """Sum every device's sparse body through the server's accumulator; compare with scipy's X'X."""
    n = cat.size
    index = {data.items[g]: i for i, g in enumerate(cat)}
    acc = Accumulator(round_index=0, num_params=triu_size(n), clip_norm=clip_norm_for(cap or n), uniform=True,
                      max_weight=None, boundary_rtol=BOUNDARY_RTOL, capacity=None)
    nbytes = []
    t0 = time.time()
    for u in devices:
        body = contribution_body([data.items[i] for i in data.train[u]], index, n, cap=cap or n)
        nbytes.append(len(body))
        idx, val = decode_sparse_update(body, triu_size(n))
        acc.add_sparse(idx, val)
    g_fed = gram_from_triu(acc.sum, n)
    xc, _ = device_matrix(data, devices, cat, cap)
    g_central = (xc.T @ xc).toarray()
    return {"items": n, "cap": cap, "devices": len(devices), "max_abs_difference": float(np.abs(g_fed - g_central).max()),
            "equal": bool(np.array_equal(g_fed, g_central)), "seconds": round(time.time() - t0, 1),
            "body_bytes_mean": float(np.mean(nbytes)), "body_bytes_max": int(max(nbytes))}


def main() -> None:
    data, devices, held = load()
    log(f"{len(devices)} consented devices, {len(held)} held-out users, {data.n_items} items")
    doc: dict[str, Any] = {"devices": len(devices), "held_out_users": len(held), "items": data.n_items, "points": []}
    all_items = np.arange(data.n_items)
    x_all = sparse.csr_matrix((np.ones(sum(len(np.unique(t)) for t in data.train)),
                               (np.concatenate([np.full(len(np.unique(t)), u) for u, t in enumerate(data.train)]),
                                np.concatenate([np.unique(t) for t in data.train]))), shape=(len(data.train), data.n_items))
    counts = np.asarray(x_all[devices].sum(axis=0)).ravel()
    doc["popularity"] = hr10(lambda xs: np.tile(counts, (xs.shape[0], 1)), x_all, data, held, all_items)
    pop = doc["popularity"]["hr@10"]
    log("popularity", doc["popularity"])

    # Parity through the production path, at a small catalogue so it runs in seconds.
    doc["production_path_parity"] = production_sum_matches(data, devices, catalogue(data, devices, 500), 100)
    log("parity", doc["production_path_parity"])

    cache: dict[tuple[int, int | None], Any] = {}

    def point(items: int, cap: int | None, k: int, lam: float, rank: int | None, repair: bool = True) -> dict[str, Any]:
        t0 = time.time()
        cat = catalogue(data, devices, items)
        if (items, cap) not in cache:
            xc, sizes = device_matrix(data, devices, cat, cap)
            cache[(items, cap)] = ((xc.T @ xc).toarray(), sizes)
        g, sizes = cache[(items, cap)]
        b = ease_weights(g, lam, k) if repair else ease_weights(threshold_counts(g, k), lam)
        x_cat = x_all[:, cat]
        if rank is None:
            res = hr10(lambda xs: xs @ b, x_cat, data, held, cat)
        else:
            left, right = low_rank_factors(b, rank)
            res = hr10(lambda xs: (xs @ left) @ right, x_cat, data, held, cat)
        pairs = sizes * (sizes + 1) // 2
        out = {"items": items, "cap": cap, "k": k, "lambda": lam, "rank": rank, "psd_repair": repair and k > 1, **res,
               "vs_popularity": res["hr@10"] / pop,
               "body_bytes_mean": float(np.mean([sparse_size(int(p)) for p in pairs])),
               "body_bytes_max": sparse_size(int(pairs.max())),
               "published_floats": (2 * rank * items) if rank else items * items,
               "seconds": round(time.time() - t0, 1)}
        doc["points"].append(out)
        log(out)
        save("recommender_ease", doc)
        return out

    # 1. central EASE on every item (lambda 400, the recommender_models winner) = federated, no cap, k = 1
    point(data.n_items, None, 1, 400.0, None)
    # 2. catalogue size (no cap, k = 1)
    for items in (1000, 1500, 2000, 2500):
        point(items, None, 1, 400.0, None)
    # The catalogue costs nothing down to 1,000 items (within noise), and shrinks bodies and the model: take it.
    best_items = 1000
    # 3. device cap (the clip), at k = 1
    for cap in (50, 100, 200):
        point(best_items, cap, 1, 400.0, None)
    # 4. k-threshold x lambda, cap 100 (40 kB bodies at most); k > 1 projects the thresholded Gram onto the
    #    PSD cone (server.aggregation.ease.nearest_psd).  The "no PSD repair" points show why.
    for k in (1, 2, 5, 10):
        for lam in (100.0, 200.0, 400.0, 800.0):
            point(best_items, 100, k, lam, None)
    for lam in (200.0, 400.0):
        point(best_items, 100, 5, lam, None, repair=False)
    # 5. rank of the published factors, at the best lambda of each k in 1 and 5
    for k in (1, 5):
        lam = max((p for p in doc["points"] if p["items"] == best_items and p["cap"] == 100 and p["k"] == k
                   and p["rank"] is None and (p["psd_repair"] or k == 1)), key=lambda p: p["hr@10"])["lambda"]
        for rank in (64, 128, 256):
            point(best_items, 100, k, lam, rank)
    save("recommender_ease", doc)


if __name__ == "__main__":
    main()
