"""Monitoring: KPIs (JSON), Prometheus metrics, and the dashboard page."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from server.auth import principal, requires
from server.errors import ApiError
from server.governance import kpis, monitor, partners
from server.registry.service import require_model
from server.storage import get_store, schema

bp = Blueprint("monitor", __name__)
STATIC = Path(__file__).resolve().parents[1] / "static"


@bp.get("/v1/kpis")
@requires("admin", "marketer")
def get_kpis():  # type: ignore[no-untyped-def]
    who = principal()
    name = request.args.get("model")
    with get_store().read() as conn:
        if name:
            require_model(conn, name)
            partners.require_visible(conn, who, name)
            return jsonify(kpis.kpis(conn, name))
        names = [r[0] for r in conn.execute(select(schema.models.c.name).where(schema.models.c.line_of.is_(None))
                                            .order_by(schema.models.c.name))]
        return jsonify({"models": [kpis.kpis(conn, n) for n in names if partners.model_visible(conn, who, n)]})


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    body, ctype = monitor.render(current_app)
    return Response(body, mimetype=ctype.split(";")[0], headers={"Content-Type": ctype})


def _static(name: str, mimetype: str) -> Response:
    path = STATIC / name
    if not path.is_file():
        raise ApiError(404, "not_found", f"dashboard file {name} is missing from the installation")
    resp = Response(path.read_bytes(), mimetype=mimetype)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                               "img-src 'self' data:; connect-src 'self'")
    return resp


@bp.get("/dashboard")
def dashboard():  # type: ignore[no-untyped-def]
    """The monitoring page (static; it asks for a token and reads the /v1 JSON endpoints)."""
    return _static("dashboard.html", "text/html")


@bp.get("/dashboard/dashboard.js")
def dashboard_js():  # type: ignore[no-untyped-def]
    return _static("dashboard.js", "text/javascript")
