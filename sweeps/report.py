"""Write the figures section of docs/SIMULATE.md from sweeps/results/*.json (no number typed by hand).

    .venv/bin/python sweeps/report.py        # rewrites the block between the results markers
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "sweeps" / "results"
DOC = ROOT / "docs" / "SIMULATE.md"
BEGIN, END = "<!-- results:begin (sweeps/report.py) -->", "<!-- results:end -->"


def _load(name: str) -> Any:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _ci(v: float, ci: list[float] | None) -> str:
    return f"{v:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def bench(doc: Any) -> list[str]:
    out = ["### Throughput: `fedmark simulate` vs Flower's Simulation Engine", "",
           f"`bench/simulate_vs_flower.py` ({doc['workload']['devices']} devices, {doc['workload']['rounds']} rounds, "
           f"{doc['workload']['workers']} workers / Ray CPUs; `sweeps/results/bench_simulate_vs_flower.json`). "
           "Client updates per second, medians of interleaved repetitions:", "",
           "| devices / round | fedmark total | fedmark warm | Flower 1.42 total | Flower warm | ratio total | ratio warm |",
           "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        f, w = r["fedmark"], r["flower"]
        out.append(f"| {r['per_round']} | {f['updates_per_s']:.0f} | {f['updates_per_s_warm']:.0f} | "
                   f"{w['updates_per_s']:.1f} | {w['updates_per_s_warm']:.1f} | {r['ratio_total']:.0f}x | "
                   f"{r['ratio_warm']:.1f}x |")
    return out + [""]


def propensity(doc: Any) -> list[str]:
    c = doc["centralized"]
    out = ["### Propensity, silo fleet (`sweeps/propensity.py`)", "",
           f"{doc['fleet']['devices']} job x month devices; centralized (same MLP, pooled consented rows): "
           f"AUC {c['auc_30']:.4f} after 30 epochs, {c['auc_40']:.4f} after 40 (best epoch {c['best']:.4f}, "
           "chosen on the test split, so optimistic).", "",
           "| local epochs | server optimizer | devices / round | clip quantile | schedule | AUC at the last round [95% CI] | best AUC (round) |",
           "|---|---|---|---|---|---|---|"]
    for r in doc.get("stage_a", []) + doc.get("stage_b", []):
        sched = f"lr x{r['drop_factor']} after {r['drop_at']}" if r.get("drop_at") else "-"
        out.append(f"| {r['epochs']} | {r['optimizer']} | {r['per_round']} | {r['quantile']} | {sched} | "
                   f"{_ci(r['auc'], r['auc_ci'])} | {r['best_auc']:.4f} ({r['best_round']}) |")
    s = doc.get("stage_c")
    if s:
        out += ["", f"Winner over seeds 0-2: AUC {s['mean']:.4f} (sd {s['std']:.4f}), gap to centralized "
                f"(30 epochs) {s['gap_to_centralized_30']:.4f}; target (>= 0.79, within 0.005): "
                f"**{'met' if s['meets_target'] else 'missed'}**."]
    return out + [""]


def cross_device(doc: Any) -> list[str]:
    out = ["### Propensity, cross-device with DP (`sweeps/propensity_cross_device.py`)", "",
           f"{doc['fleet']['devices']} one-record devices, {doc['per_round']} a round unless the point says "
           f"otherwise, {doc['rounds']} rounds; "
           f"centralized AUC {doc['centralized']['auc_30']:.4f}.", "",
           "| point | AUC [95% CI] | epsilon (delta 1e-5) | final clip norm | gap to centralized | target |",
           "|---|---|---|---|---|---|"]
    for p in doc["points"]:
        eps = "-" if p["epsilon"] is None else f"{p['epsilon']:.2f}"
        clip = "-" if p["final_clip_norm"] is None else f"{p['final_clip_norm']:.3f}"
        out.append(f"| {p['name']} | {_ci(p['auc'], p['auc_ci'])} | {eps} | {clip} | {p['gap_to_centralized']:.4f} | "
                   f"{'met' if p['meets_target'] else '-'} |")
    return out + [""]


def recommender(doc: Any) -> list[str]:
    pop = doc["popularity"]
    out = ["### Recommender, federated (`sweeps/recommender.py`)", "",
           f"All {pop['users']} held-out users; popularity HR@10 {_ci(pop['hr@10'], pop['hr@10_ci'])} "
           f"(1.6x = {1.6 * pop['hr@10']:.4f}).", "",
           f"| run | recon steps | HR@10 at round {doc['rounds']}, all users [95% CI] | x popularity | minus centralized "
           "at equal user steps | curve at rounds 50 / 100 / 200 (1,000 users) |",
           "|---|---|---|---|---|---|"]
    for p in doc["points"]:
        at = dict((int(r), v) for r, v in p["curve"])
        marks = " / ".join(f"{at[r]:.3f}" if r in at else "-" for r in (50, 100, 200))
        out.append(f"| {p['name']} | {p['recon_steps']} | {_ci(p['hr@10'], p['hr@10_ci'])} | {p['vs_popularity']:.2f} | "
                   f"{p['vs_centralized_equal_steps']:+.4f} | {marks} |")
    out += ["", "| centralized MF | HR@10 [95% CI] | user steps |", "|---|---|---|"]
    for k, v in doc["centralized"].items():
        out.append(f"| {k} | {_ci(v['hr@10'], v['hr@10_ci'])} | {v['user_steps']} |")
    return out + [""]


def models(doc: Any) -> list[str]:
    out = ["### Recommender model candidates, central (`sweeps/recommender_models.py`)", "",
           f"{doc['customers']} customers, {doc['items']} items, all {doc['held_out_users']} held-out users.", "",
           "| model | parameters | HR@10 [95% CI] | x popularity | CI above 1.6x popularity |", "|---|---|---|---|---|"]
    for m in doc["models"]:
        params = ", ".join(f"{k} {v}" for k, v in m["params"].items()) or "-"
        out.append(f"| {m['model']} | {params} | {_ci(m['hr@10'], m['hr@10_ci'])} | {m['vs_popularity']:.2f} | "
                   f"{'yes' if m['beats_1.6x_popularity'] else 'no'} |")
    return out + [""]


def demo_budget(doc: Any) -> list[str]:
    out = ["### Propensity within the demo's budget (`sweeps/propensity_demo_budget.py`)", "",
           f"The demo's fleet ({doc['fleet']['devices']} job x month devices), {doc['rounds']} rounds; centralized "
           f"(30 epochs) {doc['centralized_30']:.4f}; target >= 0.79 and within 0.005 of it.", "",
           "| local epochs | device lr | server optimizer | devices a round | lr decay | AUC at 60 / 100 / 120 rounds | "
           "final AUC [95% CI] | meets target |", "|---|---|---|---|---|---|---|---|"]
    for p in doc["points"]:
        at = dict((r, a) for r, a in p["curve"])
        decay = f"x{p['drop_factor']} at {p['drop_at']}" if p.get("drop_at") else "-"
        name = p["optimizer"] + (f" ({p['reference']})" if p.get("reference") else "")
        out.append(f"| {p['epochs']} | {p.get('local_lr', 0.1)} | {name} | {p['per_round']} | {decay} | "
                   + " / ".join(f"{at[r]:.4f}" if r in at else "-" for r in (60, 100, 120))
                   + f" | {_ci(p['auc'], p['auc_ci'])} | {'yes' if p['meets_target'] else 'no'} |")
    return out + [""]


def ease(doc: Any) -> list[str]:
    par = doc["production_path_parity"]
    pop = doc["popularity"]
    out = ["### Federated EASE: catalogue, device cap, k-threshold, lambda, rank (`sweeps/recommender_ease.py`)", "",
           f"{doc['devices']} consented devices, {doc['items']} items, all {doc['held_out_users']} held-out users; "
           f"popularity {_ci(pop['hr@10'], pop['hr@10_ci'])}.  Production path (sparse bodies -> "
           f"`Accumulator.add_sparse`, {par['items']} items, cap {par['cap']}): the summed Gram "
           f"{'equals' if par['equal'] else 'DIFFERS from'} the central X'X (max |difference| "
           f"{par['max_abs_difference']:g}).  k > 1 projects the thresholded Gram onto the PSD cone; the rows "
           "without it show why.", "",
           "| items | cap | k | lambda | rank | PSD repair | HR@10 [95% CI] | x popularity | body bytes mean / max | "
           "published floats |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in doc["points"]:
        out.append(f"| {p['items']} | {p['cap'] or 'none'} | {p['k']} | {p['lambda']:g} | {p['rank'] or 'dense'} | "
                   f"{'yes' if p['psd_repair'] else 'no'} | {_ci(p['hr@10'], p['hr@10_ci'])} | "
                   f"{p['vs_popularity']:.2f} | {p['body_bytes_mean']:,.0f} / {p['body_bytes_max']:,} | "
                   f"{p['published_floats']:,} |")
    return out + [""]


def assessment(doc: Any) -> list[str]:
    r = doc["runs"]
    f, c, lo = r["federated"], r["centralized"], r["local_only"]
    return ["### One `fedmark simulate` assessment (`sweeps/results/simulate_propensity.json`, plot beside it)", "",
            "| run | AUC [95% CI] |", "|---|---|",
            f"| federated ({f['rounds']} rounds, {f['updates']} updates) | {_ci(f['auc'], f['auc_ci'])} |",
            f"| centralized, {c['epochs']} epochs | {_ci(c['auc'], c['auc_ci'])} |",
            f"| centralized at equal data passes ({c['at_equal_passes']['epochs']} epochs) | "
            f"{c['at_equal_passes']['auc']:.4f} |",
            f"| local-only (mean of {lo['devices']} devices) | {lo['auc']:.4f} |", "",
            f"Bytes moved: {f['upload_bytes'] / 1e6:.1f} MB up, {f['download_bytes'] / 1e6:.1f} MB down; "
            f"time {doc['seconds']:.0f} s for all three runs.", ""]


def ease_assessment(doc: Any) -> list[str]:
    """``fedmark simulate`` on federated EASE at the demo's settings, beside the demo's published figure."""
    r, pop, m, st = doc["runs"], doc["baseline"]["popularity"], doc["setup"]["model"], doc["settings"]
    f, c = r["federated"], r["centralized"]
    out = ["### `fedmark simulate` on federated EASE at the demo's settings (`sweeps/results/simulate_ease.json`)", "",
           "```", doc["command"], "```", "",
           f"{doc['setup']['devices']} consented devices with a catalogue item, {st['rounds']} rounds of fresh devices "
           f"({st['devices_per_round']} a round, dropout {st['dropout']}, {st['engine']} engine); catalogue "
           f"{m['items']} items, cap {m['cap']}, k {m['k_min']}, lambda {m['lambda']:g}, rank {m['rank']}; all "
           f"{f['users']} held-out users.", "",
           "| run | HR@10 [95% CI] | x popularity |", "|---|---|---|",
           f"| federated ({f['participating']} devices' counts) | {_ci(f['hr@10'], f['hr@10_ci'])} | "
           f"{f['hr@10'] / pop['hr@10']:.2f} |",
           f"| centralized, same model and devices pooled (max weight difference {c['max_abs_weight_difference']:g}) | "
           f"{_ci(c['hr@10'], c['hr@10_ci'])} | {c['hr@10'] / pop['hr@10']:.2f} |",
           f"| popularity | {_ci(pop['hr@10'], pop['hr@10_ci'])} | 1.00 |"]
    demo = _demo_recommender()
    if demo is not None:
        d = demo["runs"]["federated"]
        out.append(f"| the demo's federated run, over HTTP (`examples/demo/published_results.json`, {d['participating']} "
                   f"devices) | {_ci(d['hr@10'], d['hr@10_ci'])} | "
                   f"{d['hr@10'] / demo['runs']['popularity']['hr@10']:.2f} |")
    out += ["", "Curve (HR@10 on the demo's 1,000 curve users): " + ", ".join(
        f"round {p['round']} {p['hr@10']:.3f}" for p in doc["curve"]) + ".",
        f"Bytes moved: {f['upload_bytes'] / 1e6:.1f} MB up (sparse bodies), {f['download_bytes'] / 1e9:.2f} GB down "
        f"(every task holder downloads the published factors); federated {f['seconds']:.1f} s "
        f"(devices' contributions and the fold {f['train_seconds']:.1f} s), {doc['seconds']:.1f} s with the baselines.",
        ""]
    return out


def _demo_recommender() -> Any:
    p = ROOT / "examples" / "demo" / "published_results.json"
    return json.loads(p.read_text()).get("recommender") if p.exists() else None


def main() -> None:
    parts: list[str] = []
    for name, fn in (("bench_simulate_vs_flower", bench), ("simulate_propensity", assessment),
                     ("simulate_ease", ease_assessment),
                     ("propensity", propensity), ("propensity_demo_budget", demo_budget),
                     ("propensity_cross_device", cross_device),
                     ("recommender_models", models), ("recommender_ease", ease), ("recommender", recommender)):
        doc = _load(name)
        if doc is not None:
            parts += fn(doc)
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + BEGIN + "\n\n" + "\n".join(parts) + "\n" + END + tail)


if __name__ == "__main__":
    main()
