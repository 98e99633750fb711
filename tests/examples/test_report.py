"""The demo report, read as a marketer reads it.

Input: ``fixtures/results_fast.json``, the results.json of a real ``fedmark demo --fast`` run
(seed 0).  The page must open with the verdict, show KPIs as cards in plain units (the data-movement
KPI as records moved, communication apart), explain ε in one sentence, and never show raw column
names, Python reprs or long floats.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from examples.demo.report import verdicts, write_report

RESULTS = json.loads((Path(__file__).parent / "fixtures" / "results_fast.json").read_text())


def visible_text(page: Path) -> str:
    body = page.read_text().split("</style>", 1)[1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_report_files(tmp_path):
    page = write_report(RESULTS, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["tables"] == RESULTS["tables"]
    for name in ("learning_curves", "by_region", "epsilon"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not (tmp_path / "kpis.png").exists(), "the KPIs have different units: cards, not one chart"
    assert page.exists()


def test_the_verdict_comes_first_and_answers_the_question(tmp_path):
    text = visible_text(write_report(RESULTS, tmp_path))
    assert text.index("Verdict") < text.index("Key figures") < text.index("Propensity (held-out split)")
    prop, rec = verdicts(RESULTS)
    runs = RESULTS["propensity"]["runs"]
    # better than random calling and than each branch alone, by the measured lift, with the DP figure and its ε
    assert prop["better"] and f"{runs['federated']['lift_top_decile']:.1f}× as many buyers" in prop["text"]
    assert f"ε = {runs['federated + DP']['epsilon']:.1f}" in prop["text"]
    r = RESULTS["recommender"]["runs"]
    assert rec["better"] == (r["federated"]["hr@10"] > r["popularity"]["hr@10"])
    assert rec["better"] and "Better than best-sellers" in text  # this run's federated EASE beats popularity
    model = RESULTS["recommender"]["model"]
    assert f"up to {model['cap']}" in rec["text"] and f"at least {model['k_min']} customers" in rec["text"]


def test_plain_units_and_the_data_movement_kpi(tmp_path):
    text = visible_text(write_report(RESULTS, tmp_path))
    n = RESULTS["kpis"]["Raw Data Movement Reduction"]["records_on_devices"]
    assert f"Raw records moved 0 of {n:,} (100 % avoided)" in text
    assert "Communication" in text and " MB" in text
    assert "-272" not in text and "Reduction" not in text, "the negative 'reduction' ratio is gone"
    for raw in ("lift_top_decile", "None", "{", "hr@10 ", "True", "->"):
        assert raw not in text, f"{raw!r} shown to the reader"
    long_floats = re.findall(r"\d\.\d{5,}", text)
    assert not long_floats, long_floats
    eps = [s for s in re.split(r"(?<=\.) ", text) if s.startswith("ε (epsilon)")]
    assert len(eps) == 1 and "lower is more private" in eps[0], eps
    # model confidence names its cause
    psi = RESULTS["kpis"]["Model Confidence"]["drift_vs_reference"]["psi"]
    assert f"score drift PSI {psi:.2f}" in text
    # one lift for the propensity model on the page
    lifts = set(re.findall(r"(\d\.\d\d)×", text))
    rec = RESULTS["recommender"]["runs"]
    allowed = {f"{r['lift_top_decile']:.2f}" for r in RESULTS["propensity"]["runs"].values()}
    allowed.add(f"{rec['federated']['hr@10'] / rec['popularity']['hr@10']:.2f}")  # the recommender's, vs best-sellers
    assert lifts <= allowed, lifts


def test_report_skips_plots_without_data(tmp_path):
    write_report({"tables": {}}, tmp_path)
    assert not list(tmp_path.glob("*.png"))


def test_learning_curves_carry_a_band_and_the_centralized_line(tmp_path):
    """Every curve point of a demo run is [round, value, low, high] with low <= value <= high, each baseline
    line has its interval, and the band is drawn: the plot changes when the bands are dropped."""
    curves = RESULTS["curves"]
    assert "centralized" in curves["propensity AUC"]["baselines"] and "centralized" in curves["recommender HR@10"]["baselines"]
    for series in curves.values():
        for pts in series["runs"].values():
            assert pts and all(len(p) == 4 and p[2] <= p[1] <= p[3] and p[2] < p[3] for p in pts), pts
        for name, (lo, hi) in series["baseline_bands"].items():
            assert lo <= series["baselines"][name] <= hi
    write_report(RESULTS, tmp_path / "banded")
    bare = json.loads(json.dumps(RESULTS))
    for series in bare["curves"].values():
        series["runs"] = {n: [p[:2] for p in pts] for n, pts in series["runs"].items()}
        series.pop("baseline_bands")
    write_report(bare, tmp_path / "bare")
    assert (tmp_path / "banded" / "learning_curves.png").read_bytes() != (tmp_path / "bare" / "learning_curves.png").read_bytes()
