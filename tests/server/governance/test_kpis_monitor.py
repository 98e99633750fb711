"""KPIs computed from recorded events (API and ``fedmark kpis``), and Prometheus metrics per app."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from fedmark.contract import encoded_size
from server.testing import REPO_ROOT, running_server

KPI_NAMES = ["Raw Data Movement Reduction", "Governed Training Coverage", "Personalization Lift",
             "Partner Model Contribution", "Model Confidence", "Compliant Activation Rate"]


def _run(fl) -> None:
    """One gated round, its federated evaluation, segment reports, two activation requests, one ungoverned model."""
    for d in fl.devices:
        d.train_round()
    for d in fl.devices:
        if d.partner == "acme":
            d.evaluate()
    assert fl.model()["current_version"] == 2
    for d in fl.devices[:4]:
        r = d.call("POST", "/v1/segments/reports", json={"model": "toy", "version": 2, "purpose": "propensity_scoring",
                                                         "counts": {"high": 20, "low": 180}})
        assert r.status_code == 202, r.text
    mt = fl.marketer("ana")
    assert fl.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "propensity_scoring"}).ok
    assert fl.call("POST", "/v1/activation/segments", mt, json={"model": "toy", "purpose": "ads"}).status_code == 403
    # an ungoverned model trained by one device: its contributions have no policy decision
    fl.publish("plain", tmp=fl.tmp)
    fl.train("plain", goal=1, min_clients=1)
    d = fl.devices[0]
    assert d.upload(d.task("plain").json(), np.full(7, 0.01, np.float32)).status_code == 202


def test_kpis_from_recorded_events_via_api_and_cli(tmp_path, fleet_for, populate):
    with running_server(tmp_path / "srv", extra_env={"FEDMARK_METRICS_TOKEN": "mtk_kpis"}) as srv:
        fl = fleet_for(srv.base_url, srv.admin_token, "mtk_kpis")
        fl.tmp = tmp_path
        populate(fl, tmp_path, record_bytes=400)
        _run(fl)
        k = fl.ok("GET", "/v1/kpis", params={"model": "toy"})
        everything = fl.ok("GET", "/v1/kpis")
        cli = subprocess.run([sys.executable, "-m", "fedmark_cli", "kpis", "--server", srv.base_url,
                              "--token", srv.admin_token, "--model", "toy"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120)
        cli_all = subprocess.run([sys.executable, "-m", "fedmark_cli", "kpis", "--server", srv.base_url,
                                  "--token", fl.marketer("kim")], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=120)
        metrics = fl.call("GET", "/metrics", fl.metrics_token).text
    rd = k["raw_data_movement_reduction"]
    assert rd["raw_record_bytes_moved"] == 0 and rd["raw_record_ingress_categories"] == []
    assert rd["bytes_moved"]["updates"] == 7 * encoded_size(7, "f32")  # seven f32 updates of 7 parameters
    assert rd["records_on_devices"] == 7 * 200 and rd["bytes_per_record"] == 400
    assert rd["bytes_moved"]["evaluation_reports"] > 0 and rd["bytes_moved"]["segment_reports"] > 0
    assert abs(rd["value"] - (1 - rd["bytes_moved"]["total"] / (1400 * 400))) < 1e-12 and 0.5 < rd["value"] < 1
    gc = k["governed_training_coverage"]
    assert (gc["contributions"], gc["governed"], gc["value"]) == (7, 7, 1.0)
    plain = next(m for m in everything["models"] if m["model"] == "plain")
    assert plain["governed_training_coverage"]["value"] == 0.0  # one contribution, no policy decision
    pl = k["personalization_lift"]
    assert pl["version"] == 2 and pl["value"] > 1.5 and pl["auc"] > 0.7
    pc = k["partner_model_contribution"]
    assert pc["metric"] == "loss" and pc["value"]["acme"] > 0 > pc["value"]["globex"]
    mc = k["model_confidence"]
    assert mc["value"] in ("high", "medium", "low") and mc["regions"] == 2 and mc["spread"] >= 0 and mc["max_psi"] > 0
    car = k["compliant_activation_rate"]
    assert (car["allowed"], car["requests"], car["value"]) == (1, 2, 0.5)
    # the CLI prints all six, with the same figures
    assert cli.returncode == 0, cli.stderr
    for name in KPI_NAMES:
        assert name in cli.stdout, cli.stdout
    assert f"{100 * rd['value']:.1f}%" in cli.stdout and "raw-record bytes moved 0" in cli.stdout
    assert "100.0%: 7 of 7 contributions" in cli.stdout and "50.0%: 1 of 2 requests" in cli.stdout
    assert f"acme {pc['value']['acme']:+.4f}" in cli.stdout
    print(cli.stdout)
    assert cli_all.returncode == 0 and "model plain" in cli_all.stdout and "0.0%: 0 of 1 contributions" in cli_all.stdout
    # Prometheus: counters read from the audit trail, per model / code
    assert 'fedmark_updates_accepted_total{model="toy"} 7.0' in metrics
    assert 'fedmark_updates_accepted_total{model="plain"} 1.0' in metrics
    assert 'fedmark_rounds_total{event="closed",model="toy"} 1.0' in metrics
    assert 'fedmark_versions_total{model="toy",status="variant"} 2.0' in metrics
    assert 'fedmark_activation_requests_total{decision="denied",model="toy",reason="purpose_not_allowed"} 1.0' in metrics


def test_metrics_per_app_registry_and_epsilon_gauge(make_live, tmp_path):
    """Two apps in one process each expose their own figures; the epsilon gauge follows the current version."""
    import requests

    with make_live() as a:
        from server.app import create_app
        from server.config import TestingConfig

        other = create_app(TestingConfig(DATA_DIR=str(tmp_path / "other"), ADMIN_TOKEN="adm_other",
                                         METRICS_TOKEN="mtk_other"))
        a.publish("toy", shapes=((7,),))
        a.train("toy", goal=1, min_clients=1, clip={"norm": 1.0, "adaptive": False}, noise_multiplier=1.0)
        tok = a.enroll("d1")
        task = a.task(tok).json()
        r = a.upload(tok, task, np.full(7, 0.1, np.float32), content_type="text/plain")
        assert r.status_code == 415
        assert a.upload(tok, task, np.full(7, 0.1, np.float32)).status_code == 202
        text = requests.get(a.url("/metrics"), headers={"Authorization": f"Bearer {a.metrics_token}"}, timeout=10).text
        eps = a.model("toy")["versions"][1]["epsilon"]
        mine = other.test_client().get("/metrics", headers={"Authorization": "Bearer mtk_other"}).get_data(as_text=True)
        other.extensions["fedmark_store"].dispose()
    assert 'fedmark_updates_accepted_total{model="toy"} 1.0' in text
    assert 'fedmark_updates_rejected_total{code="bad_content_type"} 1.0' in text
    line = next(x for x in text.splitlines() if x.startswith('fedmark_epsilon{delta="1e-05",model="toy"}'))
    assert abs(float(line.split()[-1]) - eps) < 1e-9 and eps > 0
    assert "fedmark_updates_accepted_total{" not in mine and "fedmark_audit_entries 0.0" in mine
