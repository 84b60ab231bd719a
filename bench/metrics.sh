#!/usr/bin/env bash
# What the counters of metrics() (and span export) cost the dispatchers: the
# same no-op workflows dispatched by two builds, alternately, on throwaway
# clusters: BASE_BINDIR (a build without them, the baseline) and PG_BINDIR
# (this one), then this one again with orchestrator.otlp_endpoint set to a
# sink that accepts everything.  Prints every figure and the command.
#   BASE_BINDIR=/path/to/base/bin PG_BINDIR=/path/to/this/bin bash bench/metrics.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${BASE_BINDIR:?BASE_BINDIR: the bin directory of a baseline installation}
this=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
runs=${RUNS:-2000}
reps=${REPS:-3}
port=${PORT:-55520}
sink_port=$((port + 1))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# CPU time (ms) used so far by the processes of the cluster in $1 (the
# postmaster's children): on a shared machine a steadier measure than
# throughput, which other load moves.
cpu_ms() {
	local pm tick=$(getconf CLK_TCK)
	pm=$(head -1 "$1/postmaster.pid")
	for p in $(pgrep -P "$pm"); do cat "/proc/$p/stat" 2>/dev/null; done |
		awk -v t="$tick" '{ s += $14 + $15 } END { printf "%d", s * 1000 / t }'
}

python3 "$root/test/client/http_sink.py" "$sink_port" &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT

measure() {	# bindir label [otlp]: prints one line per repetition
	local bindir=$1 label=$2 otlp=${3:-} data rep t0 t1
	data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
	[ "$(id -u)" = 0 ] && chown postgres: "$data"
	PG_BINDIR=$bindir bash "$root/test/cluster.sh" start "$data" "$port" bench
	if [ -n "$otlp" ]; then
		echo "orchestrator.otlp_endpoint = 'http://127.0.0.1:$sink_port'" >> "$data/postgresql.conf"
		as_pg "$bindir/pg_ctl" -D "$data" reload >/dev/null
	fi
	q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
	q -c "CREATE EXTENSION orchestrator" >/dev/null
	q -c "SELECT orchestrator.define_workflow('noop3', '{\"steps\": [{\"name\": \"a\", \"kind\": \"sql\", \"sql\": \"SELECT 1 AS one\"},
		{\"name\": \"b\", \"kind\": \"sql\", \"sql\": \"SELECT 2 AS two\", \"depends_on\": [\"a\"]},
		{\"name\": \"c\", \"kind\": \"sql\", \"sql\": \"SELECT 3 AS three\", \"depends_on\": [\"b\"]}]}')" >/dev/null
	for rep in $(seq 1 "$reps"); do
		c0=$(cpu_ms "$data")
		t0=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
		q -c "SELECT count(orchestrator.start_workflow('noop3')) FROM generate_series(1, $runs)" >/dev/null
		t1=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
		while [ "$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status IN ('pending', 'running')")" != 0 ]; do sleep 0.2; done
		c1=$(cpu_ms "$data")
		q -c "SELECT format('%s rep=%s runs=%s start_rate=%s/s dispatch_runs/s=%s bg_cpu_ms_per_run=%s', '$label', $rep, $runs,
				round($runs / ($t1 - $t0)), round($runs / extract(epoch FROM max(finished_at) - to_timestamp($t1))),
				round(($c1 - $c0)::numeric / $runs, 3))
			  FROM orchestrator.workflow_runs WHERE created_at >= to_timestamp($t0)"
	done
	PG_BINDIR=$bindir bash "$root/test/cluster.sh" stop "$data"
	rm -rf "$data"
}

echo "# metrics() counters: cost to the dispatchers ($(nproc) cores, $(date -u +%F))"
echo "# reproduce: BASE_BINDIR=$base PG_BINDIR=$this RUNS=$runs REPS=$reps bash bench/metrics.sh"
measure "$base" "baseline"
measure "$this" "counters"
measure "$base" "baseline"
measure "$this" "counters"
measure "$this" "counters+otlp" otlp
