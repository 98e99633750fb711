"""The federated EASE recommender family (protocol ``ease-gram/1``): an artifact with no train step.

Why a family without a train graph: EASE (Steck 2019) is a closed-form item-item model, so a
device's "training" is counting - the 0/1 upper triangle of x x' over at most ``cap`` of its items
in the catalogue (``fedmark.contract.gram``) - and the server solves the summed Gram when a round
closes (``server.aggregation.ease``).  The artifact still carries what every device needs: the
catalogue (``features.items``: the top ``items`` products), the Gram space the server reads from
``hyperparams.gram``, the published parameters (the low-rank factors L, R; zeros before the first
round) and one ONNX graph, ``infer``: ``scores = (x L) R`` for the 0/1 history ``x``, which runs on
any ONNX Runtime, the browser's included.

The settings come from sweeps/recommender_ease.py (results in sweeps/results/recommender_ease.json):
1,000 items cost nothing against all 3,659, a cap of 100 items keeps bodies under 40 kB, k = 5 with
the PSD repair and lambda 400 keeps 1.69x popularity (800: 1.72x, within noise), and rank 256 loses
0.003 HR@10 against the dense B at half its size.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from fedmark.contract import Manifest, ParamSpec
from fedmark.contract.gram import PROTOCOL_EASE, gram_space

__all__ = ["DEFAULT_ITEMS", "DEFAULT_CAP", "DEFAULT_LAMBDA", "DEFAULT_K_MIN", "DEFAULT_RANK", "catalogue",
           "infer_graph", "export_ease"]

DEFAULT_ITEMS = 1000
DEFAULT_CAP = 100
DEFAULT_LAMBDA = 400.0
DEFAULT_K_MIN = 5
DEFAULT_RANK = 256


def catalogue(histories: Sequence[Sequence[int]], items: Sequence[str], n: int) -> list[str]:
    """The ``n`` items the most customers bought (ties by vocabulary order): the Gram's rows.

    A retailer ranks its catalogue from its own sales ledger; here the training histories stand in."""
    counts = np.zeros(len(items))
    for h in histories:
        counts[np.unique(np.asarray(h, np.int64))] += 1
    order = np.lexsort((np.arange(len(items)), -counts))[:n]
    return [str(items[i]) for i in np.sort(order)]


def infer_graph(n: int, rank: int) -> Any:
    """ONNX ``scores[1, n] = (x[1, n] @ left[n, r]) @ right[r, n]``."""
    from onnx import TensorProto, helper

    from models import onnx_export as oe

    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "left"], ["user"]), helper.make_node("MatMul", ["user", "right"], ["scores"])],
        "ease_infer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n]),
         helper.make_tensor_value_info("left", TensorProto.FLOAT, [n, rank]),
         helper.make_tensor_value_info("right", TensorProto.FLOAT, [rank, n])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", oe.OPSET)], producer_name="fedmark")


def export_ease(out_dir: str | os.PathLike[str], *, items: Sequence[str] | None = None, data_path: str | None = None,
                n_items: int = DEFAULT_ITEMS, cap: int = DEFAULT_CAP, lam: float = DEFAULT_LAMBDA,
                k_min: int = DEFAULT_K_MIN, rank: int = DEFAULT_RANK, model: str = "recommender-ease",
                version: int = 1, seed: int = 0, **_unused: Any) -> Manifest:
    """Write the EASE artifact.  ``items``: the catalogue (stock codes); default the ``n_items`` most
    bought in ``data_path``'s training histories (the bundled Online Retail)."""
    from models import data as data_mod
    from models import onnx_export as oe
    from models.export import PARAMS_FILE, ExportError, _finish, _prepare_dir, _versions, _write_graphs, _write_params

    if items is None:
        d = data_mod.load_retail(data_path)
        items = catalogue(d.train, d.items, n_items)
    items = [str(i) for i in items]
    n = len(items)
    hyper = {"gram": {"items": n, "cap": min(cap, n), "lambda": float(lam), "k_min": int(k_min), "rank": min(rank, n)}}
    try:
        space = gram_space(hyper)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    assert space is not None
    specs = (ParamSpec("left", (n, space.rank)), ParamSpec("right", (space.rank, n)))
    out = _prepare_dir(out_dir)
    graphs, io = _write_graphs(out, {"infer": infer_graph(n, space.rank)})
    _write_params(out, [np.zeros(s.shape, np.float32) for s in specs])
    extra = {"params_file": PARAMS_FILE, "graph_io": io, "seed": seed, "exported_by": _versions(),
             "data": {"source": "UCI Online Retail, CC BY 4.0, doi:10.24432/C5BW33", "items": n}}
    return _finish(out, lambda files: Manifest(
        model=model, family="ease", protocol=PROTOCOL_EASE, version=version, params=specs, batch_size=1,
        graphs=graphs, files=files,
        features={"kind": "interactions", "user_column": "CustomerID", "item_column": "StockCode", "items": items},
        hyperparams=hyper, clip_norm=space.clip_norm, privacy={"mechanism": "none (k-threshold)"},
        opset=oe.OPSET, purpose="recommendations", extra=extra))
