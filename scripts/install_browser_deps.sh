#!/usr/bin/env bash
# Installs what the JavaScript SDK's tests need, and nothing that is already there:
#   * Debian's headless Chromium (the browser test drives /usr/bin/chromium with playwright-core;
#     no browser is downloaded by npm tools);
#   * edge_sdk/web/node_modules from package-lock.json (npm ci), only when it is missing or
#     older than the lock file, so `make test` pays for it once.
# Idempotent: a second run does nothing and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/edge_sdk/web"

if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" != "0" ]]; then
    echo "install_browser_deps: /usr/bin/chromium is missing and installing it needs root;" >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  echo "install_browser_deps: installing Debian chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium chromium-driver
fi

if ! command -v node >/dev/null && [[ "$(id -u)" == "0" ]]; then
  echo "install_browser_deps: installing Debian nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi
command -v node >/dev/null || { echo "install_browser_deps: node (>= 20) is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "install_browser_deps: npm is not installed" >&2; exit 1; }

# npm ci writes node_modules/.package-lock.json; if it is older than the lock file the tree is stale.
STAMP="$WEB/node_modules/.package-lock.json"
if [[ ! -f "$STAMP" || "$WEB/package-lock.json" -nt "$STAMP" ]]; then
  echo "install_browser_deps: npm ci in edge_sdk/web"
  # onnxruntime-node's postinstall would download CUDA libraries from NuGet: the SDK runs on CPU.
  (cd "$WEB" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
  touch "$STAMP"
fi

# The dashboard's charting library (server/dashboard_src's own lock), copied into server/static/vendor.
bash "$(dirname "${BASH_SOURCE[0]}")/build_dashboard.sh"
