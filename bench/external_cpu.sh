#!/usr/bin/env bash
# CPU an external step costs a worker's backend, two builds side by side.
# Two clusters, one per installation (A_BINDIR, B_BINDIR), get the same
# backlog of external runs (STEPS=1 or 3 external steps in a row); then, in
# blocks that alternate between the two, one session claims 50 and
# completes them with complete_steps() ITER times, and reads its own CPU
# (utime + stime of /proc/self/stat, via pg_read_file) before and after:
# microseconds of the backend's CPU per step completed, the statements'
# parsing and planning included.  Paired blocks see the same load on a
# shared machine, and the same point of the backlog (first steps of pending
# runs, then the later ones).
#
#   A_BINDIR=<installation> B_BINDIR=<installation> STEPS=3 BACKLOG=20000 BLOCKS=6 ITER=150 bash bench/external_cpu.sh
#
# (as root on Debian 12, or as the postgres user; the installations must
# have orchestrator installed and pg_cron beside it, as test/cluster.sh
# starts them.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
steps=${STEPS:-3}
backlog=${BACKLOG:-20000}
blocks=${BLOCKS:-6}
iter=${ITER:-150}
declare -A bin=([A]=${A_BINDIR:?an installation to compare} [B]=${B_BINDIR:?another installation})
declare -A port=([A]=${PORT_A:-55570} [B]=${PORT_B:-55571})
data=$(mktemp -d /tmp/orchestrator-external-cpu.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$data"
cleanup() { for b in A B; do PG_BINDIR=${bin[$b]} bash "$root/test/cluster.sh" stop "$data/$b"; done; rm -rf "$data"; }
trap cleanup EXIT
q() { local b=$1; shift; as_pg "${bin[$b]}/psql" -X -qAt -h 127.0.0.1 -p "${port[$b]}" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }

for b in A B; do
	PG_BINDIR=${bin[$b]} bash "$root/test/cluster.sh" start "$data/$b" "${port[$b]}" bench
	q $b -c "CREATE EXTENSION orchestrator" \
		-c "SELECT orchestrator.define_workflow('ext1', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\"}]}')" \
		-c "SELECT orchestrator.define_workflow('ext3', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\"},
			{\"name\": \"b\", \"kind\": \"external\", \"queue\": \"bench\", \"depends_on\": [\"a\"]},
			{\"name\": \"c\", \"kind\": \"external\", \"queue\": \"bench\", \"depends_on\": [\"b\"]}]}')" >/dev/null
	q $b -c "SELECT count(orchestrator.start_workflow('ext$steps')) FROM generate_series(1, $backlog)" >/dev/null
	q $b -c "VACUUM ANALYZE orchestrator.work_queue" -c CHECKPOINT >/dev/null
done

# one block: the session's CPU ticks and the steps done around ITER polls
cpu="split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint"
done_steps="SELECT count(*) FROM orchestrator.workflow_steps WHERE status = 'succeeded'"
{
	echo "SELECT $cpu AS t0 \\gset"
	echo "SELECT ($done_steps) AS d0 \\gset"
	for _ in $(seq 1 "$iter"); do
		cat <<'SQL'
WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('bench', 'w', 50))
SELECT CASE WHEN (SELECT count(*) FROM c) > 0 THEN (SELECT count(*) FROM orchestrator.complete_steps(
  (SELECT array_agg(run_id) FROM c), (SELECT array_agg(step) FROM c),
  (SELECT array_agg(lease_token) FROM c), (SELECT array_agg('{}'::jsonb) FROM c))) END \g /dev/null
SQL
	done
	echo "SELECT $cpu - :t0 AS ticks, ($done_steps) - :d0 AS n \\gset"
	echo "SELECT :n, round(:ticks * 1e6 / $(getconf CLK_TCK) / greatest(:n, 1));"
} > "$data/block.sql"
chmod a+r "$data/block.sql"

echo "# orchestrator external steps, worker backend CPU per step ($(nproc) cores, $(date -u +%F))"
echo "# A: ${bin[A]}  B: ${bin[B]}"
echo "# reproduce: STEPS=$steps BACKLOG=$backlog BLOCKS=$blocks ITER=$iter bash bench/external_cpu.sh"
for k in $(seq 1 "$blocks"); do
	line="block=$k"
	for b in A B; do
		read -r n us < <(q $b -F ' ' -f "$data/block.sql")
		line="$line  $b: $n steps, $us us/step"
	done
	echo "$line  (load $(cut -d' ' -f1 /proc/loadavg))"
done
