"""The flat parameter vector: how named tensors become the one vector that travels."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from fedmark.contract.errors import ContractError
from fedmark.contract.manifest import ParamSpec

__all__ = ["flatten", "unflatten"]


def flatten(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate parameter tensors (C order) into one float32 vector."""
    return np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays]) if arrays else np.zeros(0, np.float32)


def unflatten(vec: np.ndarray, specs: Sequence[ParamSpec]) -> list[np.ndarray]:
    total = sum(s.size for s in specs)
    if vec.size != total:
        raise ContractError(f"vector has {vec.size} values, the parameters need {total}")
    out, off = [], 0
    for s in specs:
        out.append(np.asarray(vec[off:off + s.size], dtype=np.float32).reshape(s.shape))
        off += s.size
    return out
