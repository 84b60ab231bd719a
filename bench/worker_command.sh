#!/usr/bin/env bash
# Benchmark of orchestrator-worker (a handler process per external step)
# beside its baseline in the same run on one throwaway cluster: the same SQL
# calls (claim_steps of one step, then complete_step, two transactions) made
# by pgbench, without processes.  Prints every figure and the command that
# reproduces it.
#   bash bench/worker_command.sh      (as root on Debian 12; RUNS=... to change the size)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# PG_BINDIR: another installation; SKIP_SETUP=1: measure it as it is
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && bash "$root/test/setup.sh" >/dev/null
runs=${RUNS:-2000}
port=${PORT:-55512}
data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
pid=
trap '{ [ -n "$pid" ] && kill "$pid"; } 2>/dev/null || true; bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
conninfo="host=127.0.0.1 port=$port user=postgres dbname=bench"

echo "# orchestrator-worker benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: bash bench/worker_command.sh   (RUNS=$runs)"
q -c "CREATE EXTENSION orchestrator" \
  -c "SELECT orchestrator.define_workflow('ext1', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\", \"input\": {\"n\": 1}}]}')" >/dev/null

fill() {	# $runs one-step external runs, ready on queue bench
	q -c "SELECT count(orchestrator.start_workflow('ext1')) FROM generate_series(1, $runs)" >/dev/null
}
open_steps() { q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status IN ('pending', 'running')"; }

echo
echo "## (1) baseline: pgbench, claim_steps(1) then complete_step per step, no process"
cat > "$data/claim.sql" <<'SQL'
SELECT run_id, step, lease_token FROM orchestrator.claim_steps('bench', 'pgbench', 1) \gset
SELECT orchestrator.complete_step(:run_id, :step, :lease_token, '{"n": 1}');
SQL
chmod a+r "$data/claim.sql"
for c in 1 4; do
	fill
	tps=$(as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M extended -f "$data/claim.sql" -c "$c" -j "$c" -t $((runs / c)) bench 2>/dev/null |
		awk '/^tps/ {printf "%.0f", $3}')
	echo "clients=$c  steps/s=$tps"
	[ "$(open_steps)" = 0 ] || { echo "steps left over"; exit 1; }
done

echo
echo "## (2) orchestrator-worker -c N -- HANDLER: $runs ready steps, from the worker's start to the last completion"
cat > "$data/echo.sh" <<'SH'
#!/bin/sh
cat
SH
chmod a+rx "$data/echo.sh"
for handler in /bin/true "$data/echo.sh"; do
	for c in 1 4 16; do
		fill
		t0=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
		"$bindir/orchestrator-worker" -d "$conninfo" -q bench -c "$c" --poll-interval 100ms -- "$handler" &
		pid=$!
		while [ "$(open_steps)" != 0 ]; do sleep 0.2; done
		kill -TERM "$pid"; wait "$pid"; pid=
		rate=$(q -c "SELECT round($runs / extract(epoch FROM max(finished_at) - to_timestamp($t0))) FROM orchestrator.workflow_runs")
		echo "handler=$(basename "$handler") concurrency=$c  steps/s=$rate"
	done
done
