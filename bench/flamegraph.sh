#!/usr/bin/env bash
# A py-spy flame graph of one Stowage worker under W1 (GET 4 KiB by path, 64 connections) or W4 (PUT
# 4 KiB to new names, 16 connections), the way docs/flamegraphs/*.svg were made:
#
#   bench/flamegraph.sh W1 docs/flamegraphs/w1-after.svg
#   FORMAT=raw bench/flamegraph.sh W4 /tmp/w4.txt     # collapsed stacks instead of an SVG
#
# One worker pinned to core 0 with a fresh SQLite data folder, wrk on core 1 for 28 s; py-spy samples
# the worker for 20 s of it (250 Hz, only while it holds the GIL: idle time is not drawn), starting
# 4 s in. py-spy is not a project dependency: put it on PATH or set PY_SPY
# (python3 -m venv /tmp/tools && /tmp/tools/bin/pip install py-spy). Needs root or ptrace rights.
set -euo pipefail
WL="${1:?W1 or W4}"; OUT="${2:?output file}"
HERE="$(cd "$(dirname "$0")" && pwd)"; ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"; PY_SPY="${PY_SPY:-$(command -v py-spy || echo /tmp/tools/bin/py-spy)}"
[ -x "$PY_SPY" ] || { echo "py-spy not found: set PY_SPY or put it on PATH" >&2; exit 1; }
case "$WL" in W1|W4) ;; *) echo "workload must be W1 or W4" >&2; exit 2 ;; esac
WORK="$(mktemp -d)"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
env STOWAGE_DATA_DIR="$WORK/data" STOWAGE_LOG_LEVEL=warning STOWAGE_RATE_LIMIT_AUTH_PER_IP=100000 \
  STOWAGE_DEFAULT_QUOTA_BYTES=1099511627776 \
  taskset -c 0 "$ROOT/.venv/bin/stowage" serve --host 127.0.0.1 --port "$PORT" --workers 1 >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 150); do curl -sf -o /dev/null "$BASE/healthz" && break; sleep 0.2; done
json() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
ACCESS="$(curl -sf "$BASE/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"flame@example.com","password":"correct horse battery staple"}' | json access_token)"
TOKEN="$(curl -sf "$BASE/api/v1/me/tokens" -H "authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d '{"name":"flame","scopes":["read","write"]}' | json token)"
head -c 4096 /dev/urandom >"$WORK/obj-4k"
curl -sf -o /dev/null -X PUT --data-binary @"$WORK/obj-4k" -H "authorization: Bearer $TOKEN" "$BASE/api/v1/content/bench/obj-4k"
WORKER="$(ps -o pid= --ppid "$SERVER" | head -1 | tr -d ' ')"
if [ "$WL" = W1 ]; then
  taskset -c 1 wrk -t1 -c64 -d28s -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/content/bench/obj-4k" >"$WORK/wrk.txt" &
else
  cat >"$WORK/put.lua" <<LUA
local n = 0
local body = string.rep("x", 4096)
request = function()
  n = n + 1
  return wrk.format("PUT", "/api/v1/content/bench/put/w4-" .. n, {["Authorization"] = "Bearer $TOKEN"}, body)
end
LUA
  taskset -c 1 wrk -t1 -c16 -d28s -s "$WORK/put.lua" "$BASE" >"$WORK/wrk.txt" &
fi
LOAD=$!
sleep 4
"$PY_SPY" record --pid "$WORKER" --duration 20 --rate 250 --gil --nonblocking \
  --format "${FORMAT:-flamegraph}" -o "$OUT" >/dev/null
wait "$LOAD"
grep -E 'Requests/sec|Latency' "$WORK/wrk.txt"
echo "written: $OUT"
