#!/usr/bin/env bash
# Builds the console (console/ -> console/dist) with `npm ci` + `npm run build`;
# `scripts/console.sh test` runs its unit tests (Vitest) instead of building.
# `make console` builds only when a source changed (stamp file .console-built).
# Node.js: the one on PATH when it is >= 20, else the one scripts/bootstrap.sh put in .venv/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || (($(node_major node) < 20)) || ! command -v npm >/dev/null 2>&1; then
  if [[ -x .venv/bin/node && -x .venv/bin/npm ]]; then
    PATH="$PWD/.venv/bin:$PATH"
  else
    echo "console: Node.js >= 20 is needed to build the console; run scripts/bootstrap.sh (make setup)." >&2
    exit 1
  fi
fi

cd console
# Step 1. Install exactly what package-lock.json says, when it changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "console: npm ci …" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
if [[ ${1:-} == test ]]; then
  npm run --silent test  # Vitest: the console's pure logic (SSE parser, merge, redaction spans, rates)
  exit
fi
# Step 2. Type-check and build into console/dist.
echo "console: building console/dist …" >&2
npm run --silent build >/dev/null
