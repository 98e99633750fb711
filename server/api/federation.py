"""Federation endpoints (``server.federation``): region credentials, global rounds, regional pushes.

Two kinds of caller:

* the coordinator's **admin** issues region credentials and makes a model
  federated; admins and marketers read the federation status for the
  dashboard (``/v1/federation/status``: regions and the counts they pushed,
  which are at least k; on a regional server its links and push outbox);
* a **regional server**, with its region credential, reads the model it
  follows, downloads global parameters and pushes its regional aggregate.
  These server-to-server routes do not go through the model access decision
  of devices and marketers (``server.governance.access``): the caller is no
  device or marketer but a region, authenticated by its own credential table,
  and it reads only what the federation protocol gives every region (the
  current global parameters of a federated model).  Every answer carries the
  coordinator's proof (``server.federation.credentials``).
"""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from server.api.bodies import read_body
from server.api.common import json_body, now
from server.auth import principal, requires
from server.auth.tokens import count_failure, refuse_failing_address
from server.errors import ApiError
from server.federation import coordinator
from server.federation.credentials import HDR_NONCE, HDR_PROOF, HDR_REGION, HDR_ROLE, issue, proof, region_of_secret
from server.federation.roles import GLOBAL, require_role
from server.federation.service import get_federation
from server.governance import access, audit
from server.storage import get_store

bp = Blueprint("federation", __name__)


def _region() -> str:
    """The calling region, from its credential; the caller must also declare role ``region`` and that region."""
    require_role(current_app.config, GLOBAL, "this federation route")
    addr = refuse_failing_address()
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    with get_store().read() as conn:
        found = region_of_secret(conn, secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
    if found is None:
        count_failure(addr)
        raise ApiError(401, "bad_token", "this route needs a region credential (Authorization: Bearer fmr_...), "
                                         "issued by the coordinator's admin with POST /v1/federation/regions")
    region, key = found
    if request.headers.get(HDR_ROLE) != "region":
        raise ApiError(403, "wrong_role", f"send {HDR_ROLE}: region; only regional servers call this route")
    if request.headers.get(HDR_REGION) != region:
        raise ApiError(403, "region_mismatch", f"this credential is region {region!r}'s, but the caller says "
                                               f"{request.headers.get(HDR_REGION)!r} ({HDR_REGION}); check --region")
    g.federation_key = key
    return region


@bp.after_request
def _prove(resp: Response) -> Response:
    """Sign every answer to an authenticated region (its nonce, the body) so it knows who answered."""
    if current_app.config.get("ROLE") == GLOBAL:
        resp.headers[HDR_ROLE] = "global"
        key, nonce = g.get("federation_key"), request.headers.get(HDR_NONCE)
        if key and nonce:
            resp.headers[HDR_PROOF] = proof(key, nonce, resp.get_data())
    return resp


@bp.post("/v1/federation/regions")
@requires("admin")
def create_region():  # type: ignore[no-untyped-def]
    require_role(current_app.config, GLOBAL, "issuing region credentials")
    region = json_body().get("region")
    t = now()
    with get_store().write() as conn:
        secret = issue(conn, region, t)  # type: ignore[arg-type]
        audit.append_one(conn, t, "federation.region.credential", actor="admin", subject=region)
    return jsonify({"region": region, "credential": secret,
                    "use": "start the regional server with FEDMARK_UPSTREAM_TOKEN=<credential>"}), 201


@bp.put("/v1/federation/models/<model>")
@requires("admin")
def configure(model: str):  # type: ignore[no-untyped-def]
    require_role(current_app.config, GLOBAL, "federating a model")
    return jsonify(coordinator.configure(get_store(), model, json_body(), now()))


@bp.get("/v1/federation/models/<model>")
def model_info(model: str):  # type: ignore[no-untyped-def]
    region = _region()
    return jsonify(coordinator.model_info(get_store(), model, region, now()))


@bp.get("/v1/federation/models/<model>/versions/<int:version>/params")
def params(model: str, version: int):  # type: ignore[no-untyped-def]
    _region()
    data = coordinator.params_bytes(get_store(), current_app.extensions["fedmark_blobs"], model, version)
    return Response(data, mimetype="application/octet-stream")


@bp.post("/v1/federation/models/<model>/aggregates")
def push(model: str):  # type: ignore[no-untyped-def]
    region = _region()
    request.max_content_length = int(current_app.config["MAX_UPDATE_BYTES"])
    body = read_body(cache=False)
    try:
        meta: Any = json.loads(request.headers.get("X-Fedmark-Aggregate") or "null")
    except ValueError:
        meta = None
    code, out = coordinator.accept(get_store(), current_app.extensions["fedmark_blobs"], model, region,
                                   request.headers.get("Idempotency-Key", ""), meta, body, now())
    if code == 201:
        get_federation().tick()  # every region in: close now instead of at the deadline
    return jsonify(out), code


@bp.get("/v1/federation/status")
@requires("marketer")  # the dashboard's view: regions and k-thresholded counts, nothing of a device
def status():  # type: ignore[no-untyped-def]
    """What the caller may see of the federation: rounds, links and pushes only of models the one access
    decision shows it (a partner-bound marketer sees nothing of another partner's models), and, for such a
    marketer, no per-region totals (they sum over every federated model)."""
    out = get_federation().status()
    who = principal()
    if who.role == "admin":
        return jsonify(out)
    with get_store().read() as conn:
        seen: dict[str, bool] = {}

        def shown(model: str) -> bool:
            if model not in seen:
                seen[model] = access.visible(conn, who, model)
            return seen[model]

        for key in ("rounds", "links", "pushes"):
            if key in out:
                out[key] = [entry for entry in out[key] if shown(entry["model"])]
    if who.partner is not None:
        for region in out.get("regions", []):
            region["contributors_total"] = None
    return jsonify(out)


@bp.post("/v1/federation/tick")
@requires("admin")
def tick():  # type: ignore[no-untyped-def]
    return jsonify(get_federation().tick())
