"""Turn a demo run's results into a report a marketer can open: HTML + PNG plots + JSON.

The JSON is the source of truth (every figure in the HTML comes from it), so a
script or a test can read the same numbers a person sees.  The page is written
for a marketer: the verdict first (is each model better than what the team
would use instead, by how much, with what privacy), then KPI cards in plain
units, ε in one sentence, plots with one unit per axis, and the tables with
readable column names.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["write_report", "render_html", "verdicts", "kpi_cards", "PLOTS"]

PLOTS = ("learning_curves", "by_region", "epsilon")


def _save(fig: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_learning_curves(results: Mapping[str, Any], path: Path) -> bool:
    """Each run's curve with its 95 % band, and each baseline's line with its interval.

    A point is ``[round, value]`` or ``[round, value, low, high]``; without the band a reader
    cannot tell a round-to-round wiggle (±0.014 HR@10 on 1,000 users) from progress.
    """
    import matplotlib.pyplot as plt

    curves = results.get("curves", {})
    if not curves:
        return False
    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(6 * max(1, len(curves)), 4), squeeze=False)
    for ax, (title, series) in zip(axes[0], curves.items()):
        for name, pts in series.get("runs", {}).items():
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
            banded = [p for p in pts if len(p) >= 4]
            if banded:  # [round, value, low, high]: the 95 % bootstrap band of that evaluation
                ax.fill_between([p[0] for p in banded], [p[2] for p in banded], [p[3] for p in banded],
                                color=line.get_color(), alpha=0.18, linewidth=0)
        bands = series.get("baseline_bands", {})
        for i, (name, val) in enumerate(series.get("baselines", {}).items()):
            color = ("black", "grey", "tab:brown")[i % 3]
            ax.axhline(val, linestyle="--", linewidth=1, label=f"{name} ({val:.3f})", color=color)
            if name in bands:
                ax.axhspan(bands[name][0], bands[name][1], color=color, alpha=0.08, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("round (shaded: 95 % bootstrap interval)")
        ax.set_ylabel(series.get("metric", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_by_region(results: Mapping[str, Any], path: Path) -> bool:
    """One dot per region and run, on an axis that spans the data (bars from 0 hid the differences)."""
    import matplotlib.pyplot as plt

    regions = results.get("by_region", {})
    if not regions:
        return False
    fig, axes = plt.subplots(1, len(regions), figsize=(6 * len(regions), 3.2), squeeze=False)
    for ax, (title, vals) in zip(axes[0], regions.items()):
        names = sorted(vals["values"], key=lambda n: vals["values"][n])
        xs = [vals["values"][n] for n in names]
        ax.hlines(range(len(names)), min(xs), xs, color="#c9d6e8", linewidth=2)
        ax.plot(xs, range(len(names)), "o", color="#2f6fde")
        for i, x in enumerate(xs):
            ax.annotate(f"{x:.3f}", (x, i), textcoords="offset points", xytext=(6, -3), fontsize=9)
        pad = max(0.01, (max(xs) - min(xs)) * 0.25)
        ax.set_xlim(min(xs) - pad, max(xs) + 2 * pad)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(vals.get("metric", "") + " (axis does not start at 0)")
        ax.grid(axis="x", alpha=0.3)
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


_PLOTTERS = {"learning_curves": _plot_learning_curves, "by_region": _plot_by_region, "epsilon": _plot_epsilon}

#: Column names of the demo's tables, as a marketer reads them.
LABELS = {"model": "model", "target": "target", "step": "step", "auc": "AUC (0.5 = random)", "lift_top_decile": "buyers in top 10 % vs random", "ece": "calibration error",
          "brier": "Brier score", "epsilon": "privacy ε", "hr@10": "next basket in top 10", "ndcg@10": "NDCG@10",
          "users": "customers evaluated", "value": "result", "met": "met", "outcome": "outcome", "detail": "detail"}

EPSILON_SENTENCE = ("ε (epsilon) caps how much any one customer's records can change what the published model "
                    "reveals: lower is more private; {eps} at δ = 10⁻⁵ is a {strength} formal guarantee, on top of "
                    "the fact that no raw record leaves a device.")


def _strength(eps: float) -> str:
    return "strong" if eps <= 1 else "moderate" if eps <= 10 else "weak"


def _cell(col: str, v: Any) -> str:
    """A value in plain units: no 16-digit floats, no 'None'."""
    if v is None or v == "":
        return "none (no DP)" if col == "epsilon" else "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if col == "lift_top_decile":
            return f"{v:.2f}×"
        if col in ("hr@10", "ndcg@10"):
            return f"{100 * v:.1f} %"
        if col == "epsilon":
            return f"{v:.1f}"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _table(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    order = list(LABELS)  # results.json stores keys sorted: show them in reading order
    cols = sorted(rows[0], key=lambda c: order.index(c) if c in order else len(order))
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c, r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _runs(results: Mapping[str, Any], family: str) -> Mapping[str, Any]:
    return results.get(family, {}).get("runs", {}) if isinstance(results.get(family), Mapping) else {}


def verdicts(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per model: is it better than what the team would use instead, by how much, with what privacy."""
    out: list[dict[str, Any]] = []
    prop = _runs(results, "propensity")
    if "federated" in prop:
        fed, dp = prop["federated"], prop.get("federated + DP", {})
        local = prop.get("local-only (mean of devices)", {}).get("lift_top_decile")
        central = prop.get("centralized", {}).get("lift_top_decile")
        lift = fed["lift_top_decile"]
        better = lift > max(1.0, local or 0.0)
        text = (f"The 10 % of customers it ranks highest hold {lift:.1f}× as many buyers as a random 10 % "
                f"(random calling: 1.0×" + (f"; each branch training alone: {local:.1f}×" if local else "") + ").")
        if dp.get("epsilon") is not None:
            text += (f" With differential privacy (ε = {dp['epsilon']:.1f}) it finds {dp['lift_top_decile']:.1f}×.")
        if central:
            text += f" A central model, which would need every raw record in one place, finds {central:.1f}×."
        out.append({"model": "Propensity to buy (Bank Marketing)", "better": better,
                    "headline": ("Better than random calling" if better else "Not better than the alternatives"),
                    "text": text})
    rec = _runs(results, "recommender")
    if "federated" in rec and "popularity" in rec:
        f, p = rec["federated"]["hr@10"], rec["popularity"]["hr@10"]
        better = f > p
        ratio = f / p if p else float("inf")
        out.append({"model": "Product recommendations (Online Retail)", "better": better,
                    "headline": "Better than best-sellers" if better else "Not better than recommending best-sellers",
                    "text": (f"For {100 * f:.1f} % of customers the next basket contains one of its 10 suggestions, "
                             f"against {100 * p:.1f} % for the 10 best-sellers ({ratio:.2f}×). " + _rec_privacy(results))})
    return out


def _rec_privacy(results: Mapping[str, Any]) -> str:
    """What leaves a device, for the recommender the run trained."""
    model = results.get("recommender", {}).get("model") if isinstance(results.get("recommender"), Mapping) else None
    if isinstance(model, Mapping) and model.get("family") == "ease":
        return (f"Purchase histories never leave the devices: each sends once which of its items were bought "
                f"together (up to {model.get('cap')}), and a pair of items counts only when at least "
                f"{model.get('k_min')} customers bought it together.")
    return "Customers' own vectors never leave their devices."


def kpi_cards(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """The KPI cards: a title, a value in plain units and one line saying what it means."""
    k = results.get("kpis", {})
    cards: list[dict[str, str]] = []
    rd = k.get("Raw Data Movement Reduction", {})
    if "records_on_devices" in rd:
        n = int(rd["records_on_devices"])
        moved = 0 if not rd.get("raw_record_bytes_moved") else None
        cards.append({"title": "Raw records moved",
                      "value": f"0 of {n:,} (100 % avoided)" if moved == 0 else
                               f"{rd['raw_record_bytes_moved']:,} B of raw records",
                      "note": "Customer records stayed on the devices; only model updates and counts travelled."})
        b = rd.get("bytes_moved", {})
        cards.append({"title": "Communication",
                      "value": f"{b.get('total', 0) / 1e6:.1f} MB",
                      "note": (f"model updates {b.get('updates', 0) / 1e6:.1f} MB and reports "
                               f"{(b.get('evaluation_reports', 0) + b.get('segment_reports', 0)) / 1e6:.2f} MB; "
                               f"copying the records centrally would be about {rd.get('centralised_bytes', 0) / 1e6:.1f}"
                               " MB (but would move the data itself)")})
    gc = k.get("Governed Training Coverage", {})
    if gc.get("value") is not None:
        cards.append({"title": "Governed training", "value": f"{100 * gc['value']:.0f} %",
                      "note": f"{gc.get('governed', 0):,} of {gc.get('contributions', 0):,} contributions were made "
                              "under a recorded policy decision."})
    prop = _runs(results, "propensity").get("federated", {})
    if prop.get("lift_top_decile") is not None:
        cards.append({"title": "Personalization lift", "value": f"{prop['lift_top_decile']:.2f}×",
                      "note": "buyers in the model's top 10 % compared with a random 10 % (held-out customers)."})
    pc = k.get("Partner Model Contribution", {})
    if isinstance(pc.get("value"), Mapping):
        parts = [f"{p}: {'n/a' if v is None else f'{100 * v:+.2f}'.replace('-', '−')}" for p, v in pc["value"].items()]
        cards.append({"title": "Partner contribution", "value": "; ".join(parts) + " AUC points",
                      "note": "change in accuracy from including each partner's data (+ helps, − the model does "
                              "as well without it)."})
    mc = k.get("Model Confidence", {})
    if mc:
        psi = mc.get("max_psi") if mc.get("max_psi") is not None else (mc.get("drift_vs_reference") or {}).get("psi")
        cause = []
        if mc.get("spread") is not None:
            cause.append(f"accuracy differs by {100 * mc['spread']:.1f} AUC points across {mc.get('regions')} regions")
        if psi is not None:
            cause.append(f"score drift PSI {psi:.2f} ({'large shift' if psi > 0.25 else 'moderate' if psi > 0.1 else 'stable'})")
        cards.append({"title": "Model confidence", "value": str(mc.get("value") or "not rated"),
                      "note": ("; ".join(cause) or mc.get("reason") or "not enough regions evaluated") + "."})
    ca = k.get("Compliant Activation Rate", {})
    if ca.get("value") is not None:
        denied = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(ca.get("denied_by_reason", {}).items()))
        cards.append({"title": "Compliant activations", "value": f"{100 * ca['value']:.0f} %",
                      "note": f"{ca.get('allowed')} of {ca.get('requests')} requests allowed"
                              + (f"; denied: {denied}" if denied else "") + "."})
    return cards


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 12px;color:#1c2733}
table{border-collapse:collapse;margin:.5em 0 1.5em;display:block;overflow-x:auto}td,th{border:1px solid #d5dbe3;
padding:4px 10px;text-align:right}th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{color:#55616e;font-size:.9em}.verdict{border-left:6px solid #2aa876;background:#f2fbf6;padding:10px 14px;margin:10px 0}
.verdict.no{border-color:#c2415b;background:#fdf3f5}.verdict h3{margin:0 0 4px;font-size:1.05em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px;margin:12px 0 20px}
.card{border:1px solid #e3e8ee;border-radius:10px;padding:10px 14px}.card h3{font-size:.8em;text-transform:uppercase;
letter-spacing:.5px;color:#6b7785;margin:0}.card .v{font-size:1.5em;font-weight:650;margin:4px 0}"""


def render_html(results: Mapping[str, Any], imgs: list[str]) -> str:
    """The page: the verdict first, then the KPI cards, ε in one sentence, the plots, then the tables."""
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'><title>fedmark demo report</title>"
             f"<style>{_CSS}</style></head><body><h1>fedmark demo report</h1>"]
    found = verdicts(results)
    if found:
        parts.append("<h2>Verdict</h2>")
        for v in found:
            parts.append(f"<div class='verdict{'' if v['better'] else ' no'}'><h3>{html.escape(v['model'])}: "
                         f"{html.escape(v['headline'])}</h3>{html.escape(v['text'])}</div>")
    eps = [r.get("epsilon") for r in _runs(results, "propensity").values() if isinstance(r.get("epsilon"), float)]
    if eps:
        parts.append(f"<p class='note'>{html.escape(EPSILON_SENTENCE.format(eps=f'ε = {max(eps):.1f}', strength=_strength(max(eps))))}</p>")
    cards = kpi_cards(results)
    if cards:
        parts.append("<h2>Key figures</h2><div class='cards'>" + "".join(
            f"<div class='card'><h3>{html.escape(c['title'])}</h3><div class='v'>{html.escape(c['value'])}</div>"
            f"<div class='note'>{html.escape(c['note'])}</div></div>" for c in cards) + "</div>")
    if results.get("summary"):
        parts.append(f"<p class='note'>{html.escape(str(results['summary']))}</p>")
    for name in imgs:
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img src='{name}.png' alt='{name}'>")
    for section, rows in results.get("tables", {}).items():
        if section == "KPIs":
            continue  # shown as cards above
        parts.append(f"<h2>{html.escape(section)}</h2>{_table(rows)}")
    if results.get("notes"):
        parts.append("<h2>notes</h2><ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in results["notes"]) + "</ul>")
    parts.append("<p class='note'>Every figure is also in results.json beside this page.</p></body></html>")
    return "".join(parts)


def write_report(results: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write results.json, one PNG per plot that has data, and index.html; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
    imgs = [name for name in PLOTS if _PLOTTERS[name](results, out / f"{name}.png")]
    page = out / "index.html"
    page.write_text(render_html(results, imgs))
    return page
