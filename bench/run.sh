#!/usr/bin/env bash
# Stowage's HTTP benchmark: W1-W6 of ../shared/bench/peers.sh against nginx, copyparty, a bare
# Granian app, @tus/server and s3rver, all in ONE peers.sh invocation (so every server is measured
# under the same machine conditions), then Stowage-only extras (health check, GET by id, JSON,
# listing, mixed load) against the same running server. Every issue target comes out of one run.
#
#   bench/run.sh                     # full run: REPS=3, DUR=10 s, W1-W6, all peers, all extras
#   bench/run.sh --quick --peers ""  # smoke run, Stowage only, about 2 minutes
#   bench/run.sh --database postgresql://postgres@127.0.0.1:5432/test --peers ""   # on PostgreSQL
#   bench/run.sh --blob-store s3 --peers "" --compare /tmp/local/peers.tsv          # blobs on moto's S3
#   WORKLOADS=W1 EXTRAS="" bench/run.sh --workers 2 --no-pin --peers "" --compare /tmp/one/peers.tsv
#
# Options (or the environment variable in brackets):
#   --quick               REPS=1 DUR=5 WARMUP=1 QUIET_WAIT=5 WORKLOADS="W1 W3 W4 W5" LISTING_FILES=500
#   --workers N           Granian worker processes [WORKERS, default 2 = the machine's core count]
#   --reps N              runs per workload and per extra [REPS, default 3] (W3 always does 3)
#   --dur S               seconds per wrk run [DUR, default 10]
#   --peers "P ..."       peers measured in the same invocation, after Stowage
#                         [PEERS, default "nginx copyparty granian tus s3rver"; "" = Stowage alone]
#   --extras "X ..."      Stowage-only extras, after the peers [EXTRAS, default "HZ BARE W1ID J1 J2 MIX"]
#   --database URL        run Stowage on this PostgreSQL database, in a fresh schema bench_<hex> that is
#                         dropped at exit [BENCH_DATABASE_URL]; the peers are unaffected
#   --blob-store s3       keep Stowage's blobs in an S3 bucket [STOWAGE_BENCH_BLOB_STORE, default local]: on
#                         the server at --s3-endpoint URL [STOWAGE_BENCH_S3_ENDPOINT] (credentials from
#                         STOWAGE_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY), else on moto's S3 server started here
#                         (`python -m moto.server`, not pinned; moto is in-process Python that keeps objects
#                         in RAM, far slower than a real S3: the figures are a floor, not S3's speed)
#   --name NAME           Stowage's column/peer name [STOWAGE_NAME, default stowage, stowage-pg with
#                         --database, -s3 appended with --blob-store s3]
#   --compare TSV         also write compare.md: this run's Stowage medians / those of TSV (an earlier
#                         run's peers.tsv, Stowage named $COMPARE_NAME, default stowage)
#   --out DIR             where results go [OUT_DIR, default /tmp/stowage-bench/<UTC time>]
#   --no-pin              do not pin Stowage (nor the bare Litestar app) to core $SERVER_CPU [PIN_SERVER=0]
# Other knobs: LISTING_FILES (files in the J2 folder, default 10000), and peers.sh's WORKLOADS WARMUP
# QUIET_WAIT QUIET_MAX SERVER_CPU CLIENT_CPU PIN WRK_THREADS NODE_DIR SCRATCH_BASE KEEP_SCRATCH ...
#
# Extras (Stowage only; wrk pinned to core $CLIENT_CPU; REPS runs of DUR s after WARMUP s, median):
#   HZ    GET /healthz, 64 conns, no auth                               -> req/s, p50, p99
#   BARE  the same against bench/bare_litestar.py on Granian, 1 worker,
#         pinned like Stowage (the reference of the /healthz overhead)  -> req/s, p50, p99
#   W1ID  GET /api/v1/nodes/{id}/content of W1's 4 KiB object, 64 conns -> req/s, p50, p99
#   J1    GET /api/v1/me, 64 conns                                      -> req/s, p50, p99
#   J2    GET /api/v1/nodes/{folder}/children?limit=100 of a folder of LISTING_FILES files
#         (filled by bench/populate.py), 16 conns                       -> req/s, p50, p99
#   MIX   W4 (PUT 4 KiB new names, 16 conns) and W1 (GET 4 KiB, 64 conns) at the same time
#                                                                       -> GET and PUT req/s, p50, p99
#
# Method: like the built-in peers, Stowage runs pinned to core $SERVER_CPU (0) with `taskset`, all
# its worker processes included; wrk/curl run on core $CLIENT_CPU (1). So every server gets one core,
# whatever --workers says (unless --no-pin). Everything is on 127.0.0.1. With --database, PostgreSQL
# itself is not pinned: it runs wherever the kernel puts it.
#
# Output in $OUT_DIR: peers.txt (peers.sh output), extras.txt (extras output), peers.tsv (raw values
# of both, one line per run: peer workload metric run value unit), table.md (peers' medians and
# min-max, from ../shared/bench/table.sh), extras.md (the extras' medians and min-max), targets.md
# (each issue target: measured, reference, ratio), compare.md (with --compare), stowage.log, bare.log.
# A full run takes about 25 minutes (more while the machine is busy, because every measured run
# first waits for quiet); it is not part of the test suite (tests/test_bench_smoke.py runs a tiny one).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
BENCH="${BENCH_DIR:-$(cd "$ROOT/../shared/bench" && pwd)}"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
ALL_EXTRAS="HZ BARE W1ID J1 J2 MIX"

WORKERS="${WORKERS:-2}"
PEERS="${PEERS-nginx copyparty granian tus s3rver}"
EXTRAS="${EXTRAS-$ALL_EXTRAS}"
PIN_SERVER="${PIN_SERVER:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
DB_URL="${BENCH_DATABASE_URL:-}"
SNAME="${STOWAGE_NAME:-}"
COMPARE="${COMPARE:-}"
COMPARE_NAME="${COMPARE_NAME:-stowage}"
BLOB_STORE="${STOWAGE_BENCH_BLOB_STORE:-local}"
S3_ENDPOINT="${STOWAGE_BENCH_S3_ENDPOINT:-}"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --workers) WORKERS="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    --dur) DUR="$2"; shift ;;
    --peers) PEERS="$2"; shift ;;
    --extras) EXTRAS="$2"; shift ;;
    --database) DB_URL="$2"; shift ;;
    --name) SNAME="$2"; shift ;;
    --blob-store) BLOB_STORE="$2"; shift ;;
    --s3-endpoint) S3_ENDPOINT="$2"; shift ;;
    --compare) COMPARE="$2"; shift ;;
    --out) OUT_DIR="$2"; shift ;;
    --no-pin) PIN_SERVER=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  REPS="${REPS:-1}"; DUR="${DUR:-5}"; WARMUP="${WARMUP:-1}"; QUIET_WAIT="${QUIET_WAIT:-5}"
  WORKLOADS="${WORKLOADS:-W1 W3 W4 W5}"; LISTING_FILES="${LISTING_FILES:-500}"
fi
# The same defaults as peers.sh, exported so that peers.sh and the extras below use the same values.
export REPS="${REPS:-3}" DUR="${DUR:-10}" WORKLOADS="${WORKLOADS:-W1 W2 W3 W4 W5 W6}" SERVER_CPU CLIENT_CPU
export WARMUP="${WARMUP:-2}" QUIET_WAIT="${QUIET_WAIT:-20}" QUIET_MAX="${QUIET_MAX:-15}"
export PIN="${PIN:-1}" WRK_THREADS="${WRK_THREADS:-1}" NODE_DIR="${NODE_DIR:-/tmp/bench-node}"
LISTING_FILES="${LISTING_FILES:-10000}"
[ -z "$SNAME" ] && { if [ -n "$DB_URL" ]; then SNAME=stowage-pg; else SNAME=stowage; fi
                     [ "$BLOB_STORE" = s3 ] && SNAME="$SNAME-s3"; }
case "$BLOB_STORE" in local|s3) ;; *) echo "--blob-store: local or s3, not $BLOB_STORE" >&2; exit 2 ;; esac
for x in $EXTRAS; do
  case " $ALL_EXTRAS " in *" $x "*) ;; *) echo "unknown extra $x (known: $ALL_EXTRAS)" >&2; exit 2 ;; esac
done
[ -z "$COMPARE" ] || [ -f "$COMPARE" ] || { echo "--compare: no file $COMPARE" >&2; exit 2; }

OUT_DIR="${OUT_DIR:-/tmp/stowage-bench/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT_DIR"
export RESULTS="$OUT_DIR/peers.tsv"
: >"$OUT_DIR/extras.txt"

# --- tools. ../shared/bench/setup.sh installs them (apt, npm into $NODE_DIR, Python venvs); it is
# idempotent but slow and needs root for apt, so it only runs when something the chosen peers need
# is missing, and only the parts that are missing (SKIP_APT / SKIP_NODE / SKIP_PY).
need_apt=0; need_node=0; need_py=0
for tool in wrk curl; do command -v "$tool" >/dev/null || need_apt=1; done
for p in $PEERS; do
  case "$p" in
    nginx) command -v nginx >/dev/null || need_apt=1 ;;
    tus|s3rver)   # Node peers: node itself (apt) and the npm packages in $NODE_DIR
      command -v node >/dev/null || need_apt=1
      mod=s3rver; [ "$p" = tus ] && mod=@tus/server
      [ -d "$NODE_DIR/node_modules/$mod" ] || need_node=1 ;;
    copyparty) [ -x "${COPYPARTY_VENV:-/tmp/venv-copyparty}/bin/copyparty" ] || need_py=1 ;;
    granian) [ -x "${GRANIAN_VENV:-/tmp/venv-granian}/bin/granian" ] || need_py=1 ;;
    tuspy) [ -x "${TUSPY_VENV:-/tmp/venv-tuspy}/bin/granian" ] || need_py=1 ;;
    *) echo "unknown peer $p (nginx copyparty granian tus s3rver tuspy)" >&2; exit 2 ;;
  esac
done
if [ $((need_apt + need_node + need_py)) -gt 0 ]; then
  echo "# tools missing: running $BENCH/setup.sh (apt: $need_apt, node: $need_node, python peers: $need_py)"
  SKIP_APT=$((1 - need_apt)) SKIP_NODE=$((1 - need_node)) SKIP_PY=$((1 - need_py)) "$BENCH/setup.sh"
fi
# Checked again after setup.sh, which does not install taskset (util-linux) or openssl.
for tool in wrk curl taskset openssl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install wrk curl util-linux openssl)" >&2; exit 1; }
done
[ -x "$VENV/bin/stowage" ] || { echo "no $VENV/bin/stowage: run ./scripts/test or ./scripts/serve once" >&2; exit 1; }

pid_ticks() { # PID: utime+stime (1/100 s) of the process and its children (Granian main + workers)
  local t=0 p v
  [ -n "$1" ] || { echo 0; return; }
  for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_time() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }   # PID -> its start tick
stop_pid() { # PID: TERM, wait up to 35 s (Granian gives its workers 30 s), then KILL; then its leftover children
  local pid=$1 kids="" k
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  # Remember the children (Granian workers) with their start times: a worker that does not stop
  # with its main process (seen with one still starting up) is orphaned and would run forever.
  for k in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kids="$kids $k:$(start_time "$k")"; done
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  for k in $kids; do   # still the same process (same start time), so not a reused PID: KILL it
    for _ in $(seq 20); do kill -0 "${k%%:*}" 2>/dev/null || break; sleep 0.1; done
    [ "$(start_time "${k%%:*}")" = "${k#*:}" ] && kill -KILL "${k%%:*}" 2>/dev/null
  done
  return 0
}
# the URL with its password hidden, for the header
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# --- everything temporary lives in one folder: Stowage's data folder and peers.sh's scratch (via
# SCRATCH_BASE). peers.sh is told to keep its scratch (KEEP_SCRATCH=1) and this script deletes the
# whole folder at exit: a mass delete makes file creation slow for minutes on this machine
# (BASELINE.md), and it would otherwise happen right before the extras' uploads (J2, MIX).
WORK="$(mktemp -d "${SCRATCH_BASE:-/tmp}/stowage-bench.XXXXXX")"
DATA_DIR="$WORK/data"
mkdir -p "$DATA_DIR"
SERVER_PID=""; BARE_PID=""; DB_SCHEMA=""; S3_PID=""
drop_schema() { # the fresh PostgreSQL schema of --database, with everything in it
  [ -n "$DB_SCHEMA" ] || return 0
  "$PY" - "$DB_URL" "$DB_SCHEMA" <<'EOF' || echo "# WARNING: could not drop schema $DB_SCHEMA" >&2
import asyncio, sys
import asyncpg
async def main(url: str, schema: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
EOF
  DB_SCHEMA=""
}
cleanup() {
  stop_pid "$BARE_PID"; BARE_PID=""
  stop_pid "$SERVER_PID"; SERVER_PID=""
  stop_pid "$S3_PID"; S3_PID=""
  drop_schema
  if [ "${KEEP_SCRATCH:-0}" = 1 ]; then echo "# Stowage data and peers' scratch kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- start Stowage on a free loopback port with a throw-away data folder (and database schema)
PORT="$(free_port)"
db_env=()
if [ -n "$DB_URL" ]; then
  DB_SCHEMA="bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  db_env=(STOWAGE_DATABASE_URL="$DB_URL" STOWAGE_DATABASE_SCHEMA="$DB_SCHEMA")   # the server creates it
fi
# --blob-store s3: the bucket's server (moto's, started here, unless --s3-endpoint names one)
s3_env=()
if [ "$BLOB_STORE" = s3 ]; then
  if [ -z "$S3_ENDPOINT" ]; then
    "$PY" -c 'import moto.server, flask_cors' 2>/dev/null || { echo "--blob-store s3 needs moto[server] in $VENV (pip install -e '.[test]')" >&2; exit 1; }
    S3_PORT="$(free_port)"
    "$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$OUT_DIR/moto.log" 2>&1 &
    S3_PID=$!
    S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
    for _ in $(seq 300); do curl -s -o /dev/null --max-time 1 "$S3_ENDPOINT/moto-api/" && break; sleep 0.1; done
  fi
  s3_env=(STOWAGE_BLOB_STORE=s3 STOWAGE_S3_ENDPOINT_URL="$S3_ENDPOINT" STOWAGE_S3_BUCKET="${STOWAGE_S3_BUCKET:-stowage-bench}"
          STOWAGE_S3_CREATE_BUCKET=true STOWAGE_S3_ADDRESSING_STYLE=path
          STOWAGE_S3_ACCESS_KEY_ID="${STOWAGE_S3_ACCESS_KEY_ID:-bench}"
          STOWAGE_S3_SECRET_ACCESS_KEY="${STOWAGE_S3_SECRET_ACCESS_KEY:-bench-secret}")
fi
pin=(); [ "$PIN_SERVER" = 1 ] && pin=(taskset -c "$SERVER_CPU")
env STOWAGE_DATA_DIR="$DATA_DIR" STOWAGE_LOG_LEVEL=warning STOWAGE_RATE_LIMIT_AUTH_PER_IP=100000 \
  STOWAGE_DEFAULT_QUOTA_BYTES=1099511627776 "${db_env[@]}" "${s3_env[@]}" \
  "${pin[@]}" "$VENV/bin/stowage" serve --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
  >"$OUT_DIR/stowage.log" 2>&1 &
# env and taskset exec the server, so this is the Granian main process; workers are its children
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
wait_up() { # URL PID LOG: wait up to 30 s for a 2xx from URL
  for _ in $(seq 300); do
    curl -sf -o /dev/null --max-time 1 "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server did not start:" >&2; cat "$3" >&2; return 1; }
    sleep 0.1
  done
  echo "server not ready after 30 s: $1" >&2; return 1
}
wait_up "$BASE/healthz" "$SERVER_PID" "$OUT_DIR/stowage.log"

json() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
ACCESS="$(curl -sf --max-time 30 "$BASE/api/v1/auth/signup" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse battery staple"}' | json access_token)"
PAT="$(curl -sf --max-time 30 "$BASE/api/v1/me/tokens" -H "authorization: Bearer $ACCESS" -H 'content-type: application/json' \
  -d '{"name":"bench","scopes":["read","write"]}' | json token)"
case "$PAT" in stp_*) ;; *) echo "could not create a personal access token" >&2; exit 1 ;; esac

t0=$(pid_ticks "$SERVER_PID"); sleep 3; t1=$(pid_ticks "$SERVER_PID")
IDLE_CPU=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/3}')
{
  echo "# bench/run.sh $(date -u +%FT%TZ): stowage $("$VENV/bin/stowage" version 2>/dev/null | tail -1)," \
       "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')," \
       "name=$SNAME workers=$WORKERS pin=$PIN_SERVER port=$PORT pid=$SERVER_PID peers='$PEERS' reps=$REPS dur=${DUR}s" \
       "workloads='$WORKLOADS' extras='$EXTRAS' listing_files=$LISTING_FILES"
  echo "# database: $(if [ -n "$DB_URL" ]; then echo "PostgreSQL $(redact "$DB_URL") schema $DB_SCHEMA"; else echo "SQLite in the data folder"; fi)"
  echo "# blob store: $(if [ "$BLOB_STORE" = s3 ]; then echo "S3 bucket at $S3_ENDPOINT$([ -n "$S3_PID" ] && echo " (moto, started here, unpinned)")"; else echo "the local data folder"; fi)"
  echo "# Stowage idle CPU (main + workers, over 3 s before the run): $IDLE_CPU%"
} | tee "$OUT_DIR/peers.txt"

# --- one peers.sh invocation: Stowage (peer "target") and the peers. peers.sh reads the target's
# settings (PORT, prefixes) once at its start, so `target` could be in any position; it comes first
# so that its W4 creates files before the peers have filled the disk with theirs.
# Stowage stays up, idle, while the peers run; its idle CPU use (measured just before) is printed.
# shellcheck disable=SC2086
NAME="$SNAME" HOST=127.0.0.1 PORT="$PORT" SERVER_PID="$SERVER_PID" SCRATCH_BASE="$WORK" KEEP_SCRATCH=1 \
OBJ_PREFIX=/api/v1/content/bench/ PUT_PREFIX=/api/v1/content/bench/put/ TUS_PATH=/api/v1/uploads/ AUTH="Bearer $PAT" \
  "$BENCH/peers.sh" target $PEERS 2>&1 | tee -a "$OUT_DIR/peers.txt" || true
echo "# (the peers' scratch is deleted by bench/run.sh at its exit, after the extras)" | tee -a "$OUT_DIR/peers.txt"

# =====================================================================================================
# Extras: Stowage-only workloads against the same running server, recorded in the same TSV as
# peers.sh's (`peer workload metric run value unit`, run = "<run id>.<rep>"), with the same method:
# WARMUP s unrecorded, then REPS runs of DUR s, each after waiting for a quiet machine.
export LUA_DIR="$BENCH/lua"
XRUN="x$(date +%s)$$"
WRK_OUT="$WORK/wrk"; mkdir -p "$WRK_OUT"
say() { echo "$*" | tee -a "$OUT_DIR/extras.txt"; }
cl() { if [ "$PIN" = 1 ]; then taskset -c "$CLIENT_CPU" "$@"; else "$@"; fi; }
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }   # peer workload metric run value unit
core_ticks() { awk '$1=="cpu0"||$1=="cpu1"{b=$2+$3+$4+$7+$8+$9; printf "%d ", b} END{print ""}' /proc/stat; }
wait_quiet() { # as in peers.sh: wait up to QUIET_WAIT s for both cores together < QUIET_MAX % busy
  local t=0 a b
  while :; do
    a=$(core_ticks); sleep 1; b=$(core_ticks)
    PRE_BUSY=$(awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); print (y[1]-x[1]) + (y[2]-x[2])}')
    [ "$PRE_BUSY" -le "$QUIET_MAX" ] && return 0
    t=$((t + 1)); [ "$t" -ge "$QUIET_WAIT" ] && return 0   # waited long enough: run anyway (pre_busy shows it)
  done
}
wrk_go() { # seconds conns script url outfile (lua env: AUTH, PUT_PREFIX, RUN_ID, BODY_SIZE)
  cl wrk -t"$WRK_THREADS" -c"$2" -d"${1}s" --timeout 10s -s "$LUA_DIR/$3" "$4" >"$5" 2>&1 || true
}
parse_result() { # wrk output file -> "req_s p50_ms p99_ms errors", from the RESULT line of lua/common.lua
  awk '/^RESULT /{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } ok = 1 }
       END { if (!ok || v["duration_us"] <= 0) { print "ERR ERR ERR ERR"; exit }
             e = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
             printf "%.0f %.2f %.2f %d\n", v["requests"] / (v["duration_us"] / 1e6), v["p50_us"] / 1000, v["p99_us"] / 1000, e }' "$1"
}
cpu_pct() { awk -v a="$1" -v b="$2" -v s="$DUR" 'BEGIN{printf "%.0f", (b-a)/s}'; }   # % of one core
# median/min/max and labels (awk functions, shared by the summary lines and the tables)
AWK_STATS='
function sortv(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; j = i - 1; while (j > 0 && a[j] > x) { a[j+1] = a[j]; j-- } a[j+1] = x } }
function median(a, n) { sortv(a, n); return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
function fmt(x) { return (x >= 100 || x <= -100) ? sprintf("%.0f", x) : sprintf("%.2f", x) }
function fmtu(x, u) { return (u == "%" || u == "count") ? sprintf("%.0f", x) : fmt(x) }
# metric name -> words: req_s -> "", p99_ms -> "p99", get_p99_ms -> "GET p99", srv_cpu -> "server CPU"
function label(m) {
  if (m == "srv_cpu") return "server CPU"
  if (m == "pre_busy") return "busy before run"
  sub(/_ms$/, "", m); sub(/(req|mib)_s$/, "", m); gsub(/_/, " ", m)
  sub(/^get/, "GET", m); sub(/^put/, "PUT", m); sub(/ +$/, "", m)
  return m
}'
summary() { # peer workload what: one line with the median (and min-max) of every metric of this run
  local line
  line=$(awk -F'\t' -v p="$1" -v w="$2" -v r="$XRUN" "$AWK_STATS"'
    $1 == p && $2 == w && index($4, r ".") == 1 && $3 != "pre_busy" {
      if (!($3 in n)) { order[++m] = $3; unit[$3] = $6; n[$3] = 0 }
      if ($5 == "ERR") { bad[$3] = 1; next }
      v[$3, ++n[$3]] = $5 + 0 }
    END {
      for (k = 1; k <= m; k++) {
        x = order[k]; c = n[x]; runs = (c > runs) ? c : runs
        if (!c) { out = out sprintf(", %s ERR", x); continue }
        for (i = 1; i <= c; i++) a[i] = v[x, i]
        if (x == "errors") { s = 0; for (i = 1; i <= c; i++) s += a[i]; out = out sprintf(", errors %d", s); continue }
        med = median(a, c); l = label(x)
        out = out sprintf(", %s%s %s", (l == "") ? "" : l " ", fmtu(med, unit[x]), unit[x])
        if (c > 1) out = out sprintf(" (%s-%s)", fmtu(a[1], unit[x]), fmtu(a[c], unit[x]))
        if (bad[x]) out = out " +ERR"
      }
      printf "%s, n=%d", substr(out, 3), runs }' "$RESULTS")
  say "$1 $2 ($3): ${line:-ERR nothing recorded}"
}
check_get() { # url auth what: one GET must answer 200 before the extra is measured
  local a=() code
  [ -n "$2" ] && a=(-H "Authorization: $2")
  code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "${a[@]}" "$1") || true
  [ "$code" = 200 ] && return 0
  say "# $3: GET $1 -> $code (want 200); not measured"
  return 1
}
fail_extra() { record "$1" "$2" req_s "$XRUN.0" ERR req/s; say "$1 $2: ERR $3"; }

# extra_wrk peer workload label conns url auth pid: GET url with get.lua, REPS times
extra_wrk() {
  local peer=$1 w=$2 label=$3 conns=$4 url=$5 auth=$6 pid=$7 i f t0 t1 req p50 p99 err cpu
  check_get "$url" "$auth" "$peer $w" || { fail_extra "$peer" "$w" "GET failed"; return 0; }
  [ "$WARMUP" -gt 0 ] && AUTH="$auth" wrk_go "$WARMUP" "$conns" get.lua "$url" "$WRK_OUT/warm"
  for i in $(seq "$REPS"); do
    wait_quiet; record "$peer" "$w" pre_busy "$XRUN.$i" "$PRE_BUSY" %
    f="$WRK_OUT/$w.$i"
    t0=$(pid_ticks "$pid"); AUTH="$auth" wrk_go "$DUR" "$conns" get.lua "$url" "$f"; t1=$(pid_ticks "$pid")
    read -r req p50 p99 err < <(parse_result "$f")
    cpu=$(cpu_pct "$t0" "$t1")
    [ "$req" = ERR ] && { echo "wrk failed:" >&2; cat "$f" >&2; cpu=ERR; }
    say "# $peer $w run$i: $req req/s, p50 $p50 ms, p99 $p99 ms, errors $err, server cpu $cpu%, busy-before $PRE_BUSY%"
    record "$peer" "$w" req_s "$XRUN.$i" "$req" req/s; record "$peer" "$w" p50_ms "$XRUN.$i" "$p50" ms
    record "$peer" "$w" p99_ms "$XRUN.$i" "$p99" ms; record "$peer" "$w" errors "$XRUN.$i" "$err" count
    record "$peer" "$w" srv_cpu "$XRUN.$i" "$cpu" %
  done
  summary "$peer" "$w" "$label"
}

# MIX: W4's PUTs (put.lua, 16 conns, new names under bench/mix/) and W1's GETs (get.lua, 64 conns)
# as two wrk processes running at the same time, both on the client core.
mix_pair() { # seconds run_id put_out get_out
  PUT_PREFIX=/api/v1/content/bench/mix/ RUN_ID="$2" BODY_SIZE=4096 AUTH="Bearer $PAT" \
    wrk_go "$1" 16 put.lua "$BASE/" "$3" &
  local put_pid=$!
  AUTH="Bearer $PAT" wrk_go "$1" 64 get.lua "$GET_4K_URL" "$4" &
  local get_pid=$!
  wait "$put_pid" "$get_pid" || true
}
extra_mix() {
  local i t0 t1 greq gp50 gp99 gerr preq pp50 pp99 perr cpu
  check_get "$GET_4K_URL" "Bearer $PAT" "$SNAME MIX" || { fail_extra "$SNAME" MIX "GET failed"; return 0; }
  [ "$WARMUP" -gt 0 ] && mix_pair "$WARMUP" "mw$XRUN" "$WRK_OUT/warm.put" "$WRK_OUT/warm.get"
  for i in $(seq "$REPS"); do
    wait_quiet; record "$SNAME" MIX pre_busy "$XRUN.$i" "$PRE_BUSY" %
    t0=$(pid_ticks "$SERVER_PID"); mix_pair "$DUR" "m$XRUN$i" "$WRK_OUT/MIX.put.$i" "$WRK_OUT/MIX.get.$i"
    t1=$(pid_ticks "$SERVER_PID"); cpu=$(cpu_pct "$t0" "$t1")
    read -r greq gp50 gp99 gerr < <(parse_result "$WRK_OUT/MIX.get.$i")
    read -r preq pp50 pp99 perr < <(parse_result "$WRK_OUT/MIX.put.$i")
    [ "$greq" = ERR ] && { echo "wrk (GET) failed:" >&2; cat "$WRK_OUT/MIX.get.$i" >&2; }
    [ "$preq" = ERR ] && { echo "wrk (PUT) failed:" >&2; cat "$WRK_OUT/MIX.put.$i" >&2; }
    say "# $SNAME MIX run$i: GET $greq req/s p50 $gp50 ms p99 $gp99 ms, PUT $preq req/s p50 $pp50 ms p99 $pp99 ms," \
        "errors $gerr+$perr, server cpu $cpu%, busy-before $PRE_BUSY%"
    record "$SNAME" MIX get_req_s "$XRUN.$i" "$greq" req/s; record "$SNAME" MIX get_p50_ms "$XRUN.$i" "$gp50" ms
    record "$SNAME" MIX get_p99_ms "$XRUN.$i" "$gp99" ms; record "$SNAME" MIX put_req_s "$XRUN.$i" "$preq" req/s
    record "$SNAME" MIX put_p50_ms "$XRUN.$i" "$pp50" ms; record "$SNAME" MIX put_p99_ms "$XRUN.$i" "$pp99" ms
    if [ "$gerr" = ERR ] || [ "$perr" = ERR ]; then record "$SNAME" MIX errors "$XRUN.$i" ERR count
    else record "$SNAME" MIX errors "$XRUN.$i" $((gerr + perr)) count; fi
    record "$SNAME" MIX srv_cpu "$XRUN.$i" "$cpu" %
  done
  summary "$SNAME" MIX "PUT 4 KiB x16 + GET 4 KiB x64 at once"
}

extra_bare() { # bench/bare_litestar.py on Granian, 1 worker, pinned like Stowage; stopped afterwards
  local bport
  bport="$(free_port)"
  "${pin[@]}" "$VENV/bin/granian" --interface asgi --host 127.0.0.1 --port "$bport" --workers 1 --no-ws \
    --log-level warning --working-dir "$HERE" bare_litestar:app >"$OUT_DIR/bare.log" 2>&1 &
  BARE_PID=$!
  if wait_up "http://127.0.0.1:$bport/healthz" "$BARE_PID" "$OUT_DIR/bare.log"; then
    extra_wrk bare-litestar BARE "bare Litestar GET /healthz, 64 conns" 64 "http://127.0.0.1:$bport/healthz" "" "$BARE_PID"
  else
    fail_extra bare-litestar BARE "bare Litestar app did not start"
  fi
  stop_pid "$BARE_PID"; BARE_PID=""
}

GET_4K_URL="$BASE/api/v1/content/bench/obj-4k"
if [ -n "$EXTRAS" ]; then
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    say "# extras $(date -u +%FT%TZ) run=$XRUN reps=$REPS dur=${DUR}s warmup=${WARMUP}s extras='$EXTRAS' client_cpu=$CLIENT_CPU"
    # W1's object normally exists (peers.sh creates it in its setup step); make it if not.
    if ! curl -sf --max-time 30 -o /dev/null -H "Authorization: Bearer $PAT" "$GET_4K_URL"; then
      head -c 4096 /dev/urandom | curl -sf --max-time 30 -o /dev/null -T - -H "Authorization: Bearer $PAT" "$GET_4K_URL" ||
        say "# could not create bench/obj-4k"
    fi
    for x in $EXTRAS; do
      kill -0 "$SERVER_PID" 2>/dev/null || { fail_extra "$SNAME" "$x" "Stowage is not running"; continue; }
      case "$x" in
        HZ) extra_wrk "$SNAME" HZ "GET /healthz, 64 conns" 64 "$BASE/healthz" "" "$SERVER_PID" ;;
        BARE) extra_bare ;;
        W1ID)
          id=$(curl -sf --max-time 30 -H "Authorization: Bearer $PAT" "$BASE/api/v1/paths/bench/obj-4k" | json id) || id=""
          if [ -n "$id" ]; then
            extra_wrk "$SNAME" W1ID "GET 4 KiB by id, 64 conns" 64 "$BASE/api/v1/nodes/$id/content" "Bearer $PAT" "$SERVER_PID"
          else fail_extra "$SNAME" W1ID "no id for bench/obj-4k"; fi ;;
        J1) extra_wrk "$SNAME" J1 "GET /api/v1/me, 64 conns" 64 "$BASE/api/v1/me" "Bearer $PAT" "$SERVER_PID" ;;
        J2)
          # Fill the folder first (unmeasured, not pinned: it is setup), then list its first page.
          say "# $SNAME J2: uploading $LISTING_FILES files to bench/listing"
          if folder=$(STOWAGE_TOKEN="$PAT" "$PY" "$HERE/populate.py" --base-url "$BASE" --folder bench/listing \
                        --count "$LISTING_FILES" 2> >(tee -a "$OUT_DIR/extras.txt" >&2)); then
            extra_wrk "$SNAME" J2 "GET children?limit=100 of a $LISTING_FILES-file folder, 16 conns" 16 \
              "$BASE/api/v1/nodes/$folder/children?limit=100" "Bearer $PAT" "$SERVER_PID"
          else fail_extra "$SNAME" J2 "populate.py failed"; fi ;;
        MIX) extra_mix ;;
      esac
    done
  else
    say "# extras skipped: Stowage is not running"
    for x in $EXTRAS; do fail_extra "$SNAME" "$x" "Stowage is not running"; done
  fi
fi

if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "# WARNING: Stowage exited during the run" | tee -a "$OUT_DIR/peers.txt"; fi
echo "# Stowage worker processes at the end: $(ps -o pid= --ppid "$SERVER_PID" 2>/dev/null | wc -l)" | tee -a "$OUT_DIR/peers.txt"
stop_pid "$SERVER_PID"; SERVER_PID=""
if grep -Eqi 'error|traceback|exception' "$OUT_DIR/stowage.log"; then
  echo "# WARNING: the Stowage log has errors: $OUT_DIR/stowage.log" | tee -a "$OUT_DIR/peers.txt"
fi

# =====================================================================================================
# Tables. table.sh knows W1-W6 only (it ignores the extras' rows); extras.md has the extras;
# targets.md puts each issue target next to its reference.
# shellcheck disable=SC2086
"$BENCH/table.sh" "$RESULTS" $PEERS "$SNAME" >"$OUT_DIR/table.md" || true

awk -F'\t' -v want="$ALL_EXTRAS" -v files="$LISTING_FILES" "$AWK_STATS"'
  BEGIN {
    nw = split(want, ws, " "); for (i = 1; i <= nw; i++) isx[ws[i]] = 1
    what["HZ"] = "GET /healthz, 64 conns"; what["BARE"] = "bare Litestar app: GET /healthz, 64 conns"
    what["W1ID"] = "GET 4 KiB by id, 64 conns"; what["J1"] = "GET /api/v1/me, 64 conns"
    what["J2"] = "GET a page of 100 from a " files "-file folder, 16 conns"
    what["MIX"] = "W4 PUT x16 and W1 GET x64 at once"
  }
  isx[$2] {
    g = $1 SUBSEP $2; k = g SUBSEP $3
    if (!(g in gseen)) { gseen[g] = 1; groups[++ng] = g }
    if (!(k in seen)) { seen[k] = 1; mets[g, ++nm[g]] = $3; unit[k] = $6 }
    if ($5 == "ERR") { bad[k] = 1; next }
    val[k, ++cnt[k]] = $5 + 0
  }
  function row(g, x,   k, gg, m, i, a, s, med, rng, l) {
    k = g SUBSEP x; split(g, gg, SUBSEP); m = cnt[k]; l = label(x)
    l = (x == "errors") ? "errors" : (l == "" ? "" : l " ") unit[k] (x == "pre_busy" ? ", max" : "")
    if (!m) { printf "| %s | %s | %s | %s | ERR | - | 0 |\n", gg[2], gg[1], what[gg[2]], l; return }
    for (i = 1; i <= m; i++) a[i] = val[k, i]
    if (x == "errors") { s = 0; for (i = 1; i <= m; i++) s += a[i]; med = sprintf("%d", s); rng = "(sum)" }
    else if (x == "pre_busy") { sortv(a, m); med = sprintf("%.0f", a[m]); rng = "-" }
    else { med = "**" fmtu(median(a, m), unit[k]) "**"; rng = fmtu(a[1], unit[k]) "-" fmtu(a[m], unit[k]) }
    printf "| %s | %s | %s | %s | %s | %s | %d%s |\n", gg[2], gg[1], what[gg[2]], l, med, rng, m, bad[k] ? " +ERR" : ""
  }
  END {
    print "| extra | server | what | metric | median | min-max | runs |"
    print "|---|---|---|---|---|---|---|"
    for (j = 1; j <= ng; j++) {   # the metrics in the order recorded, the busy-before figure last
      for (i = 1; i <= nm[groups[j]]; i++) if (mets[groups[j], i] != "pre_busy") row(groups[j], mets[groups[j], i])
      if ((groups[j] SUBSEP "pre_busy") in seen) row(groups[j], "pre_busy")
    }
  }' "$RESULTS" >"$OUT_DIR/extras.md"

# Each target: medians over this run's TSV. kind: ratio (value >= factor x reference), max (<=), lt (<),
# min (>=). PostgreSQL (>= 0.7x SQLite) and two workers (>= 1.6x one) need two runs: see --compare.
S="$SNAME"
awk "$AWK_STATS"'
  FNR == NR { if ($0 ~ /[|]/) spec[++ns] = $0; next }   # first the target list (stdin), then the TSV
  {
    split($0, f, "\t"); if (f[5] == "ERR") next
    k = f[1] SUBSEP f[2] SUBSEP f[3]; val[k, ++cnt[k]] = f[5] + 0
  }
  function med(p, w, m,   k, c, i, a) {
    k = p SUBSEP w SUBSEP m; c = cnt[k]; if (!c) return ""
    for (i = 1; i <= c; i++) a[i] = val[k, i]
    return median(a, c)
  }
  END {
    print "| target | measured | reference | ratio or limit | met |"
    print "|---|---|---|---|---|"
    for (s = 1; s <= ns; s++) {
      split(spec[s], t, "|")   # label|peer|workload|metric|kind|factor|ref peer|ref workload|ref metric
      v = med(t[2], t[3], t[4]); vs = (v == "") ? "-" : fmt(v) " (" t[2] " " t[3] ")"
      if (t[5] == "ratio") {
        r = med(t[7], t[8], t[9]); rs = (r == "") ? "-" : fmt(r) " (" t[7] " " t[8] ")"
        if (v == "" || r == "" || r == 0) { ratio = "- (need >= " t[6] "x)"; met = "not measured" }
        else { ratio = sprintf("%.2fx (need >= %sx)", v / r, t[6]); met = (v >= t[6] * r) ? "yes" : "NO" }
      } else {
        rs = "-"
        ratio = ((t[5] == "max") ? "<= " : (t[5] == "lt") ? "< " : ">= ") t[6]
        if (v == "") met = "not measured"
        else met = ((t[5] == "max" && v <= t[6]) || (t[5] == "lt" && v < t[6]) || (t[5] == "min" && v >= t[6])) ? "yes" : "NO"
      }
      printf "| %s | %s | %s | %s | %s |\n", t[1], vs, rs, ratio, met
    }
  }' - "$RESULTS" >"$OUT_DIR/targets.md" <<EOF
W1 GET 4 KiB by path x64: req/s vs copyparty|$S|W1|req_s|ratio|1.0|copyparty|W1|req_s
W1 req/s vs bare Granian|$S|W1|req_s|ratio|0.5|granian|W1|req_s
W1 p99 ms|$S|W1|p99_ms|max|20
W1ID GET 4 KiB by id x64: req/s vs copyparty (W1)|$S|W1ID|req_s|ratio|1.0|copyparty|W1|req_s
W1ID req/s vs bare Granian (W1)|$S|W1ID|req_s|ratio|0.5|granian|W1|req_s
W1ID p99 ms|$S|W1ID|p99_ms|max|20
W2 GET 1 MiB x16: MiB/s vs nginx|$S|W2|mib_s|ratio|0.7|nginx|W2|mib_s
W3 GET 1 GiB: MiB/s vs bare Granian|$S|W3|mib_s|ratio|0.9|granian|W3|mib_s
W4 PUT 4 KiB new names x16: req/s vs @tus/server|$S|W4|req_s|ratio|1.0|tus|W4|req_s
W4 req/s vs s3rver|$S|W4|req_s|ratio|1.0|s3rver|W4|req_s
W4 p99 ms|$S|W4|p99_ms|max|50
W5 PUT 256 MiB: MiB/s vs copyparty|$S|W5|mib_s|ratio|1.2|copyparty|W5|mib_s
W6 tus 256 MiB in 8 MiB PATCHes: MiB/s vs @tus/server|$S|W6|mib_s|ratio|1.0|tus|W6|mib_s
MIX (W1 and W4 at once): GET p99 ms|$S|MIX|get_p99_ms|max|50
J1 GET /api/v1/me: req/s|$S|J1|req_s|min|3000
J2 listing page of 100: p50 ms|$S|J2|p50_ms|lt|10
HZ /healthz: req/s vs bare Litestar|$S|HZ|req_s|ratio|0.75|bare-litestar|BARE|req_s
EOF

# --compare: this run's Stowage medians over an earlier run's (PostgreSQL vs SQLite: >= 0.7x;
# two unpinned workers vs one: W1 >= 1.6x). Every metric both runs have, except CPU and busy.
if [ -n "$COMPARE" ]; then
  awk -F'\t' -v cur="$SNAME" -v ref="$COMPARE_NAME" -v reffile="$COMPARE" "$AWK_STATS"'
    $5 == "ERR" || $3 == "pre_busy" || $3 == "srv_cpu" || $3 == "errors" { next }
    {
      side = (FILENAME == reffile) ? "ref" : "cur"
      if ((side == "ref" && $1 != ref) || (side == "cur" && $1 != cur)) next
      k = $2 SUBSEP $3; if (!(k in seen)) { seen[k] = 1; rows[++nr] = k; unit[k] = $6 }
      val[side, k, ++cnt[side, k]] = $5 + 0
    }
    function med(side, k,   c, i, a) { c = cnt[side, k]; if (!c) return ""; for (i = 1; i <= c; i++) a[i] = val[side, k, i]; return median(a, c) }
    END {
      print "Targets: on PostgreSQL, each throughput >= 0.7x SQLite; two unpinned workers, W1 >= 1.6x one worker.\n"
      printf "| workload | metric | %s (this run) | %s (%s) | ratio |\n|---|---|---|---|---|\n", cur, ref, reffile
      for (r = 1; r <= nr; r++) {
        k = rows[r]; split(k, kk, SUBSEP); a = med("cur", k); b = med("ref", k)
        if (a == "" || b == "") continue
        l = label(kk[2]); l = (l == "" ? "" : l " ") unit[k]
        printf "| %s | %s | **%s** | %s | %s |\n", kk[1], l, fmt(a), fmt(b), (b != 0) ? sprintf("%.2fx", a / b) : "-"
      }
    }' "$COMPARE" "$RESULTS" >"$OUT_DIR/compare.md"
fi

echo
cat "$OUT_DIR/table.md"
if [ -n "$EXTRAS" ]; then echo; cat "$OUT_DIR/extras.md"; fi
echo; cat "$OUT_DIR/targets.md"
if [ -n "$COMPARE" ]; then echo; cat "$OUT_DIR/compare.md"; fi
echo
echo "results: $RESULTS"
echo "output:  $OUT_DIR/{peers.txt,extras.txt,table.md,extras.md,targets.md$([ -n "$COMPARE" ] && echo ,compare.md)}  server log: $OUT_DIR/stowage.log"
