#!/usr/bin/env bash
# Admission under load: 4 clients start runs of a 3-step no-op sql workflow
# (one start per transaction) while the dispatchers work, without a limit and
# with "max_active_runs": 10 (binding: most runs start queued and are
# admitted as others end).  Prints starts/s, runs finished/s, the most runs
# seen active at once (sampled), and the end state: every run finished, no
# slot held.  One throwaway cluster.
#   bash bench/admission.sh   (as root on Debian 12)
#   SKIP_SETUP=1 PG_BINDIR=<installation> SECONDS_PER_POINT=10 CLIENTS=4 bash bench/admission.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && bash "$root/test/setup.sh" >/dev/null
secs=${SECONDS_PER_POINT:-10}
clients=${CLIENTS:-4}
limit=${LIMIT:-10}
port=${PORT:-55520}
data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
pgb() { as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "$@" bench 2>/dev/null; }

echo "# admission benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: SECONDS_PER_POINT=$secs CLIENTS=$clients LIMIT=$limit bash bench/admission.sh"
q -c "CREATE EXTENSION orchestrator" >/dev/null
q >/dev/null <<SQL
SELECT orchestrator.define_workflow('free3', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SELECT orchestrator.define_workflow('limited3', '{"max_active_runs": $limit, "steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SQL

point() {	# workflow
	local wf=$1 t0 t1 tps peak=0 n finished
	echo "SELECT orchestrator.start_workflow('$wf');" > "$data/start.sql"
	chmod a+r "$data/start.sql"
	t0=$(date +%s.%N)
	pgb -f "$data/start.sql" -c "$clients" -j "$clients" -T "$secs" > "$data/pgb.out" &
	local pid=$!
	# sample the active runs while the clients start
	while kill -0 $pid 2>/dev/null; do
		n=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE name = '$wf' AND status IN ('pending', 'running', 'compensating')")
		[ "$n" -gt "$peak" ] && peak=$n
		sleep 0.2
	done
	wait $pid
	tps=$(awk '/^tps/ {printf "%.0f", $3}' "$data/pgb.out")
	while [ "$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE name = '$wf' AND finished_at IS NULL")" != 0 ]; do sleep 0.2; done
	t1=$(date +%s.%N)
	finished=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE name = '$wf' AND status = 'succeeded'")
	echo "$wf  clients=$clients  starts/s=$tps  runs finished=$finished in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s ($(awk -v a="$t0" -v b="$t1" -v n="$finished" 'BEGIN {printf "%.0f", n / (b - a)}') runs/s)  most active seen=$peak  queued at some point=$(q -c "SELECT count(*) FROM orchestrator.workflow_events e JOIN orchestrator.workflow_runs r ON r.id = e.run_id WHERE r.name = '$wf' AND e.type = 'workflow.queued'")"
}
point free3
point limited3
echo "# slots held at the end (must be 0): $(q -c "SELECT coalesce(sum(active), 0) FROM orchestrator.admission_slots")"
