#!/usr/bin/env bash
# Build the dashboard's browser bundle: Chart.js, exactly as server/dashboard_src/package-lock.json pins it,
# copied into server/static/vendor/ (served at /dashboard/vendor/…; no CDN).  Called by
# scripts/install_browser_deps.sh and `make dashboard`; reruns npm ci only when the lock changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/server/dashboard_src"
OUT="$ROOT/server/static/vendor"
command -v npm >/dev/null || { echo "build_dashboard: npm is not installed (scripts/install_browser_deps.sh installs it)" >&2; exit 1; }
if [ ! -f "$SRC/node_modules/.package-lock.json" ] || [ "$SRC/package-lock.json" -nt "$SRC/node_modules/.package-lock.json" ]; then
  echo "build_dashboard: npm ci in server/dashboard_src"
  (cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error)
fi
mkdir -p "$OUT"
cp "$SRC/node_modules/chart.js/dist/chart.umd.min.js" "$OUT/chart.umd.min.js"
cp "$SRC/node_modules/chart.js/LICENSE.md" "$OUT/chart.js.LICENSE.md"
echo "build_dashboard: $OUT/chart.umd.min.js ($(wc -c < "$OUT/chart.umd.min.js") bytes, chart.js $(node -p "require('$SRC/node_modules/chart.js/package.json').version"))"
