"""One simulated device's round: exactly what ``edge_sdk.Client.train`` does, without HTTP.

Why these calls and no others: the point of a simulation is to predict what
the production fleet will publish.  So a simulated device runs the artifact's
ONNX graphs through ``edge_sdk.trainer.Trainer``, builds its update with
``edge_sdk.update.build_update`` (delta, device-side clip, local noise, wire
encoding), and the "server side" decodes the body with the wire contract and
folds it with ``server.aggregation.Accumulator.add`` at the weight the server
gives it (``min(examples, max_examples_weight)``).  A protocol that builds its
own upload (federated EASE, ``ease-gram/1``: ``edge_sdk.families.prepared_update``,
as ``Client.train`` calls it) sends a sparse body instead; it is read as
``server.rounds.ingest`` reads it (``decode_sparse_update`` bounded by the Gram
space, ``check_contribution``) and folded with ``Accumulator.add_sparse`` at
weight 1 (one device, one count).  Nothing here does maths of its own.

Work is handed out in *batches* of jobs; a batch folds its updates into a
partial tally (an ``Accumulator`` started from the round's empty tally) that
is merged in a fixed order, as the server merges the running sums of its
processes (``server.rounds.sums``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edge_sdk import families
from edge_sdk.trainer import Trainer
from edge_sdk.update import build_update
from fedmark.contract import decode_update, unflatten
from fedmark.contract.gram import check_contribution, gram_space
from fedmark.contract.wire import decode_sparse_update
from server.aggregation import Accumulator

__all__ = ["RoundSpec", "Job", "JobResult", "BatchResult", "device_seed", "run_batch"]


def device_seed(seed: int, round_index: int, device: int) -> int:
    """The training seed device ``device`` uses in round ``round_index`` of a run seeded ``seed`` (31 bits,
    the range ``Client.train`` draws from), so a real fleet can replay a simulated round exactly."""
    h = hashlib.sha256(f"fedmark-sim|{seed}|{round_index}|{device}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class RoundSpec:
    """What every device of one round is told (the task) plus the round's empty tally."""

    params: np.ndarray = field(repr=False)   # flat float32 global params (what a device downloads)
    clip_norm: float | None
    epochs: int | None
    learning_rate: float | None
    encoding: str
    local_noise: float
    max_examples_weight: float
    empty_tally: bytes = field(repr=False)


@dataclass(frozen=True)
class Job:
    device: int
    seed: int
    local: Mapping[str, np.ndarray] | None = None   # the recommender's personal vector kept on the device


@dataclass(frozen=True)
class JobResult:
    device: int
    loss: float
    norm: float
    upload_bytes: int
    local: dict[str, np.ndarray]


@dataclass(frozen=True)
class BatchResult:
    tally: bytes
    results: list[JobResult]


def run_batch(trainer: Trainer, data: Sequence[Any], spec: RoundSpec, jobs: Sequence[Job]) -> BatchResult:
    """Train every job's device on ``spec`` and fold the updates into one partial tally."""
    manifest = trainer.manifest
    space = gram_space(manifest.hyperparams)   # a Gram-trained model: sparse count bodies
    old = unflatten(np.asarray(spec.params, np.float32), manifest.params)
    acc = Accumulator.from_bytes(spec.empty_tally)
    out: list[JobResult] = []
    for job in jobs:
        result = trainer.train(old, data[job.device], local=job.local, epochs=spec.epochs, lr=spec.learning_rate,
                               seed=job.seed)
        prepared = families.prepared_update(trainer, data[job.device], job.seed) or build_update(
            result.params, old, manifest.params, clip_norm=spec.clip_norm, num_examples=result.num_examples,
            encoding=spec.encoding, local_noise=spec.local_noise, rng=np.random.default_rng(job.seed))
        within = prepared.within_clip if prepared.clip_norm is not None else None
        if space is None:
            vec, _enc = decode_update(prepared.body, manifest.num_params)   # what the server reads off the wire
            weight = min(float(prepared.num_examples), spec.max_examples_weight)
            acc.add(vec, weight=weight, within_clip=within)
        else:
            idx, val = decode_sparse_update(prepared.body, space.num_values, space.max_nnz)
            check_contribution(idx, val, space.items)
            acc.add_sparse(idx, val, weight=1.0, within_clip=within)
        out.append(JobResult(job.device, float(result.loss), float(prepared.norm), len(prepared.body),
                             {k: np.asarray(v) for k, v in result.local.items()}))
    return BatchResult(acc.to_bytes(), out)
