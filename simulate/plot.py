"""The learning-curve figure of an assessment: federated per round against the centralized line.

Why drawn from the results document only: a figure in a report must be
regenerable from ``results.json`` (no numbers typed by hand), so this module
reads nothing else.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["plot_curve"]


def plot_curve(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a PNG: the federated curve, the centralized result (band = its bootstrap interval) and the baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = doc["metric"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    xs = [p["round"] for p in doc["curve"]]
    ax.plot(xs, [p[metric] for p in doc["curve"]], marker="o", ms=3, label="federated")
    central = doc["runs"].get("centralized")
    if central:
        ax.axhline(central[metric], color="tab:green", ls="--", label={"propensity": "centralized (converged)",
                   "ease": "centralized (same model, pooled)"}.get(doc["family"], "centralized (equal user steps)"))
        ci = central.get(f"{metric}_ci")
        if ci:
            ax.axhspan(ci[0], ci[1], color="tab:green", alpha=0.12)
    fed_ci = doc["runs"]["federated"].get(f"{metric}_ci")
    if fed_ci and xs:
        ax.errorbar([xs[-1]], [doc["runs"]["federated"][metric]], yerr=[[doc["runs"]["federated"][metric] - fed_ci[0]],
                    [fed_ci[1] - doc["runs"]["federated"][metric]]], color="tab:blue", capsize=4)
    local = doc["runs"].get("local_only")
    if local:
        ax.axhline(local[metric], color="tab:gray", ls=":", label="local-only (mean)")
    for name, base in (doc.get("baseline") or {}).items():
        if metric in base:
            ax.axhline(base[metric], color="tab:red", ls="-.", lw=1, label=name.replace("_", " "))
    eps = doc.get("epsilon")
    ax.set_title(f"{doc['family']}: {metric} per round" + (f" (ε = {eps:.2f})" if eps else ""))
    ax.set_xlabel("round")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
