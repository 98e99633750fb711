"""Turn a demo run's results into a report a marketer can open: HTML + PNG plots + JSON.

The JSON is the source of truth (every figure in the HTML comes from it), so a
script or a test can read the same numbers a person sees.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Mapping

PLOTS = ("learning_curves", "by_region", "epsilon", "kpis")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _table(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _save(fig: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_learning_curves(results: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    curves = results.get("curves", {})
    if not curves:
        return False
    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(6 * max(1, len(curves)), 4), squeeze=False)
    for ax, (title, series) in zip(axes[0], curves.items()):
        for name, pts in series.get("runs", {}).items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
        for name, val in series.get("baselines", {}).items():
            ax.axhline(val, linestyle="--", linewidth=1, label=f"{name} ({val:.3f})", color="grey")
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_ylabel(series.get("metric", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_by_region(results: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    regions = results.get("by_region", {})
    if not regions:
        return False
    fig, axes = plt.subplots(1, len(regions), figsize=(6 * len(regions), 4), squeeze=False)
    for ax, (title, vals) in zip(axes[0], regions.items()):
        names = list(vals["values"])
        ax.bar(names, [vals["values"][n] for n in names], color="#3b7dd8")
        ax.set_title(title)
        ax.set_ylabel(vals.get("metric", ""))
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _plot_epsilon(results: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    eps = results.get("epsilon", {})
    if not eps:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in eps.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
    ax.set_xlabel("published version (round)")
    ax.set_ylabel(f"ε at δ={results.get('delta', '1e-5')}")
    ax.set_title("privacy spent")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_kpis(results: Mapping[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt

    kpis = results.get("kpis", {})
    numeric = {k: v["value"] for k, v in kpis.items() if isinstance(v, Mapping) and isinstance(v.get("value"), (int, float))}
    if not numeric:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(numeric) + 1))
    names = list(numeric)
    ax.barh(names, [numeric[n] for n in names], color="#2a9d8f")
    for i, n in enumerate(names):
        ax.text(numeric[n], i, f" {numeric[n]:.3g}", va="center", fontsize=8)
    ax.set_title("KPIs")
    ax.invert_yaxis()
    return _save(fig, path)


_PLOTTERS = {"learning_curves": _plot_learning_curves, "by_region": _plot_by_region,
             "epsilon": _plot_epsilon, "kpis": _plot_kpis}

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#555;font-size:.9em}"""


def write_report(results: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write results.json, one PNG per plot that has data, and index.html; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
    imgs = [name for name in PLOTS if _PLOTTERS[name](results, out / f"{name}.png")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>fedmark demo report</title>"
             f"<style>{_CSS}</style></head><body><h1>fedmark demo report</h1>"]
    if results.get("summary"):
        parts.append(f"<p>{html.escape(str(results['summary']))}</p>")
    for section, rows in results.get("tables", {}).items():
        parts.append(f"<h2>{html.escape(section)}</h2>{_table(rows)}")
    for name in imgs:
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img src='{name}.png' alt='{name}'>")
    if results.get("notes"):
        parts.append("<h2>notes</h2><ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in results["notes"]) + "</ul>")
    parts.append("<p class='note'>All figures are also in results.json beside this page.</p></body></html>")
    page = out / "index.html"
    page.write_text("".join(parts))
    return page
