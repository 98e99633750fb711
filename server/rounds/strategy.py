"""Round policy, kept apart from the maths (Flower's ``Strategy`` idea).

A strategy answers *when* and *with what weight*: how many tasks to hand out,
when a round is ready to aggregate, what happens at its deadline, whether an
update is too stale, and the per-update weight multiplier.  It never touches
the database or the aggregation maths; ``server.rounds.service`` asks it and
does the bookkeeping, so a new policy is a small class.

* :class:`SyncStrategy` - synchronous rounds: up to ``goal x over_select``
  tasks; the round closes as soon as ``goal`` updates are in, or at its
  deadline if at least ``min_clients`` are; below that it is abandoned and a
  new round opens.  Updates must be computed on the round's version.
* :class:`FedBuffStrategy` - asynchronous buffered aggregation (Nguyen et al.,
  "Federated Learning with Buffered Asynchronous Aggregation", AISTATS 2022):
  one long-lived round; every ``buffer_size`` accepted updates are folded into
  a new version; an update computed on version v arriving when the model is at
  version V has staleness s = V - v, is refused if s > ``max_staleness``, and
  otherwise weighted by ``(1 + s) ** -staleness_power`` (1/sqrt(1+s) by default).
"""
from __future__ import annotations

from dataclasses import dataclass

from server.rounds.config import TrainingConfig


@dataclass(frozen=True)
class RoundPlan:
    goal: int
    min_clients: int
    task_cap: int
    deadline: float | None


@dataclass(frozen=True)
class RoundView:
    """What a strategy may look at: the round's counters and times."""

    version: int
    goal: int
    min_clients: int
    accepted: int
    buffered: int
    deadline: float | None


class StaleUpdate(Exception):
    """The update was computed on a version the strategy no longer accepts; the message says why."""


class Strategy:
    mode = ""

    def __init__(self, cfg: TrainingConfig) -> None:
        self.cfg = cfg

    def plan(self, now: float) -> RoundPlan:
        raise NotImplementedError

    def task_deadline(self, rnd: RoundView, now: float) -> float:
        raise NotImplementedError

    def check_version(self, rnd: RoundView, task_version: int, sent_version: int) -> int:
        """Validate the update's base version; returns its staleness (raises :class:`StaleUpdate`)."""
        raise NotImplementedError

    def ready(self, rnd: RoundView) -> bool:
        """Aggregate now?"""
        raise NotImplementedError

    def at_deadline(self, rnd: RoundView, now: float) -> str | None:
        """``"close"``, ``"abandon"`` or None (nothing to do yet)."""
        return None

    def fold_size(self) -> int | None:
        """How many stored updates one aggregation takes (None: all of the round's)."""
        return None

    def weight_factor(self, staleness: int) -> float:
        return 1.0

    @property
    def closes_round(self) -> bool:
        """Does an aggregation end the round (sync) or keep it open (buffered)?"""
        return True


class SyncStrategy(Strategy):
    mode = "sync"

    def plan(self, now: float) -> RoundPlan:
        c = self.cfg
        return RoundPlan(goal=c.goal, min_clients=c.min_clients, task_cap=c.task_cap, deadline=now + c.deadline_s)

    def task_deadline(self, rnd: RoundView, now: float) -> float:
        assert rnd.deadline is not None
        return rnd.deadline

    def check_version(self, rnd: RoundView, task_version: int, sent_version: int) -> int:
        if sent_version != rnd.version:
            raise StaleUpdate(f"this round trains version {rnd.version}, the update was computed on version "
                              f"{sent_version}; request a new task (POST /v1/tasks)")
        return 0

    def ready(self, rnd: RoundView) -> bool:
        return rnd.accepted >= rnd.goal

    def at_deadline(self, rnd: RoundView, now: float) -> str | None:
        if rnd.deadline is None or now < rnd.deadline:
            return None
        return "close" if rnd.accepted >= rnd.min_clients else "abandon"


class FedBuffStrategy(Strategy):
    mode = "async"

    def plan(self, now: float) -> RoundPlan:
        k = self.cfg.buffer_size
        return RoundPlan(goal=k, min_clients=k, task_cap=0, deadline=None)

    def task_deadline(self, rnd: RoundView, now: float) -> float:
        return now + self.cfg.deadline_s

    def check_version(self, rnd: RoundView, task_version: int, sent_version: int) -> int:
        if sent_version != task_version:
            raise StaleUpdate(f"the task was for version {task_version}, the update says version {sent_version}; "
                              "upload the update computed for the task you were given")
        staleness = rnd.version - task_version
        if staleness > self.cfg.max_staleness:
            raise StaleUpdate(f"the update was computed on version {task_version}; the model is now at version "
                              f"{rnd.version} (staleness {staleness} > max_staleness {self.cfg.max_staleness}); "
                              "request a new task")
        return staleness

    def ready(self, rnd: RoundView) -> bool:
        return rnd.buffered >= self.cfg.buffer_size

    def fold_size(self) -> int | None:
        return self.cfg.buffer_size

    def weight_factor(self, staleness: int) -> float:
        return float((1.0 + staleness) ** -self.cfg.staleness_power)

    @property
    def closes_round(self) -> bool:
        return False


def strategy_for(cfg: TrainingConfig) -> Strategy:
    return SyncStrategy(cfg) if cfg.mode == "sync" else FedBuffStrategy(cfg)
