#!/usr/bin/env bash
# Install the web assets the API serves from npm (package-lock.json pins them) and copy them
# into service/web/vendor/ (git-ignored): uPlot for the dashboard's charts, Swagger UI for
# /docs. The Makefile and the Dockerfile's Node stage both run this, so the list lives here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=service/web/vendor

# --ignore-scripts: neither package needs one, and swagger-ui-dist's dependency @scarf/scarf would
# report the install to an outside host from its postinstall.
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
rm -rf "$VENDOR"
mkdir -p "$VENDOR/swagger-ui"
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css \
   node_modules/uplot/LICENSE "$VENDOR/"
cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
   node_modules/swagger-ui-dist/favicon-32x32.png node_modules/swagger-ui-dist/LICENSE \
   "$VENDOR/swagger-ui/"
touch "$VENDOR/.installed-stamp"
