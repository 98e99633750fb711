"""The three roles of a fedmark server and the routes each one serves.

* ``single`` (no ``--role``): today's embedded server - devices, rounds and
  publishing in one process and one database.
* ``region`` (``--role region --region eu --upstream URL``): serves only the
  devices of its region (app keys are issued for that region alone, and a
  device's region is its app key's), folds their updates with its own DP noise
  and ledger, and *holds* the result instead of publishing it: the held version
  (status ``regional``) is pushed to the coordinator and never served.
* ``global`` (``--role global``): the coordinator.  It serves no device at all
  (enrolment, tasks and uploads answer 403 ``wrong_role``): it never sees a
  device id or an individual update, by construction rather than by care.
"""
from __future__ import annotations

from typing import Any, Mapping

from server.errors import ApiError

__all__ = ["SINGLE", "REGION", "GLOBAL", "ROLES", "role_of", "DEVICE_PATHS", "refuse_device_route",
           "require_role", "app_key_region", "holds_folds", "check_region_config", "sync_only_on_region"]

SINGLE, REGION, GLOBAL = "single", "region", "global"
ROLES = (SINGLE, REGION, GLOBAL)
#: Path prefixes that only a server facing devices answers.
DEVICE_PATHS = ("/v1/devices/enroll", "/v1/tasks", "/v1/rounds/", "/v1/evaluations/", "/v1/consent", "/train")


def role_of(config: Mapping[str, Any]) -> str:
    role = config.get("ROLE") or SINGLE
    if role not in ROLES:
        raise ValueError(f"unknown server role {role!r}; use one of {', '.join(ROLES)} (--role / FEDMARK_ROLE)")
    return str(role)


def refuse_device_route(config: Mapping[str, Any], path: str) -> None:
    """403 ``wrong_role`` for a device route on the coordinator: devices talk to their region's server."""
    if role_of(config) == GLOBAL and path.startswith(DEVICE_PATHS):
        raise ApiError(403, "wrong_role", "this server is a global coordinator: it serves no device. Enrol and "
                                          "train with the server of the device's region (fedmark server --role region)")


def require_role(config: Mapping[str, Any], role: str, what: str) -> None:
    if role_of(config) != role:
        raise ApiError(403, "wrong_role", f"{what} is served by a server started with --role {role}; this server "
                                          f"has role {role_of(config)}")


def app_key_region(config: Mapping[str, Any], region: str | None) -> str | None:
    """The region of a new app key: a regional server issues keys for its own region only (400 otherwise)."""
    if role_of(config) != REGION:
        return region
    own = str(config.get("REGION"))
    if region is not None and region != own:
        raise ApiError(400, "wrong_region", f"this is the server of region {own!r}: it issues app keys for {own!r} "
                                            f"only. Ask the server of region {region!r}, or leave 'region' out")
    return own


def sync_only_on_region(config: Mapping[str, Any], body: Any) -> None:
    """400 for ``mode: async`` on a regional server: a FedBuff fold never closes its round, so there is no
    sub-round result to hold and push - the region would publish on its own and silently leave the federation."""
    if role_of(config) == REGION and isinstance(body, Mapping) and body.get("mode", "sync") != "sync":
        raise ApiError(400, "bad_training_config", "a regional server (--role region) trains in sync rounds only: "
                                                   "each closed sub-round is one regional aggregate for the "
                                                   "coordinator; set \"mode\": \"sync\"", extra={"field": "mode"})


def holds_folds(config: Mapping[str, Any]) -> bool:
    """Whether a closed round's result is held for the coordinator instead of published (``--role region``)."""
    return role_of(config) == REGION


def check_region_config(config: Mapping[str, Any]) -> None:
    """A ``--role region`` server must know its region, coordinator and credential before it serves anything
    (a region that cannot push would train and hold forever): ``ValueError`` naming the missing flags."""
    from server.auth.accounts import REGION_NAME

    if role_of(config) != REGION:
        return
    missing = [flag for flag, key in (("--region / FEDMARK_REGION", "REGION"),
                                      ("--upstream / FEDMARK_UPSTREAM", "UPSTREAM_URL"),
                                      ("FEDMARK_UPSTREAM_TOKEN", "UPSTREAM_TOKEN")) if not config.get(key)]
    if missing:
        raise ValueError("a regional server (--role region) needs " + ", ".join(missing) +
                         "; the coordinator's admin issues the credential with POST /v1/federation/regions")
    if not REGION_NAME.match(str(config["REGION"])):
        raise ValueError(f"--region {config['REGION']!r} must be 1-64 characters from A-Z a-z 0-9 . _ -")
    if not str(config["UPSTREAM_URL"]).startswith(("http://", "https://")):
        raise ValueError(f"--upstream {config['UPSTREAM_URL']!r} must be an http:// or https:// URL")
