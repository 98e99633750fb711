"""docs/TASKS.md is what bench/task_figures.py renders from its committed results file (no figure typed by hand)."""
from __future__ import annotations

import json
from pathlib import Path

from bench import task_figures

ROOT = Path(__file__).resolve().parents[2]


def test_tasks_doc_is_rendered_from_the_results_file():
    results = json.loads((ROOT / task_figures.RESULTS).read_text())
    assert [(r["task"], r["embed"]) for r in results] == [("regression", {}), ("regression", {"country": 4}),
                                                          ("multiclass", {})]
    doc = task_figures.render(results, "python bench/task_figures.py --out docs/TASKS.md")
    assert doc == (ROOT / "docs" / "TASKS.md").read_text()
    # federated beats the constant baselines on every task (the figures the README's claim rests on)
    for r in results:
        key = "mae" if r["task"] == "regression" else "accuracy"
        best = min if key == "mae" else max
        base = best(m[key] for m in r["baselines"].values())
        assert (r["federated"][key] < base) if key == "mae" else (r["federated"][key] > base), r["task"]
