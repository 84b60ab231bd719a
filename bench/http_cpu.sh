#!/usr/bin/env bash
# CPU per http step: the dispatchers' CPU time (utime + stime from /proc) to
# run N one-step http workflows against bench/sink.c, divided by N.  Unlike
# wall-clock steps/s it hardly moves with what else runs on the machine.
#   bash bench/http_cpu.sh   (as root; N=8000, PORT=5540 (and PORT+1 for the sink),
#                             PG_BINDIR=... for another installation, PERF=1 to record a profile)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
n=${N:-8000} port=${PORT:-5540}
sink_port=$((port + 1))
data=$(mktemp -d /tmp/orchestrator-bench-cpu.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
sink_bin=$(mktemp /tmp/orchestrator-bench-sink.XXXXXX)
cc -O2 -o "$sink_bin" "$root/bench/sink.c"
"$sink_bin" "$sink_port" & sink_pid=$!
sleep 0.3
kill -0 $sink_pid 2>/dev/null || { echo "the sink could not start on port $sink_port"; exit 1; }
trap 'kill $sink_pid 2>/dev/null; PG_BINDIR=$bin bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data" "$sink_bin"' EXIT
PG_BINDIR=$bin bash "$root/test/cluster.sh" start "$data" "$port" bench || { tail -5 "$data/server.log"; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bin/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
q -c "ALTER SYSTEM SET orchestrator.http_allowed_hosts = '127.0.0.1:$sink_port'" \
  -c "ALTER SYSTEM SET orchestrator.http_max_concurrency = 500" -c "SELECT pg_reload_conf()" >/dev/null
q -c "CREATE EXTENSION orchestrator"
q -c "SELECT orchestrator.define_workflow('fast', '{\"steps\": [{\"name\": \"a\", \"kind\": \"http\", \"request\": {\"method\": \"POST\", \"url\": \"http://127.0.0.1:$sink_port/fast\", \"body\": {\"i\": {\"\$path\": \"\$.input.i\"}}}}]}')" >/dev/null
# (the transactions counted are those given an xid: the dispatchers' claims and
# records, and this script's polling, which writes nothing)
# this cluster's dispatchers only (other clusters may run on the machine)
dispatchers() { pgrep -P "$(head -1 "$data/postmaster.pid")" -f "orchestrator dispatcher" -d "${1:- }"; }
cpu() { for p in $(dispatchers); do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd+ | bc; }
q -c "SELECT count(orchestrator.start_workflow('fast', jsonb_build_object('i', g))) FROM generate_series(1, $n) g" >/dev/null
c0=$(cpu); t0=$(date +%s.%N); x0=$(q -c "SELECT pg_current_xact_id()")
[ -n "${PERF:-}" ] && perf record -F 999 -g -p "$(dispatchers ,)" -o "${PERF_DATA:-/tmp/orchestrator-http.perf}" -- sleep 5 >/dev/null 2>&1
while [ "$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status IN ('pending', 'running')")" != 0 ]; do sleep 0.2; done
c1=$(cpu); t1=$(date +%s.%N); x1=$(q -c "SELECT pg_current_xact_id()")
echo "runs=$n  succeeded=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status = 'succeeded'")  wall=$(echo "$t1 - $t0" | bc | cut -c1-5) s  dispatcher cpu=$(echo "($c1 - $c0) / 100" | bc -l | cut -c1-5) s  = $(echo "($c1 - $c0) * 10000 / $n" | bc) us per http step  (transactions with an xid: $(echo "scale=2; ($x1 - $x0) / $n" | bc) per step)"
