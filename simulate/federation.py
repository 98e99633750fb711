"""The federated run: rounds of device work folded by the server's own aggregation pipeline.

Why it mirrors ``server.rounds.aggregate._fold`` call for call: ``fedmark
simulate`` is the assessment a team runs *before* committing a fleet, so the
version it predicts must be the version the server would publish.  The
training configuration is parsed and validated by ``server.rounds.config``
(the document of ``PUT /v1/models/{name}/training``, same errors), the
pipeline comes from it, and each round is the flat (one-cell) fold:
``PartitionedAggregator.start`` -> one ``Accumulator.add`` per update (in
:mod:`simulate.client`) -> ``release`` with the round's seeded noise ->
``combine`` (next clip norm, privacy ledger, epsilon) -> the server
optimizer's ``next``.  Only who trains when is simulated: the sync strategy's
selection (``goal`` x ``over_select`` tasks, dropouts, the first ``goal``
uploads count, a round short of ``min_clients`` is abandoned).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fedmark.contract import Manifest, flatten, unflatten
from server.aggregation import Accumulator, PartitionedAggregator, PipelineState, PrivacyBudgetExceeded
from server.errors import ApiError
from server.rounds.aggregate import round_seed
from server.rounds.config import TrainingConfig
from simulate.client import Job, RoundSpec, device_seed
from simulate.engines import Engine, split

__all__ = ["ConfigError", "FederationSettings", "RoundLog", "FederatedRun", "load_config", "run_federated"]


class ConfigError(ValueError):
    """The training configuration or a run setting is invalid; the message names the key or flag."""


def load_config(doc: Mapping[str, Any], *, devices_per_round: int | None = None) -> TrainingConfig:
    """The server's own validation of a training configuration (``--devices-per-round`` overrides ``goal``)."""
    d = dict(doc)
    if devices_per_round is not None:
        if devices_per_round < 1:
            raise ConfigError(f"--devices-per-round must be >= 1, got {devices_per_round}")
        d["goal"] = devices_per_round
        d["min_clients"] = min(int(d.get("min_clients", max(1, devices_per_round // 2))), devices_per_round)
    try:
        cfg = TrainingConfig.from_json(d)
    except ApiError as exc:
        raise ConfigError(f"--config: {exc.message}") from exc
    if cfg.mode != "sync":
        raise ConfigError("--config: simulate runs synchronous rounds; set \"mode\": \"sync\" (FedBuff is not simulated)")
    if cfg.robust is not None:
        raise ConfigError("--config: robust aggregation keeps every update; simulate folds on arrival: set robust to null")
    return cfg


@dataclass(frozen=True)
class FederationSettings:
    rounds: int
    dropout: float = 0.0
    seed: int = 0
    eval_every: int = 5
    #: Noise seed of round r (0-based); default: the server's rule with the run seed as secret.
    noise_seed: Callable[[int], int] | None = None

    def check(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.rounds}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.eval_every < 1:
            raise ConfigError(f"--eval-every must be >= 1, got {self.eval_every}")


@dataclass
class RoundLog:
    round: int
    state: str                  # "closed" | "abandoned"
    contributors: int
    dropped: int
    clip_norm: float | None
    epsilon: float | None
    upload_bytes: int
    download_bytes: int
    mean_loss: float | None


@dataclass
class FederatedRun:
    params: list[np.ndarray]
    state: PipelineState
    rounds: list[RoundLog] = field(default_factory=list)
    curve: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    seconds: float = 0.0
    train_seconds: float = 0.0
    updates: int = 0
    example_passes: float = 0.0   # sum over accepted updates of examples x local epochs
    epsilon: float | None = None
    stopped: str | None = None
    locals_: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    contributors: list[list[int]] = field(default_factory=list)   # Gram rounds: whose counts each published sum holds

    @property
    def upload_bytes(self) -> int:
        return sum(r.upload_bytes for r in self.rounds)

    @property
    def download_bytes(self) -> int:
        return sum(r.download_bytes for r in self.rounds)


def run_federated(engine: Engine, manifest: Manifest, init: Sequence[np.ndarray], cfg: TrainingConfig,
                  settings: FederationSettings, sizes: Sequence[int],
                  evaluate: Callable[[list[np.ndarray]], dict[str, Any]] | None = None,
                  progress: Callable[..., Any] | None = None, *, state: PipelineState | None = None,
                  first_round: int = 0, locals_: dict[int, dict[str, np.ndarray]] | None = None) -> FederatedRun:
    """Run ``settings.rounds`` sync rounds over devices ``0..len(sizes)-1`` (``sizes``: their example counts).

    A schedule (e.g. a server learning rate dropped after round 25) is what an admin does with a new
    ``PUT /v1/models/{name}/training``: continue from the previous run's ``params``, its ``state`` with the
    optimizer forgotten (``PipelineState.without_optimizer``, as the server resets it on a new config), its
    devices' personal state ``locals_``, and ``first_round`` = the rounds already run.
    """
    settings.check()
    pipe = cfg.pipeline()
    parted = PartitionedAggregator(pipe.aggregator)
    params = flatten(list(init)).astype(np.float32)
    if state is None:
        state = pipe.initialize(params)
    elif state.optimizer.step == 0 and not state.optimizer.slots:
        state = PipelineState(state.aggregator, pipe.optimizer.initialize(params))
    n_dev = len(sizes)
    if n_dev < cfg.min_clients:
        raise ConfigError(f"the partition has {n_dev} devices, fewer than min_clients={cfg.min_clients}: "
                          "lower --devices-per-round or choose a finer partition")
    locals_ = {} if locals_ is None else locals_
    epochs = cfg.hyperparams.get("epochs")
    lr = cfg.hyperparams.get("learning_rate")
    local_epochs = int(epochs if epochs is not None else manifest.hyperparams.get("epochs", 1))
    rng = np.random.default_rng(settings.seed if first_round == 0 else [settings.seed, first_round])
    noise_seed = settings.noise_seed or (lambda r: round_seed(f"sim-{settings.seed}", f"round-{r}", 0))
    run = FederatedRun(list(init), state, locals_=locals_)
    t0 = time.perf_counter()
    if evaluate is not None:
        run.curve.append((0, evaluate(list(init))))
    bar = progress(total=settings.rounds, desc="federated", unit="round") if progress else None
    for r in range(first_round, first_round + settings.rounds):
        try:
            pipe.check_budget(state)
        except PrivacyBudgetExceeded as exc:
            run.stopped = str(exc)
            break
        cap = min(cfg.task_cap, n_dev)
        chosen = rng.choice(n_dev, cap, replace=False)
        drops = rng.random(cap) < settings.dropout
        survivors = [int(d) for d, dropped in zip(chosen, drops) if not dropped][:cfg.goal]
        download = cap * manifest.num_params * 4  # every task holder downloads the version
        log = RoundLog(r + 1, "abandoned", 0, int(drops.sum()), pipe.clip_norm(state), run.epsilon, 0, download, None)
        if len(survivors) >= cfg.min_clients:
            acc = parted.start(state.aggregator, state.aggregator.privacy, manifest.num_params)
            spec = RoundSpec(params, pipe.clip_norm(state), epochs, lr, cfg.encoding, cfg.local_noise,
                             cfg.max_examples_weight, acc.to_bytes())
            jobs = [Job(d, device_seed(settings.seed, r, d), locals_.get(d)) for d in survivors]
            t1 = time.perf_counter()
            batches = engine.run(spec, split(jobs, engine.workers))
            run.train_seconds += time.perf_counter() - t1
            losses = []
            for b in batches:
                acc.merge(Accumulator.from_bytes(b.tally))
                for res in b.results:
                    if res.local:
                        locals_[res.device] = res.local
                    log.upload_bytes += res.upload_bytes
                    losses.append(res.loss)
            rel = parted.release(state.aggregator, state.aggregator.privacy, None, acc,
                                 np.random.default_rng(noise_seed(r)))
            res_, eps = parted.combine(state.aggregator, [rel], {None: rel.privacy}, cfg.delta, manifest.num_params)
            opt_state, new = pipe.optimizer.next(state.optimizer, params, res_.delta)
            params = np.asarray(new, dtype=np.float32)  # a published version is stored as float32
            state = PipelineState(res_.state, opt_state)
            run.updates += len(survivors)
            run.example_passes += sum(float(sizes[d]) for d in survivors) * local_epochs
            run.epsilon = eps if eps is not None and math.isfinite(eps) else run.epsilon
            log.state, log.contributors, log.epsilon = "closed", len(survivors), run.epsilon
            log.mean_loss = float(np.nanmean(losses)) if losses else None
        run.rounds.append(log)
        if evaluate is not None and ((r + 1) % settings.eval_every == 0 or r + 1 == first_round + settings.rounds):
            m = evaluate(unflatten(params, manifest.params))
            run.curve.append((r + 1, m))
            if bar is not None:
                bar.set_postfix({k: f"{v:.3f}" for k, v in m.items() if isinstance(v, float)})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    run.params = unflatten(params, manifest.params)
    run.state = state
    run.seconds = time.perf_counter() - t0
    return run
