#!/usr/bin/env bash
# Install the proxies bench_gateway.py compares against. Idempotent: a second
# run checks the pinned versions and installs nothing new.
#
#   LiteLLM -> bench/.venv-litellm   (pinned exactly; never 1.82.7 or 1.82.8,
#                                     which were compromised releases)
#   Portkey -> bench/portkey/node_modules (npm, versions in bench/portkey/package.json)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
litellm_version="1.106.2"  # the newest that installs here: later ones want a newer certifi
python="${PYTHON:-python3.11}"

venv="$here/.venv-litellm"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)"
if [[ "$installed" != "$litellm_version" ]]; then
    "$venv/bin/python" -m pip install --quiet "litellm[proxy]==$litellm_version"
fi
echo "litellm $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"

# `npm ci` would need a lockfile; `npm install` is a no-op when node_modules
# already matches package.json. The hono override is what makes Portkey's
# streaming work (its default @hono/node-server breaks SSE relaying).
cd "$here/portkey"
npm install --no-audit --no-fund --loglevel=error
echo "portkey $(node -p 'require("./node_modules/@portkey-ai/gateway/package.json").version')"
echo "hono node-server $(node -p 'require("./node_modules/@hono/node-server/package.json").version')"
