"""Monitoring: KPIs (JSON), Prometheus metrics, and the dashboard page."""
from __future__ import annotations

import hmac
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select

from server.auth import principal, requires
from server.auth.tokens import count_failure, refuse_failing_address
from server.errors import ApiError
from server.api.models import require_access
from server.governance import access, kpis, monitor
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
            require_access(conn, name, "kpis")
            return jsonify(kpis.kpis(conn, name))
        names = [r[0] for r in conn.execute(select(schema.models.c.name).where(schema.models.c.line_of.is_(None))
                                            .order_by(schema.models.c.name))]
        return jsonify({"models": [kpis.kpis(conn, n) for n in names if access.visible(conn, who, n)]})


def _metrics_credential() -> None:
    """``/metrics`` has its own bearer credential (``METRICS_TOKEN``); none configured: the route is off (404).

    Failures count toward the per-address auth-failure limit like every other token check."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        raise ApiError(404, "not_found", "/metrics is off: set FEDMARK_METRICS_TOKEN and scrape with "
                                         "'Authorization: Bearer <that token>'")
    addr = refuse_failing_address()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), str(expected).encode()):
        count_failure(addr)
        raise ApiError(401, "bad_token", "/metrics needs its own credential: 'Authorization: Bearer <METRICS_TOKEN>' "
                                         "(no other token is accepted here)")


@bp.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    _metrics_credential()
    body, ctype = monitor.render(current_app)
    return Response(body, mimetype=ctype.split(";")[0], headers={"Content-Type": ctype})


#: The dashboard's vendored browser libraries (scripts/build_dashboard.sh copies them from server/dashboard_src).
VENDOR_FILES = {"chart.umd.min.js": "text/javascript"}


def _static(name: str, mimetype: str) -> Response:
    path = STATIC / name
    if not path.is_file():
        if name.startswith("vendor/"):
            raise ApiError(503, "dashboard_unavailable", f"the dashboard's chart library {name} is not built: run "
                           "scripts/build_dashboard.sh (or scripts/install_browser_deps.sh) before installing the server")
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


@bp.get("/dashboard/vendor/<name>")
def dashboard_vendor(name: str):  # type: ignore[no-untyped-def]
    """Chart.js, served from this server (no CDN): only the allow-listed files."""
    if name not in VENDOR_FILES:
        raise ApiError(404, "not_found", f"/dashboard/vendor/{name} is not served; available: {sorted(VENDOR_FILES)}")
    resp = _static(f"vendor/{name}", VENDOR_FILES[name])
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp
