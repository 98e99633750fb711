"""Activation endpoints: marketers pull a published model or audience segments; devices report segment counts."""
from __future__ import annotations

import json

from flask import Blueprint, jsonify

from fedmark.contract import Manifest, params_file
from server.api.bodies import read_body
from server.api.common import json_body, now, refuse_withdrawn_consent
from server.auth import principal, requires
from server.governance import activation
from server.storage import get_store, schema

bp = Blueprint("activation", __name__)


def _decide(kind: str):  # type: ignore[no-untyped-def]
    """Check and record one activation request; returns (request, policy, model row) or raises 403."""
    who = principal()
    req = activation.parse_request(json_body(), kind)
    with get_store().write() as conn:
        outcome = activation.check(conn, who, req)
        activation.record(conn, who, req, outcome, now())
    if outcome.reason is not None:
        raise activation.deny(outcome.reason, outcome.message, outcome.signal)
    return who, req, outcome.policy, outcome.model


@bp.post("/v1/activation/model")
@requires("marketer")
def activate_model():  # type: ignore[no-untyped-def]
    """A published inference model and its manifest, after the purpose / region / partner checks."""
    _who, req, policy, model = _decide("model")
    v = model.current_version
    from sqlalchemy import select

    with get_store().read() as conn:
        row = conn.execute(select(schema.versions).where(schema.versions.c.model == req.model,
                                                         schema.versions.c.version == v)).one()
    manifest = json.loads(row.manifest)
    base = f"/v1/models/{req.model}/versions/{v}/files/"
    files = {role: base + name for role, name in manifest.get("graphs", {}).items() if role in ("infer", "inference")}
    files.setdefault("params", base + params_file(Manifest.from_json(manifest)))
    return jsonify({"model": req.model, "version": v, "digest": row.digest, "purpose": req.purpose,
                    "region": req.region, "manifest": manifest, "files": files,
                    "policy_version": policy.version, "k_min": policy.k_min})


@bp.post("/v1/activation/segments")
@requires("marketer")
def activate_segments():  # type: ignore[no-untyped-def]
    who, req, policy, model = _decide("segments")
    with get_store().read() as conn:
        segs = activation.segments(conn, who, req, policy, model.current_version)
    return jsonify({"model": req.model, "version": model.current_version, "purpose": req.purpose,
                    "region": req.region, "k_min": policy.k_min, "segments": segs})


@bp.post("/v1/segments/reports")
@requires("device")
def segment_report():  # type: ignore[no-untyped-def]
    refuse_withdrawn_consent(principal())
    raw = read_body()
    body = json_body()
    with get_store().write() as conn:
        n = activation.store_segment_report(conn, principal(), body, now(), len(raw))
    return jsonify({"accepted": n}), 202
