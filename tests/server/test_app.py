"""App-level behaviour: one JSON error shape, OpenAPI document vs routes, migrations vs schema, config."""
from __future__ import annotations

import re

import pytest
import requests



def _rule_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_openapi_document_matches_routes(live):
    doc = requests.get(live.url("/v1/openapi.json"), timeout=10).json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    routed = {(_rule_to_openapi(r.rule), m) for r in live.app.url_map.iter_rules()
              for m in r.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented, f"undocumented: {routed - documented}; documented but missing: {documented - routed}"
    for path, ops in doc["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", [])}
            assert declared == set(re.findall(r"{([a-z_]+)}", path)), path


def test_every_error_is_json_with_code_and_message(live):
    checks = [
        (requests.get(live.url("/nope"), timeout=10), 404, "not_found"),
        (requests.delete(live.url("/v1/health"), timeout=10), 405, "method_not_allowed"),
        (requests.get(live.url("/v1/models"), timeout=10), 401, "bad_token"),
        (live.admin("GET", "/v1/models/absent"), 404, "unknown_model"),
        (live.admin("POST", "/v1/admin/app-keys", data="not json"), 400, "bad_request"),
        (live.admin("PUT", "/v1/models/absent/training", json={"goal": 1}), 404, "unknown_model"),
    ]
    for resp, status, code in checks:
        assert resp.status_code == status, resp.text
        assert resp.headers["Content-Type"].startswith("application/json")
        err = resp.json()["error"]
        assert err["code"] == code and len(err["message"]) > 10
    assert requests.get(live.url("/v1/health"), timeout=10).json() == {"status": "ok"}


def test_oversized_body_and_unexpected_exception_are_json(tmp_path, make_live):
    """413 from MAX_CONTENT_LENGTH and a 500 from a crashing view keep the JSON shape (never HTML)."""
    with make_live(MAX_CONTENT_LENGTH=1000) as lv:
        r = lv.admin("POST", "/v1/models/toy/versions", data=b"\0" * 5000, headers={"Content-Type": "application/gzip"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        # a view that raises: registered on a second app built the same way
    from server.app import create_app
    from server.config import TestingConfig

    app = create_app(TestingConfig(DATA_DIR=str(tmp_path / "d2"), ADMIN_TOKEN="adm_x"))

    @app.get("/v1/_boom")
    def boom():  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    r = app.test_client().get("/v1/_boom")
    assert r.status_code == 500 and r.json["error"]["code"] == "internal_error"
    assert "<html" not in r.get_data(as_text=True).lower()


def test_migrations_create_exactly_the_schema(db_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from server.storage import make_engine, run_migrations
    from server.storage.schema import metadata

    engine = make_engine(db_url)
    try:
        run_migrations(engine, str(tmp_path))
        run_migrations(engine, str(tmp_path))  # idempotent at head
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert diff == [], diff
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        engine.dispose()


def test_config_from_environment():
    from server.config import Config

    cfg = Config.from_env({"FEDMARK_DATA_DIR": "/tmp/x", "FEDMARK_ADMIN_TOKEN": "t", "FEDMARK_RATE_LIMIT_BURST": "7",
                           "FEDMARK_DATABASE_URL": ""})
    assert (cfg.DATA_DIR, cfg.ADMIN_TOKEN, cfg.RATE_LIMIT_BURST) == ("/tmp/x", "t", 7)
    assert cfg.database_url() == "sqlite:////tmp/x/fedmark.db"
    with pytest.raises(ValueError, match="FEDMARK_TICK_SECONDS"):
        Config.from_env({"FEDMARK_TICK_SECONDS": "soon"})
    with pytest.raises(ValueError, match="unknown config setting"):
        Config(DATA_DIRR="/x")
