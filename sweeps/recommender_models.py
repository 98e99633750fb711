"""The recommender's model ceiling, compared centrally: which model beats 1.6x popularity on all held-out users?

    .venv/bin/python sweeps/recommender_models.py     # writes sweeps/results/recommender_models.json

Same data and protocol as the federated runs (``models.data.load_retail``:
each customer's last basket held out; HR@10 over every held-out user, items
already bought excluded, bootstrap 95 % interval).  Candidates, each trained
on every customer's training history:

* popularity (the baseline) and the current model's ceiling (the demo's MF,
  trained centrally - figures from sweeps/results/recommender.json);
* item-item co-occurrence, cosine-normalised, with a popularity damping exponent;
* EASE (Steck 2019): a closed-form item-item linear model, B = I - P diag(1/diag P), P = (X'X + lambda I)^-1;
* implicit ALS with confidence weighting (Hu, Koren, Volinsky 2008): c = 1 + alpha, the user vector a
  least-squares solve against the item factors - exactly an on-device reconstruction;
* BPR (Rendle et al. 2009): matrix factorisation with the pairwise loss, numpy mini-batch SGD;
* item features: co-occurrence blended with description-word (TF-IDF) similarity.

Why these are federatable: co-occurrence, EASE and ALS's item step need only
sums over users of per-user statistics (X_u'X_u, Y'C_uY, Y'C_u p_u) - a
device's clipped, noised contribution to a sum, the shape the server's
aggregation already folds - and the user side (a history, or a user vector
solved from the item factors) never leaves the device.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
from scipy import sparse

from common import RETAIL, data_file, log, save  # type: ignore[import-not-found]

from simulate.stats import bootstrap_mean


def load() -> tuple[Any, sparse.csr_matrix, list[int]]:
    from models.data import load_retail

    data = load_retail(data_file(RETAIL))
    rows = np.concatenate([np.full(len(t), u) for u, t in enumerate(data.train)])
    cols = np.concatenate(data.train)
    x = sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(len(data.train), data.n_items))
    held = [u for u, t in enumerate(data.test) if len(t) and len(data.train[u])]
    return data, x, held


def hr_at_10(score_fn: Callable[[np.ndarray], np.ndarray], x: sparse.csr_matrix, data: Any, held: list[int],
             k: int = 10) -> dict[str, Any]:
    """HR@k per held-out user (items already bought excluded), in chunks of users; bootstrap interval."""
    hits = []
    for start in range(0, len(held), 512):
        users = np.array(held[start:start + 512])
        s = np.asarray(score_fn(users), np.float64)
        s[x[users].toarray() > 0] = -np.inf
        top = np.argpartition(-s, k, axis=1)[:, :k]
        for row, u in zip(top, users):
            hits.append(float(bool(set(row.tolist()) & set(data.test[u].tolist()))))
    hr, lo, hi = bootstrap_mean(np.array(hits), seed=0)
    return {"hr@10": hr, "hr@10_ci": [lo, hi], "users": len(hits)}


def popularity(x: sparse.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
    counts = np.asarray(x.sum(axis=0)).ravel()
    return lambda users: np.tile(counts, (len(users), 1))


def cooccurrence(x: sparse.csr_matrix, damp: float) -> Callable[[np.ndarray], np.ndarray]:
    c = (x.T @ x).toarray().astype(np.float64)
    np.fill_diagonal(c, 0.0)
    n = np.asarray(x.sum(axis=0)).ravel() + 1e-9
    s = c / (n[:, None] ** (1 - damp)) / (n[None, :] ** damp)  # damp 0.5 = cosine
    return lambda users: x[users] @ s


def ease(x: sparse.csr_matrix, lam: float) -> Callable[[np.ndarray], np.ndarray]:
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return lambda users: x[users] @ b


_SVD: dict[tuple[int, float], Any] = {}


def ease_low_rank(x: sparse.csr_matrix, lam: float, rank: int) -> Callable[[np.ndarray], np.ndarray]:
    """EASE truncated to rank r: B ~ U_r S_r V_r'.  The user vector x_u U_r S_r is a sum over the user's own
    items, computed on the device; only the item factors (U_r S_r, V_r) are global - the MF shape."""
    key = (id(x), lam)
    if key not in _SVD:
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        _SVD[key] = np.linalg.svd(b)
    u, sv, vt = _SVD[key]
    left = u[:, :rank] * sv[:rank]
    right = vt[:rank]
    return lambda users: np.asarray(x[users] @ left) @ right


def ease_dp_gram(x: sparse.csr_matrix, lam: float, cap: int, z: float, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """EASE from a differentially private Gram sum, the shape a federated EASE would take.

    Each device caps its history at ``cap`` items (so its contribution x_u x_u' has Frobenius norm <= cap),
    the server adds N(0, (z cap)^2) to every entry of the summed Gram (symmetrically) in one release, and
    inverts.  Devices score with their own full history against the published B.
    """
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(x.shape[0]):
        items = x.indices[x.indptr[u]:x.indptr[u + 1]]
        if items.size > cap:
            items = rng.choice(items, cap, replace=False)
        rows.append(np.full(items.size, u))
        cols.append(items)
    r, c = np.concatenate(rows), np.concatenate(cols)
    xc = sparse.csr_matrix((np.ones(r.size), (r, c)), shape=x.shape)
    g = (xc.T @ xc).toarray()
    noise = np.triu(rng.normal(0.0, z * cap, g.shape))
    g += noise + np.triu(noise, 1).T
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return lambda users: x[users] @ b


def als(x: sparse.csr_matrix, dim: int, alpha: float, lam: float, iters: int, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Implicit ALS, conjugate-free exact solves (binary r, c = 1 + alpha r)."""
    rng = np.random.default_rng(seed)
    n_u, n_i = x.shape
    uf = rng.normal(0, 0.01, (n_u, dim))
    itf = rng.normal(0, 0.01, (n_i, dim))
    xt = x.T.tocsr()

    def solve(fixed: np.ndarray, m: sparse.csr_matrix, out: np.ndarray) -> None:
        gram = fixed.T @ fixed + lam * np.eye(dim)
        for r in range(m.shape[0]):
            idx = m.indices[m.indptr[r]:m.indptr[r + 1]]
            if idx.size == 0:
                out[r] = 0.0
                continue
            f = fixed[idx]
            a = gram + alpha * f.T @ f
            out[r] = np.linalg.solve(a, (1 + alpha) * f.sum(axis=0))
    for _ in range(iters):
        solve(itf, x, uf)
        solve(uf, xt, itf)
    return lambda users: uf[users] @ itf.T


def bpr(x: sparse.csr_matrix, dim: int, lr: float, reg: float, epochs: int, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """BPR-MF with item biases, vectorised mini-batch SGD over (user, positive, sampled negative)."""
    rng = np.random.default_rng(seed)
    n_u, n_i = x.shape
    coo = x.tocoo()
    us, ps = coo.row.astype(np.int64), coo.col.astype(np.int64)
    uf = rng.normal(0, 0.1, (n_u, dim))
    itf = rng.normal(0, 0.1, (n_i, dim))
    bias = np.zeros(n_i)
    batch = 4096
    for _ in range(epochs):
        order = rng.permutation(us.size)
        for s in range(0, order.size, batch):
            b = order[s:s + batch]
            u, i = us[b], ps[b]
            j = rng.integers(0, n_i, b.size)
            wu, wi, wj = uf[u], itf[i], itf[j]
            z = (wu * (wi - wj)).sum(axis=1) + bias[i] - bias[j]
            g = 1.0 / (1.0 + np.exp(z))  # d log sigmoid(z) / dz
            np.add.at(uf, u, lr * (g[:, None] * (wi - wj) - reg * wu))
            np.add.at(itf, i, lr * (g[:, None] * wu - reg * wi))
            np.add.at(itf, j, lr * (-g[:, None] * wu - reg * wj))
            np.add.at(bias, i, lr * (g - reg * bias[i]))
            np.add.at(bias, j, lr * (-g - reg * bias[j]))
    return lambda users: uf[users] @ itf.T + bias[None, :]


def with_descriptions(base: Callable[[np.ndarray], np.ndarray], x: sparse.csr_matrix, data: Any,
                      beta: float) -> Callable[[np.ndarray], np.ndarray]:
    """``base``'s scores blended with description-word similarity to the user's items (each scaled to [0, 1])."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [data.descriptions.get(code, "") or code for code in data.items]
    tf = TfidfVectorizer(min_df=2, token_pattern=r"[A-Za-z]{3,}").fit_transform(docs)
    content = (tf @ tf.T).toarray()
    np.fill_diagonal(content, 0.0)

    def score(users: np.ndarray) -> np.ndarray:
        a = np.asarray(base(users), np.float64)
        b = np.asarray(x[users] @ content, np.float64)
        a /= a.max(axis=1, keepdims=True) + 1e-12  # each signal on [0, 1] per user before blending
        b /= b.max(axis=1, keepdims=True) + 1e-12
        return a + beta * b
    return score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer grid points")
    ap.add_argument("--only-low-rank", action="store_true",
                    help="add only the low-rank EASE points to an existing results file")
    ap.add_argument("--only-dp", action="store_true", help="add only the DP-Gram EASE points to an existing results file")
    args = ap.parse_args()
    data, x, held = load()
    log(f"{x.shape[0]} customers, {x.shape[1]} items, {x.nnz} interactions, {len(held)} held-out users")
    doc: dict[str, Any] = {"customers": x.shape[0], "items": x.shape[1], "held_out_users": len(held), "models": []}

    def add(name: str, params: dict[str, Any], fn: Callable[[], Callable[[np.ndarray], np.ndarray]]) -> None:
        t = time.perf_counter()
        score = fn()
        fit = time.perf_counter() - t
        m = hr_at_10(score, x, data, held)
        m.update(model=name, params=params, fit_seconds=round(fit, 1))
        doc["models"].append(m)
        pop = doc["models"][0]["hr@10"]
        m["vs_popularity"] = m["hr@10"] / pop
        m["beats_1.6x_popularity"] = bool(m["hr@10_ci"][0] >= 1.6 * pop)
        log(f"{name} {params}: HR@10 {m['hr@10']:.4f} [{m['hr@10_ci'][0]:.4f}, {m['hr@10_ci'][1]:.4f}] "
            f"x{m['vs_popularity']:.2f} popularity ({fit:.0f}s)")
        save("recommender_models", doc)

    if args.only_dp:
        import json
        from common import RESULTS  # type: ignore[import-not-found]
        from server.aggregation import PrivacyLedger
        doc = json.loads((RESULTS / "recommender_models.json").read_text())
        doc["models"] = [m for m in doc["models"] if m["model"] != "EASE, DP Gram (one release)"]
        for cap, z, lam in ((30, 1.0, 2000.0), (30, 2.0, 5000.0), (10, 1.0, 500.0), (10, 2.0, 1000.0)):
            eps = PrivacyLedger().record(z, 1.0).epsilon(1e-5)
            add("EASE, DP Gram (one release)", {"cap": cap, "z": z, "lambda": lam, "epsilon": round(eps, 3)},
                lambda: ease_dp_gram(x, lam, cap, z))
        return
    if args.only_low_rank:
        import json
        from common import RESULTS  # type: ignore[import-not-found]
        doc = json.loads((RESULTS / "recommender_models.json").read_text())
        doc["models"] = [m for m in doc["models"] if m["model"] != "EASE, low rank"]
    else:
        add("popularity", {}, lambda: popularity(x))
    if not args.only_low_rank:
        main_grid(add, x, data, doc, args.quick)
    best_lam = max((m for m in doc["models"] if m["model"] == "EASE"), key=lambda m: m["hr@10"])["params"]["lambda"]
    for rank in (32, 64, 256):
        add("EASE, low rank", {"lambda": best_lam, "rank": rank}, lambda: ease_low_rank(x, best_lam, rank))


def main_grid(add: Callable[..., None], x: sparse.csr_matrix, data: Any, doc: dict[str, Any], quick: bool) -> None:
    """Every candidate but the low-rank EASE (which needs EASE's best lambda)."""
    args = argparse.Namespace(quick=quick)
    for damp in (0.1, 0.3, 0.5):
        add("co-occurrence", {"damp": damp}, lambda: cooccurrence(x, damp))
    for lam in ((100.0, 200.0, 400.0, 800.0) if not args.quick else (200.0,)):
        add("EASE", {"lambda": lam}, lambda: ease(x, lam))
    for dim, alpha, lam in ((64, 10.0, 1.0), (64, 40.0, 10.0))[: 1 if args.quick else 2]:
        add("implicit ALS", {"dim": dim, "alpha": alpha, "lambda": lam, "iters": 10},
            lambda: als(x, dim, alpha, lam, 10))
    add("BPR", {"dim": 64, "lr": 0.05, "reg": 0.001, "epochs": 30}, lambda: bpr(x, 64, 0.05, 0.001, 30))
    best = {name: max((m for m in doc["models"] if m["model"] == name), key=lambda m: m["hr@10"])["params"]
            for name in ("co-occurrence", "EASE")}
    for beta in (0.25, 1.0):
        add("co-occurrence + description words", {**best["co-occurrence"], "beta": beta},
            lambda: with_descriptions(cooccurrence(x, best["co-occurrence"]["damp"]), x, data, beta))
        add("EASE + description words", {**best["EASE"], "beta": beta},
            lambda: with_descriptions(ease(x, best["EASE"]["lambda"]), x, data, beta))


if __name__ == "__main__":
    main()
