"""Poisoning: 10 % of devices send scaled model-replacement updates; the defence keeps the main-task AUC.

The simulation (bench/poisoning.py) trains the exported propensity model on the
bank data through a real server, four times: clean / attacked, each without
defence (no clipping, plain FedAvg) and with it (server-side clipping +
coordinate-wise trimmed mean).  Required: with the defence the attacked run's
test AUC stays within 0.01 of the clean run after every round; without it the
same attack costs more than 0.1 AUC — the defence is what makes the
difference.  The figures are printed (``-s``) and recorded in BENCHMARKS.md.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.poisoning import run_all


@pytest.mark.slow
def test_clipping_and_trimmed_mean_hold_the_auc_under_model_replacement(tmp_path: Path, propensity_artifact: Path) -> None:
    res = run_all(tmp_path, devices=20, rounds=6, boost=20.0, art=propensity_artifact)
    print("\n" + "\n".join(f"{k:22s} " + " ".join(f"{a:.4f}" for a in v) for k, v in res.items()))
    clean, attacked = res["clean, defence"], res["attacked, defence"]
    assert clean[-1] > 0.70, "the clean federated run should learn the task"
    worst = max(abs(c - a) for c, a in zip(clean, attacked))
    assert worst <= 0.01, f"with the defence the attack moved the AUC by up to {worst:.4f}"
    damage = res["clean, no defence"][-1] - res["attacked, no defence"][-1]
    assert damage > 0.1, f"without the defence the attack should hurt (it moved the AUC by {damage:.4f})"
