"""The browser trainer page: ``GET /train`` plus the files it needs, all from this origin.

Why the server hosts it: the fedmark API sends no CORS headers (devices are
not web pages by default), so a page that trains in a visitor's browser has
to come from the server's own origin, together with the JavaScript SDK
(``edge_sdk/web/src``) and onnxruntime-web's module and WebAssembly binary
(``edge_sdk/web/node_modules/onnxruntime-web/dist``).  Nothing is fetched from
a CDN.  The page holds no credentials: the visitor supplies the app key.

Only allow-listed names are served, with explicit MIME types (a ``.wasm``
must be ``application/wasm`` for streaming compilation, modules must be
``text/javascript``), so these routes can never expose other files of the
installation.  The JavaScript lives outside the Python package; the server
finds it through the ``WEB_SDK_DIR`` config key, the ``FEDMARK_WEB_SDK_DIR``
environment variable, or the source checkout (``<repo>/edge_sdk/web``).
This module reads those files; it imports nothing from ``edge_sdk``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory

from server.errors import ApiError

bp = Blueprint("web", __name__)

PAGE_DIR = Path(__file__).resolve().parents[1] / "static" / "trainer"
_DEFAULT_SDK_DIR = Path(__file__).resolve().parents[2] / "edge_sdk" / "web"

JS = "text/javascript"
# The page's own files (server/static/trainer).
PAGE_ASSETS: dict[str, str] = {"app.js": JS, "records.js": JS, "view.js": JS, "cmp.js": JS, "cmp_choices.js": JS,
                               "trainer.css": "text/css"}
# onnxruntime-web's WebAssembly build: the ES module the page imports and the two files it loads itself.
ORT_FILES: dict[str, str] = {"ort.wasm.min.mjs": JS, "ort-wasm-simd-threaded.mjs": JS,
                             "ort-wasm-simd-threaded.wasm": "application/wasm"}
# SDK modules: lower-case ES module names; the Node-only ones import node: built-ins and never reach a browser.
_SDK_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\.js")
SDK_NODE_ONLY = frozenset({"node.js", "node_artifact.js", "node_storage.js", "node_tcf.js"})

# Both installs are named: an installed wheel has no scripts/ directory, a source checkout has the script.
INSTALL_HINT = ("run `npm install onnxruntime-web` in {sdk}, or set FEDMARK_WEB_SDK_DIR to a directory "
                "holding node_modules/onnxruntime-web; in a source checkout scripts/install_browser_deps.sh does this")
# 'wasm-unsafe-eval' lets onnxruntime-web compile its WebAssembly; nothing else may run but this origin's scripts.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


def sdk_dir() -> Path:
    """Where ``edge_sdk/web`` is installed (config, then environment, then the source checkout)."""
    configured = current_app.config.get("WEB_SDK_DIR") or os.environ.get("FEDMARK_WEB_SDK_DIR")
    return Path(configured) if configured else _DEFAULT_SDK_DIR


def _harden(resp: Response) -> Response:
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the page's URL may carry the device id
    resp.headers["Cache-Control"] = "no-cache"  # revalidate (ETag) so an upgraded SDK is picked up at once
    return resp


def _send(directory: Path, name: str, mimetype: str, what: str) -> Response:
    if not (directory / name).is_file():
        raise ApiError(404, "not_found", f"{what} {name} is missing from the installation ({directory})")
    resp = send_from_directory(directory, name, mimetype=mimetype, max_age=0)
    return _harden(resp)


@bp.get("/train")
def page():  # type: ignore[no-untyped-def]
    """The trainer page; the visitor's browser trains on records held in the page and uploads a clipped update."""
    resp = _send(PAGE_DIR, "index.html", "text/html", "trainer page file")
    resp.headers["Content-Security-Policy"] = CSP
    return resp


@bp.get("/train/<name>")
def page_asset(name: str):  # type: ignore[no-untyped-def]
    mimetype = PAGE_ASSETS.get(name)
    if mimetype is None:
        raise ApiError(404, "not_found", f"/train/{name} is not a trainer page file; the page uses "
                       f"{sorted(PAGE_ASSETS)}")
    return _send(PAGE_DIR, name, mimetype, "trainer page file")


@bp.get("/train/sdk/<name>")
def sdk_module(name: str):  # type: ignore[no-untyped-def]
    """One ES module of the JavaScript SDK (browser-safe modules only)."""
    if not _SDK_NAME.fullmatch(name) or name in SDK_NODE_ONLY:
        raise ApiError(404, "not_found", f"/train/sdk/{name} is not a browser module of the JavaScript SDK "
                       "(lower-case .js names in edge_sdk/web/src, Node-only modules excluded)")
    src = sdk_dir() / "src"
    if not src.is_dir():
        raise ApiError(503, "web_sdk_unavailable", f"the JavaScript SDK is not installed at {src}; deploy "
                       "edge_sdk/web with the server or set FEDMARK_WEB_SDK_DIR to its directory")
    return _send(src, name, JS, "SDK module")


@bp.get("/train/sdk/families/<name>")
def sdk_family_module(name: str):  # type: ignore[no-untyped-def]
    """One training-protocol plug-in of the JavaScript SDK (edge_sdk/web/src/families)."""
    if not _SDK_NAME.fullmatch(name):
        raise ApiError(404, "not_found", f"/train/sdk/families/{name} is not a protocol module of the JavaScript SDK")
    return _send(sdk_dir() / "src" / "families", name, JS, "SDK module")


@bp.get("/train/ort/<name>")
def ort_file(name: str):  # type: ignore[no-untyped-def]
    """onnxruntime-web's module and WebAssembly binary, served locally (no CDN)."""
    mimetype = ORT_FILES.get(name)
    if mimetype is None:
        raise ApiError(404, "not_found", f"/train/ort/{name} is not served; onnxruntime-web files available: "
                       f"{sorted(ORT_FILES)}")
    dist = sdk_dir() / "node_modules" / "onnxruntime-web" / "dist"
    if not dist.is_dir():
        raise ApiError(503, "web_sdk_unavailable", f"onnxruntime-web is not installed ({dist} is missing); "
                       + INSTALL_HINT.format(sdk=sdk_dir()))
    return _send(dist, name, mimetype, "onnxruntime-web file")
