#!/usr/bin/env bash
# What a queue limit costs claim_steps: external no-op steps claimed in
# batches of 10 and completed with complete_steps(), by 4 clients, on a
# queue without a limit, with a limit that never binds (1,000,000: the lock
# and the count of live leases), and with one that does (8).  One throwaway
# cluster; prints every figure and the command that reproduces it.  Run it
# again with PG_BINDIR (and SKIP_SETUP=1) of a build without queue limits
# for the baseline (it then measures the unlimited queue only).
#   bash bench/queue_limit.sh   (as root on Debian 12)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && bash "$root/test/setup.sh" >/dev/null
runs=${RUNS:-60000}
secs=${SECONDS_PER_POINT:-5}
clients=${CLIENTS:-4}
port=${PORT:-55520}
data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
pgb() { as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "$@" bench 2>/dev/null; }

echo "# queue limit benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F), bindir $bindir)"
echo "# reproduce: PG_BINDIR=$bindir bash bench/queue_limit.sh   (RUNS=$runs SECONDS_PER_POINT=$secs CLIENTS=$clients)"
q -c "CREATE EXTENSION orchestrator" >/dev/null
q >/dev/null <<'SQL'
SELECT orchestrator.define_workflow('qbench', '{"steps": [{"name": "a", "kind": "external", "queue": "bench"}]}');
SQL
q -c "SELECT count(orchestrator.start_workflow('qbench')) FROM generate_series(1, $runs)" >/dev/null
cat > "$data/claim.sql" <<'SQL'
WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('bench', 'w' || :client_id, 10))
SELECT count(*) FROM orchestrator.complete_steps((SELECT array_agg(run_id) FROM c), (SELECT array_agg(step) FROM c),
	(SELECT array_agg(lease_token) FROM c), (SELECT array_agg('{}'::jsonb) FROM c));
SQL
chmod a+r "$data/claim.sql"
limits=$(q -c "SELECT to_regprocedure('orchestrator.set_queue_limit(text, integer)') IS NOT NULL")

point() {	# label
	local before after tps
	before=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status = 'succeeded'")
	tps=$(pgb -f "$data/claim.sql" -c "$clients" -j "$clients" -T "$secs" | awk '/^tps/ {printf "%.0f", $3}')
	after=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE status = 'succeeded'")
	echo "$1  clients=$clients batch=10  claims/s=$tps  steps/s=$(( (after - before) / secs ))"
}
for rep in 1 2; do
	point "no limit (rep $rep)"
	if [ "$limits" = t ]; then
		q -c "SELECT orchestrator.set_queue_limit('bench', 1000000)" >/dev/null
		point "limit 1000000, never binding (rep $rep)"
		q -c "SELECT orchestrator.set_queue_limit('bench', 8)" >/dev/null
		point "limit 8, binding (rep $rep)"
		q -c "SELECT orchestrator.set_queue_limit('bench', NULL)" >/dev/null
	fi
done
left=$(q -c "SELECT count(*) FROM orchestrator.work_queue WHERE queue = 'bench'")
echo "# steps left unclaimed: $left (raise RUNS if 0)"
