#!/usr/bin/env bash
# Conformance: schemathesis (PyPI) generates requests from docs/openapi.yaml, served at
# /openapi.json, and sends them to the real proxy running with its built-in simulator. Every
# check runs (`--checks all`) with a fresh random seed each run (printed at the end; replay with
# SCHEMATHESIS_SEED=<seed>), except `not_a_server_error`, which fails any 5xx: 503 is this
# API's documented answer for a busy or unavailable card, so `no_internal_error`
# (scripts/schemathesis_hooks.py) fails a 500 instead, and status_code_conformance fails any
# undocumented status. scripts/schemathesis.toml lists where a schema-valid body may be refused
# 400, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import schemathesis" 2>/dev/null || python3 -m pip install -q schemathesis
cargo build --quiet
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
ukey_port=$(free_port)
cat > "$work/config.json" <<JSON
{"server": {"host": "127.0.0.1", "port": "$port"},
 "ukey": {"url": "ws://127.0.0.1:$ukey_port", "timeout_ms": 2000}}
JSON
target/debug/chinaport-proxy --simulate -config "$work/config.json" > "$work/proxy.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/health" && break
  sleep 0.1
done
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks
seed=${SCHEMATHESIS_SEED:-$(python3 -c 'import random; print(random.getrandbits(64))')}
echo "schemathesis seed: $seed"
schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  --checks all --exclude-checks not_a_server_error \
  --seed "$seed" --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" --no-color
