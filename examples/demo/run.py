"""``fedmark demo``: both model families trained federatedly on real data, with a report.

Two sizes share one code path: ``full`` (what ``make demo`` runs, all of Bank
Marketing and every Online Retail customer) and ``fast`` (small slices and
few rounds; the integration test in ``make test`` runs it).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from examples.demo.propensity import PropensityConfig
from examples.demo.statistics import FAST_STATISTICS
from examples.demo.recommender import RecommenderConfig


@dataclass
class DemoConfig:
    propensity: PropensityConfig = field(default_factory=PropensityConfig)
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)

    @staticmethod
    def fast() -> "DemoConfig":
        return DemoConfig(
            PropensityConfig(rows=6000, rounds=6, dp_rounds=None, goal=20, eval_every=3, central_epochs=3,
                             local_only_devices=8, local_only_epochs=10, statistics=FAST_STATISTICS),
            RecommenderConfig(customers=500, rounds=4, goal=30, eval_users=150, eval_every=2, central_epochs=1,
                              ease_rounds=2, ease_items=300, ease_k_min=2, ease_rank=64))


def _progress():  # progress bars on stderr, so the summary on stdout stays clean for scripts
    from tqdm import tqdm

    def make(iterable: Any = None, **kw: Any) -> Any:
        return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, leave=True, **kw)

    return make


KPI_NAMES = {
    "raw_data_movement_reduction": "Raw Data Movement Reduction",
    "governed_training_coverage": "Governed Training Coverage",
    "personalization_lift": "Personalization Lift",
    "partner_model_contribution": "Partner Model Contribution",
    "model_confidence": "Model Confidence",
    "compliant_activation_rate": "Compliant Activation Rate",
}


def _kpis(prop: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """The six KPIs as the server computed them from its records (propensity, governed run),
    plus the recommender's lift over popularity, which this run measures on the held-out baskets."""
    server = prop.get("governance", {}).get("kpis", {})
    out: dict[str, Any] = {label: server.get(key, {"value": None}) for key, label in KPI_NAMES.items()}
    hr = rec["runs"]["federated"]["hr@10"] / max(rec["runs"]["popularity"]["hr@10"], 1e-12)
    out["Personalization Lift (recommender, HR@10 vs popularity)"] = {"value": hr}
    return out


def _kpi_rows(kpis: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, k in kpis.items():
        v = k.get("value") if isinstance(k, dict) else k
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b:.4f}" if isinstance(b, float) else f"{a}: {b}" for a, b in v.items())
        detail = {key: val for key, val in (k.items() if isinstance(k, dict) else []) if key not in ("value",)}
        rows.append({"KPI": name, "value": v if v is not None else "n/a",
                     "detail": "; ".join(f"{a}={b}" for a, b in list(detail.items())[:4])})
    return rows


def _governance_rows(g: dict[str, Any]) -> list[dict[str, Any]]:
    if not g:
        return []
    act = g.get("activation", {})
    gate = g.get("gate") or {}
    def answer(a: dict[str, Any]) -> str:
        return {200: "allowed", 403: "denied"}.get(a.get("status"), f"HTTP {a.get('status')}")

    base, cand = gate.get("baseline"), gate.get("candidate")
    auc = f"AUC {base:.3f} → {cand:.3f}" if isinstance(base, float) and isinstance(cand, float) else "AUC n/a"
    return [
        {"step": "publish gate", "outcome": "passed" if gate.get("passed") else f"refused: {', '.join(gate.get('reasons') or [])}",
         "detail": f"candidate v{g.get('current_version')} from {g.get('round_contributors')} devices, checked on "
                   f"{g.get('evaluators')} devices' own held-out data: {auc}; "
                   + ("published" if g.get("published") else "not published")},
        {"step": "activation (campaign purpose)", "outcome": answer(act.get("allowed", {})),
         "detail": f"version {act.get('allowed', {}).get('version')}"},
        {"step": "activation (credit_decisioning)", "outcome": answer(act.get("denied", {})),
         "detail": str(act.get("denied", {}).get("reason", "")).replace("_", " ")},
        {"step": "audience segments", "outcome": "ok" if isinstance(act.get("segments"), list) else "error",
         "detail": "; ".join(f"{str(s.get('segment')).replace('_', ' ')}: "
                             f"{'suppressed (below k)' if s.get('suppressed') else format(s.get('count'), ',')} records"
                             for s in act.get("segments") or [] if isinstance(s, dict))},
        {"step": "audit trail", "outcome": "intact" if g.get("audit", {}).get("ok") else "BROKEN",
         "detail": f"{g.get('audit', {}).get('entries'):,} hash-chained entries verified"},
    ]


def _bands(runs: dict[str, Any], names: dict[str, str], metric: str) -> dict[str, list[float]]:
    """Each baseline line's 95 % interval (``{label: [low, high]}``), drawn as a band under the line."""
    return {label: runs[run][f"{metric}_ci"] for label, run in names.items() if f"{metric}_ci" in runs.get(run, {})}


def run_demo(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    from examples.demo import propensity as prop_exp
    from examples.demo import recommender as rec_exp
    from examples.demo.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    # Late uploads refused with round_closed are expected under over-selection; the round
    # outcome counts them, so the SDK's per-update warning would only clutter the progress bars.
    logging.getLogger("edge_sdk").setLevel(logging.ERROR)
    t0 = time.time()
    progress = _progress()
    prop = prop_exp.run(out, out / "artifacts" / "propensity", cfg.propensity, progress)
    rec = rec_exp.run(out, out / "artifacts" / "recommender", cfg.recommender, progress)
    central_auc = prop["runs"]["centralized"]["auc"]
    fed_auc = prop["runs"]["federated"]["auc"]
    fed_hr, central_hr, pop_hr = (rec["runs"][k]["hr@10"] for k in ("federated", "centralized", "popularity"))
    # MF: the centralized run at the federated run's number of user steps; EASE is one pass over the same
    # data by construction, so its centralized run is the same-model, same-data comparison.
    equal_hr = rec["runs"].get("centralized, equal user steps", {}).get("hr@10", central_hr)
    same = "equal user steps" if "centralized, equal user steps" in rec["runs"] else "same model and data"
    # The targets of issue 13 (docs/SIMULATE.md has the sweeps behind the settings).
    targets = {
        "propensity: federated within 0.005 AUC of centralized": {"value": fed_auc - central_auc, "met": fed_auc >= central_auc - 0.005},
        "propensity: federated AUC >= 0.79": {"value": fed_auc, "met": fed_auc >= 0.79},
        f"recommender: federated >= centralized at {same} (HR@10)": {"value": fed_hr - equal_hr, "met": fed_hr >= equal_hr},
        "recommender: federated >= 1.6x popularity HR@10": {"value": fed_hr / max(pop_hr, 1e-12), "met": fed_hr >= 1.6 * pop_hr},
    }
    kpis = _kpis(prop, rec)
    results: dict[str, Any] = {
        "summary": (f"Propensity on Bank Marketing ({prop['train_rows']:,} training rows on devices, {prop['test_rows']:,} held out) "
                    f"and recommendations on Online Retail ({rec['customers']:,} customers as devices, {rec['items']:,} items), "
                    f"trained through a real fedmark server on loopback in {time.time() - t0:.0f} s."),
        "propensity": prop, "recommender": rec, "targets": targets, "kpis": kpis, "delta": 1e-5,
        "tables": {
            "Propensity (held-out split)": [
                {"model": name, **{k: r.get(k, "") for k in ("auc", "lift_top_decile", "ece", "brier", "epsilon")}}
                for name, r in prop["runs"].items()],
            "Recommender (held-out last baskets)": [
                {"model": name, "hr@10": r["hr@10"], "ndcg@10": r["ndcg@10"], "users": r["users"]}
                for name, r in rec["runs"].items()],
            "Targets": [{"target": k, "value": v["value"], "met": "yes" if v["met"] else "NO"} for k, v in targets.items()],
            "Governance (propensity, no-DP run)": _governance_rows(prop.get("governance", {})),
            "Prepare (propensity): federated statistics and readiness": prop.get("statistics", {}).get("rows", []),
            "KPIs": _kpi_rows(kpis),
        },
        "curves": {
            "propensity AUC": {"metric": "AUC", "runs": prop["curves"],
                               "baselines": {"centralized": central_auc},
                               "baseline_bands": _bands(prop["runs"], {"centralized": "centralized"}, "auc")},
            "recommender HR@10": {"metric": "HR@10", "runs": {"federated": rec["curve"]},
                                  "baselines": {"centralized": central_hr, "popularity": pop_hr},
                                  "baseline_bands": _bands(rec["runs"], {"centralized": "centralized",
                                                                         "popularity": "popularity"}, "hr@10")},
        },
        "by_region": {f"propensity AUC by region ({name})": {"metric": "AUC", "values": vals}
                      for name, vals in prop["by_region"].items()},
        "notes": [
            "Federated runs fold concurrent uploads in arrival order, so reruns agree to float rounding, not bit for bit.",
            "Centralized baselines train on the consented training rows only: the rows federated training may use.",
        ],
        "epsilon": {"propensity (DP)": prop["epsilon"]},
        "seconds": round(time.time() - t0, 1),
    }
    page = write_report(results, out / "report")
    results["report"] = str(page)
    return results


def print_summary(results: dict[str, Any]) -> None:
    print("\n" + results["summary"])
    for title, rows in results["tables"].items():
        if not rows:
            continue
        print(f"\n{title}")
        cols = list(rows[0])
        print("  " + " | ".join(f"{c:>14}" for c in cols))
        for row in rows:
            print("  " + " | ".join(f"{(f'{v:.4f}' if isinstance(v, float) else str(v)):>14}" for v in row.values()))
    print(f"\nreport: {results['report']}")
    print(f"figures: {Path(results['report']).with_name('results.json')}")


def main(out: str, fast: bool) -> int:
    results = run_demo(Path(out), DemoConfig.fast() if fast else DemoConfig())
    print_summary(results)
    missed = [k for k, t in results["targets"].items() if not t["met"]]
    if missed:  # a missed target is a finding to report, not a crash: the run itself succeeded
        print("targets missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/demo", "--fast" in sys.argv))
