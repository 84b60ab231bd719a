#!/usr/bin/env bash
# External steps under the load applications produce, on a fresh cluster: N
# clients start one-step external runs (one per transaction) for SECONDS
# while 2 workers claim 50 and complete them with complete_steps(); steps/s
# from the first start until the backlog drained.  The last phase of
# bench/realistic.sh, alone.
#   bash bench/external.sh                      (as root on Debian 12)
#   CLIENTS=16 SECONDS_PER_POINT=15 SKIP_SETUP=1 PG_BINDIR=<installation> bash bench/external.sh
# BACKLOG=N: no clients; N runs (STEPS=1 or 3 external steps in a row) are
# started in one statement first, then
# WORKERS (2) workers claim CLAIM (50) and complete_steps() them for
# SECONDS_PER_POINT seconds, ROUNDS (3) times on the same cluster (the
# backlog topped up each round): external steps/s in bulk, as bench/dispatch.sh
# measures sql steps.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && PG_BINDIR=$bindir bash "$root/test/setup.sh" >/dev/null
clients=${CLIENTS:-16}
secs=${SECONDS_PER_POINT:-15}
port=${PORT:-55540}
export PG_BINDIR=$bindir
data=$(mktemp -d /tmp/orchestrator-external.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'pkill -f "$data/work.sql" 2>/dev/null || true; bash "$root/test/cluster.sh" stop "$data/pg"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data/pg" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
pgb() { as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "$@" bench 2>/dev/null; }

q -c "CREATE EXTENSION orchestrator" \
  -c "SELECT orchestrator.define_workflow('ext1', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\"}]}')" >/dev/null
echo "SELECT orchestrator.start_workflow('ext1');" > "$data/start.sql"
cat > "$data/work.sql" <<'SQL'
WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('bench', 'bench-worker', 50))
SELECT CASE WHEN (SELECT count(*) FROM c) > 0 THEN (SELECT count(*) FROM orchestrator.complete_steps(
  (SELECT array_agg(run_id) FROM c), (SELECT array_agg(step) FROM c),
  (SELECT array_agg(lease_token) FROM c), (SELECT array_agg('{}'::jsonb) FROM c))) END;
SQL
chmod -R a+rX "$data"

echo "# orchestrator external-steps benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: CLIENTS=$clients SECONDS_PER_POINT=$secs bash bench/external.sh"
if [ -n "${BACKLOG:-}" ]; then
	workers=${WORKERS:-2} claim=${CLAIM:-50} steps=${STEPS:-1}
	sed -i "s/'bench-worker', 50/'w' || :client_id, $claim/" "$data/work.sql"
	# STEPS=3: runs of three external steps in a row (as bench/dispatch.sh's noop3)
	q -c "SELECT orchestrator.define_workflow('ext3', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\"},
		{\"name\": \"b\", \"kind\": \"external\", \"queue\": \"bench\", \"depends_on\": [\"a\"]},
		{\"name\": \"c\", \"kind\": \"external\", \"queue\": \"bench\", \"depends_on\": [\"b\"]}]}')" >/dev/null
	echo "# reproduce: BACKLOG=$BACKLOG STEPS=$steps WORKERS=$workers CLAIM=$claim SECONDS_PER_POINT=$secs bash bench/external.sh"
	for round in $(seq 1 "${ROUNDS:-3}"); do
		q -c "SELECT count(orchestrator.start_workflow('ext$steps')) FROM generate_series(1, $BACKLOG - (SELECT count(*) FROM orchestrator.work_queue WHERE queue = 'bench'))" >/dev/null
		q -c "VACUUM ANALYZE orchestrator.work_queue" -c CHECKPOINT >/dev/null
		before=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE status = 'succeeded'")
		pgb -f "$data/work.sql" -c "$workers" -j "$workers" -T "$secs" >/dev/null &
		# the workers' backends' CPU (/proc/<pid>/stat) over the middle of the round
		sleep 1
		pids=$(q -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = 'pgbench'")
		done0=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE status = 'succeeded'")
		cpu0=$(ticks $pids)
		sleep $((secs - 2))
		cpu1=$(ticks $pids)
		done1=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE status = 'succeeded'")
		wait
		after=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE status = 'succeeded'")
		us=$(awk -v c=$((cpu1 - cpu0)) -v n=$((done1 - done0)) -v hz="$(getconf CLK_TCK)" \
			'BEGIN {printf "%.0f", (n > 0 ? c / hz * 1e6 / n : 0)}')
		# a backlog the workers drained before the end caps the figure at it
		left=$(q -c "SELECT count(*) FROM orchestrator.work_queue WHERE queue = 'bench'")
		drained=""
		[ "$left" = 0 ] && drained="  (the backlog ran out before the end: a lower bound; raise BACKLOG)"
		echo "round=$round steps=$steps workers=$workers claim=$claim  external steps/s=$(( (after - before) / secs ))  workers' backend CPU per step=$us us$drained"
	done
	exit 0
fi
t0=$(date +%s.%N)
pgb -f "$data/work.sql" -c 2 -j 2 -T $((secs + 600)) > "$data/workers.out" &
starts=$(pgb -f "$data/start.sql" -c "$clients" -j "$clients" -T "$secs" | awk '/^tps/ {printf "%.0f", $3}')
t1=$(date +%s.%N)
while [ "$(q -c 'SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL')" != 0 ]; do sleep 0.2; done
t2=$(date +%s.%N)
runs=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs")
printf '%-8s %-10s %-8s %-14s %s\n' clients starts/s runs 'drain after s' e2e_steps/s
printf '%-8s %-10s %-8s %-14s %s\n' "$clients" "$starts" "$runs" \
	"$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.1f", b - a}')" \
	"$(awk -v n="$runs" -v a="$t0" -v b="$t2" 'BEGIN {printf "%.0f", n / (b - a)}')"
