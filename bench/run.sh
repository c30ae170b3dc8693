#!/usr/bin/env bash
# Stowage's HTTP benchmark: W1-W5 of ../shared/bench/peers.sh against nginx, copyparty and Stowage,
# all in ONE peers.sh invocation (so the three are measured under the same machine conditions).
#
#   bench/run.sh                     # full run: REPS=3, DUR=10 s, W1-W5
#   bench/run.sh --quick             # sanity run: REPS=1, DUR=5 s, W1 W3 W4 W5
#   bench/run.sh --workers 1 --reps 2 --peers ""       # Stowage alone, 1 worker
#
# Options (or the environment variable in brackets):
#   --quick               REPS=1 DUR=5 WARMUP=1 QUIET_WAIT=5 WORKLOADS="W1 W3 W4 W5"
#   --workers N           Granian worker processes [WORKERS, default 2 = the machine's core count]
#   --reps N              runs per workload [REPS, default 3]
#   --dur S               seconds per wrk run [DUR, default 10]
#   --peers "P ..."       peers measured in the same invocation, after Stowage [PEERS, default "nginx copyparty"]
#   --out DIR             where results go [OUT_DIR, default /tmp/stowage-bench/<UTC time>]
#   --no-pin              do not pin Stowage to core $SERVER_CPU [PIN_SERVER=0]
# Other peers.sh knobs pass through the environment: WORKLOADS WARMUP QUIET_WAIT QUIET_MAX
# SERVER_CPU CLIENT_CPU KEEP_SCRATCH SCRATCH_BASE ...
#
# Method: like the built-in peers (nginx, copyparty), Stowage runs pinned to core $SERVER_CPU (0) with
# `taskset`, all its worker processes included; wrk/curl run on core $CLIENT_CPU (1). So every server
# gets one core, whatever --workers says. Everything is on 127.0.0.1.
#
# Output in $OUT_DIR: peers.txt (peers.sh output), peers.tsv (raw values, one line per run),
# table.md (medians and min-max, from ../shared/bench/table.sh), stowage.log (server log).
# This is a long run (about 15 minutes at the defaults, more while the machine is busy, because
# peers.sh waits for quiet); it is not part of the test suite.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
BENCH="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" && pwd)}"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

WORKERS="${WORKERS:-2}"
PEERS="${PEERS-nginx copyparty}"
PIN_SERVER="${PIN_SERVER:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --workers) WORKERS="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    --dur) DUR="$2"; shift ;;
    --peers) PEERS="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    --no-pin) PIN_SERVER=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  REPS="${REPS:-1}"; DUR="${DUR:-5}"; WARMUP="${WARMUP:-1}"; QUIET_WAIT="${QUIET_WAIT:-5}"
  WORKLOADS="${WORKLOADS:-W1 W3 W4 W5}"
fi
export REPS="${REPS:-3}" DUR="${DUR:-10}" WORKLOADS="${WORKLOADS:-W1 W2 W3 W4 W5}" SERVER_CPU
[ -n "${WARMUP:-}" ] && export WARMUP
[ -n "${QUIET_WAIT:-}" ] && export QUIET_WAIT

OUT_DIR="${OUT_DIR:-/tmp/stowage-bench/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT_DIR"
export RESULTS="$OUT_DIR/peers.tsv"

# --- tools: ../shared/bench/setup.sh installs them (apt, Python venvs); it is idempotent but slow
# (apt + pip), so it only runs when something is missing. Node peers are not used here.
need_setup=0
for tool in wrk nginx curl taskset openssl; do command -v "$tool" >/dev/null || need_setup=1; done
case " $PEERS " in *" copyparty "*) [ -x "${COPYPARTY_VENV:-/tmp/venv-copyparty}/bin/copyparty" ] || need_setup=1 ;; esac
if [ "$need_setup" = 1 ]; then
  echo "# tools missing: running $BENCH/setup.sh (SKIP_NODE=1)"
  SKIP_NODE=1 "$BENCH/setup.sh"
fi
[ -x "$VENV/bin/stowage" ] || { echo "no $VENV/bin/stowage: run ./scripts/test or ./scripts/serve once" >&2; exit 1; }

srv_ticks() { # utime+stime (1/100 s) of the Granian main process and its workers
  local t=0 p v
  for p in "$SERVER_PID" $(ps -o pid= --ppid "$SERVER_PID" 2>/dev/null); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# --- start Stowage on a free loopback port with a throw-away data folder
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA_DIR="$(mktemp -d "${SCRATCH_BASE:-/tmp}/stowage-bench-data.XXXXXX")"
SERVER_PID=""
stop_stowage() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  stop_stowage
  if [ "${KEEP_SCRATCH:-0}" = 1 ]; then echo "# Stowage data kept: $DATA_DIR"; else rm -rf "$DATA_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin=(); [ "$PIN_SERVER" = 1 ] && pin=(taskset -c "$SERVER_CPU")
STOWAGE_DATA_DIR="$DATA_DIR" STOWAGE_LOG_LEVEL=warning STOWAGE_RATE_LIMIT_AUTH_PER_IP=100000 \
STOWAGE_DEFAULT_QUOTA_BYTES=1099511627776 \
  "${pin[@]}" "$VENV/bin/stowage" serve --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
  >"$OUT_DIR/stowage.log" 2>&1 &
SERVER_PID=$!   # taskset execs the server, so this is the Granian main process; workers are its children
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 300); do
  curl -sf -o /dev/null --max-time 1 "$BASE/healthz" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "Stowage did not start:" >&2; cat "$OUT_DIR/stowage.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "$BASE/healthz" || { echo "Stowage not ready after 30 s" >&2; exit 1; }

json() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
ACCESS="$(curl -sf "$BASE/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery staple"}' | json access_token)"
PAT="$(curl -sf "$BASE/api/v1/me/tokens" -H "authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["read","write"]}' | json token)"
case "$PAT" in stp_*) ;; *) echo "could not create a personal access token" >&2; exit 1 ;; esac

t0=$(srv_ticks); sleep 3; t1=$(srv_ticks)
IDLE_CPU=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/3}')
{
  echo "# bench/run.sh $(date -u +%FT%TZ): stowage $("$VENV/bin/stowage" version 2>/dev/null | tail -1)," \
       "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')," \
       "workers=$WORKERS pin=$PIN_SERVER port=$PORT pid=$SERVER_PID peers='$PEERS' reps=$REPS dur=${DUR}s workloads='$WORKLOADS'"
  echo "# Stowage idle CPU (main + workers, over 3 s before the run): $IDLE_CPU%"
} | tee "$OUT_DIR/peers.txt"

# --- one peers.sh invocation: Stowage (peer "target") first, then the peers.
# Target must come first: each built-in peer sets the global PORT to its own port (nginx 18080,
# copyparty 13923) and peer_target only reads ${PORT}, so a target listed after them would be sent
# to the previous peer's (closed) port and fail with "server did not start".
# Stowage stays up, idle, while the peers run; its idle CPU use (measured just before) is printed.
# shellcheck disable=SC2086
NAME=stowage HOST=127.0.0.1 PORT="$PORT" SERVER_PID="$SERVER_PID" \
OBJ_PREFIX=/api/v1/content/bench/ PUT_PREFIX=/api/v1/content/bench/put/ AUTH="Bearer $PAT" \
  "$BENCH/peers.sh" target $PEERS 2>&1 | tee -a "$OUT_DIR/peers.txt" || true

if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "# WARNING: Stowage exited during the run" | tee -a "$OUT_DIR/peers.txt"; fi
echo "# Stowage worker processes at the end: $(ps -o pid= --ppid "$SERVER_PID" 2>/dev/null | wc -l)" | tee -a "$OUT_DIR/peers.txt"
stop_stowage
if grep -Eqi 'error|traceback|exception' "$OUT_DIR/stowage.log"; then
  echo "# WARNING: the Stowage log has errors: $OUT_DIR/stowage.log" | tee -a "$OUT_DIR/peers.txt"
fi

# shellcheck disable=SC2086
"$BENCH/table.sh" "$RESULTS" $PEERS stowage >"$OUT_DIR/table.md" || true
echo
cat "$OUT_DIR/table.md"
echo
echo "results: $RESULTS"
echo "output:  $OUT_DIR/peers.txt  table: $OUT_DIR/table.md  server log: $OUT_DIR/stowage.log"
