"""The demo report: JSON is the source, the HTML shows the same figures, plots are real PNGs."""
from __future__ import annotations

import json

from examples.demo.report import write_report

RESULTS = {
    "summary": "test run",
    "tables": {"propensity": [{"model": "federated", "auc": 0.7612}, {"model": "central", "auc": 0.7701}]},
    "curves": {"propensity AUC": {"metric": "AUC", "runs": {"fed": [[1, 0.6], [2, 0.7]]}, "baselines": {"central": 0.77}}},
    "by_region": {"AUC by region": {"metric": "AUC", "values": {"north": 0.7, "south": 0.75}}},
    "epsilon": {"dp": [[1, 0.5], [2, 0.8]]},
    "kpis": {"Raw Data Movement Reduction": {"value": 1.0}},
    "notes": ["<script>x</script>"],
}


def test_report_files_and_content(tmp_path):
    page = write_report(RESULTS, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["tables"] == RESULTS["tables"]
    for name in ("learning_curves", "by_region", "epsilon", "kpis"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    text = page.read_text()
    assert "0.7612" in text and "learning_curves.png" in text
    assert "<script>x" not in text  # notes are escaped


def test_report_skips_plots_without_data(tmp_path):
    write_report({"tables": {}}, tmp_path)
    assert not list(tmp_path.glob("*.png"))
