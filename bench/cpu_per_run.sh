#!/usr/bin/env bash
# CPU a three-step no-op sql run costs: the backend's per start (each start
# committed on its own, dispatchers off) and the dispatchers' per step
# (runs started in one statement, drained by the two dispatchers; and under a
# trickle of starts from one client), read from
# /proc/<pid>/stat before and after.  CPU time moves less than throughput on
# a machine shared with other work; run two installations one after the
# other (PG_BINDIR) to compare builds.  Prints the figures and the command.
#
#   bash bench/cpu_per_run.sh                      (as root on Debian 12)
#   SKIP_SETUP=1 PG_BINDIR=<installation> ROUNDS=3 STARTS=5000 RUNS=6000 TRICKLE=100 bash bench/cpu_per_run.sh
# (TRICKLE: starts per second of the one client of the trickle measurement)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && PG_BINDIR=$bindir bash "$root/test/setup.sh" >/dev/null
export PG_BINDIR=$bindir
rounds=${ROUNDS:-3}
starts=${STARTS:-5000}
runs=${RUNS:-6000}
trickle=${TRICKLE:-100}
port=${PORT:-55530}
hz=$(getconf CLK_TCK)
data=$(mktemp -d /tmp/orchestrator-cpu.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data/pg"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data/pg" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
dispatchers() { ps -o pid=,cmd= --ppid "$(head -1 "$data/pg/postmaster.pid")" | awk '/dispatcher/ {print $1}'; }
drain() { while [ "$(q -c 'SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL')" != 0 ]; do sleep 0.1; done; }

q -c "CREATE EXTENSION orchestrator" >/dev/null
q >/dev/null <<'SQL'
SELECT orchestrator.define_workflow('noop3', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SQL

echo "# orchestrator CPU per run ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: SKIP_SETUP=1 PG_BINDIR=$bindir ROUNDS=$rounds STARTS=$starts RUNS=$runs TRICKLE=$trickle bash bench/cpu_per_run.sh"
echo
echo "## dispatchers: CPU per step draining $runs runs started in one statement"
for r in $(seq "$rounds"); do
	pids=$(dispatchers)
	a=$(ticks $pids)
	q -c "SELECT count(orchestrator.start_workflow('noop3')) FROM generate_series(1, $runs)" >/dev/null
	drain
	b=$(ticks $pids)
	awk -v a="$a" -v b="$b" -v n="$runs" -v hz="$hz" \
		'BEGIN {printf "round %d: %.0f us per step\n", '"$r"', (b - a) / hz * 1e6 / (3 * n)}'
done

echo
echo "## dispatchers: CPU per step under a trickle: one client starting $trickle runs/s for 10 s (pgbench -R)"
echo "SELECT orchestrator.start_workflow('noop3');" > "$data/start.sql"
chmod a+r "$data/start.sql"
for r in $(seq "$rounds"); do
	pids=$(dispatchers)
	a=$(ticks $pids)
	n0=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs")
	as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -f "$data/start.sql" -c 1 -j 1 \
		-R "$trickle" -T 10 bench >/dev/null 2>&1
	drain
	b=$(ticks $pids)
	n1=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs")
	awk -v a="$a" -v b="$b" -v n="$((n1 - n0))" -v hz="$hz" \
		'BEGIN {printf "round %d: %.0f us per step (%d runs)\n", '"$r"', (b - a) / hz * 1e6 / (3 * n), n}'
done

echo
echo "## backend: CPU per start, each committed on its own, dispatchers off"
echo "orchestrator.workers = 0" >> "$data/pg/postgresql.conf"
as_pg "$bindir/pg_ctl" -D "$data/pg" -l "$data/pg/server.log" -w restart >/dev/null
for r in $(seq "$rounds"); do
	line=$(q <<SQL
SELECT pg_backend_pid() AS pid \\gset
\\setenv BACKEND_PID :pid
\\! awk '{print \$14 + \$15}' /proc/\$BACKEND_PID/stat
DO \$\$ BEGIN FOR i IN 1..$starts LOOP PERFORM orchestrator.start_workflow('noop3'); COMMIT; END LOOP; END \$\$;
\\! awk '{print \$14 + \$15}' /proc/\$BACKEND_PID/stat
SQL
)
	echo "$line" | awk -v n="$starts" -v hz="$hz" -v r="$r" \
		'NR == 1 {a = $1} NR == 2 {printf "round %d: %.3f ms per start\n", r, ($1 - a) / hz * 1e3 / n}'
	q -c "TRUNCATE orchestrator.work_queue" >/dev/null
done
