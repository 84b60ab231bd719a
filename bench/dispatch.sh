#!/usr/bin/env bash
# Benchmark of the background dispatchers and external steps, beside the raw
# commit rate of PostgreSQL on the same machine, in one run on one throwaway
# cluster.  Prints every figure and the command that reproduces it.
#   bash bench/dispatch.sh            (as root on Debian 12; RUNS=... to change the size)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# PG_BINDIR: another installation; SKIP_SETUP=1: measure it as it is
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && bash "$root/test/setup.sh" >/dev/null
runs=${RUNS:-3000}
secs=${SECONDS_PER_POINT:-5}
port=${PORT:-55510}
data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
pgb() { as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "$@" bench 2>/dev/null; }

echo "# orchestrator dispatch benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: bash bench/dispatch.sh   (RUNS=$runs SECONDS_PER_POINT=$secs)"
q -c "CREATE EXTENSION orchestrator" -c "CREATE TABLE raw_commit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"
echo 'INSERT INTO raw_commit DEFAULT VALUES;' > "$data/raw.sql"; chmod a+r "$data/raw.sql"

echo
echo "## (1) raw PostgreSQL: one-row insert per transaction (pgbench -T $secs)"
declare -A raw
for c in 1 2 4 8 16; do
	raw[$c]=$(pgb -f "$data/raw.sql" -c "$c" -j "$c" -T "$secs" | awk '/^tps/ {printf "%.0f", $3}')
	echo "clients=$c  commits/s=${raw[$c]}"
done

echo
echo "## (2) no-op sql workflows run by the dispatchers (orchestrator.workers=2, full history)"
q >/dev/null <<'SQL'
SELECT orchestrator.define_workflow('noop1', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
SELECT orchestrator.define_workflow('noop3', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SQL
run_noop() {	# workflow, label: three repetitions of $runs runs
	local wf=$1 label=$2 rep t0 t1
	for rep in 1 2 3; do
		t0=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
		q -c "SELECT count(orchestrator.start_workflow('$wf')) FROM generate_series(1, $runs)" >/dev/null
		t1=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
		while [ "$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE name = '$wf' AND status IN ('pending', 'running')")" != 0 ]; do sleep 0.2; done
		q -c "SELECT format('workflow=%s %s rep=%s runs=%s start_rate=%s/s  dispatch: runs/s=%s steps/s=%s (%sx raw commits/s at 1 client)',
			'$wf', '$label', $rep, $runs, round($runs / ($t1 - $t0)), round(r), round(r * n), round(r * n / ${raw[1]}, 2))
			FROM (SELECT $runs / extract(epoch FROM max(finished_at) - to_timestamp($t1)) AS r,
						 (SELECT count(*) FROM orchestrator.definition_steps WHERE name = '$wf') AS n
				  FROM orchestrator.workflow_runs WHERE name = '$wf' AND created_at >= to_timestamp($t0)) x"
	done
}
for wf in noop1 noop3; do run_noop "$wf" "(9 daily partitions)"; done

echo
echo "## (2b) the same with 90 days of partitions (the default retention): per-step cost must not grow with history"
q -c "SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 90, 90)" >/dev/null
echo "# partitions of workflow_steps: $(q -c "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orchestrator.workflow_steps'::regclass")"
for wf in noop1 noop3; do run_noop "$wf" "(90 days)"; done

echo
echo "## (3) external no-op steps (pgbench -T $secs): claim N and complete each, or claim N and complete_steps() once"
q -c "SELECT orchestrator.define_workflow('ext1', '{\"steps\": [{\"name\": \"a\", \"kind\": \"external\", \"queue\": \"bench\"}]}')" >/dev/null
cat > "$data/ext.sql" <<'SQL'
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{}')) FROM orchestrator.claim_steps('bench', 'w' || :client_id, :batch);
SQL
cat > "$data/ext_batch.sql" <<'SQL'
WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('bench', 'w' || :client_id, :batch))
SELECT count(*) FROM orchestrator.complete_steps(coalesce((SELECT array_agg(run_id) FROM c), '{}'),
	coalesce((SELECT array_agg(step) FROM c), '{}'), coalesce((SELECT array_agg(lease_token) FROM c), '{}'),
	coalesce((SELECT array_agg('{}'::jsonb) FROM c), '{}'));
SQL
chmod a+r "$data/ext.sql" "$data/ext_batch.sql"
for script in ext ext_batch; do
	for batch in 10 50; do
		for c in 2 8; do
			# top the queue up to 80,000 ready steps
			q -c "SELECT count(orchestrator.start_workflow('ext1')) FROM generate_series(1, 80000 - (SELECT count(*) FROM orchestrator.work_queue WHERE queue = 'bench'))" >/dev/null
			q -c "VACUUM orchestrator.work_queue" >/dev/null
			before=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE kind = 'external' AND status = 'succeeded'")
			pgb -f "$data/$script.sql" -D batch="$batch" -c "$c" -j "$c" -T "$secs" >/dev/null
			after=$(q -c "SELECT count(*) FROM orchestrator.workflow_steps WHERE kind = 'external' AND status = 'succeeded'")
			rate=$(( (after - before) / secs ))
			echo "completion=$([ $script = ext ] && echo complete_step || echo complete_steps) claim=$batch connections=$c  external steps/s=$rate  ($(awk -v a="$rate" -v b="${raw[$c]}" 'BEGIN {printf "%.2f", a / b}')x raw commits/s at $c clients: ${raw[$c]})"
		done
	done
done

echo
echo "## (4) dispatch latency on an idle system: commit of start_workflow -> step.started of a 1-step sql run"
echo "#     (one warm connection, a start every 10 ms; commit time from track_commit_timestamp)"
q -c "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
bash "$root/test/cluster.sh" stop "$data"; bash "$root/test/cluster.sh" start "$data" "$port" bench
sleep 1
printf '%s\n' "SELECT orchestrator.start_workflow('noop1', '{}', '{\"tenant\": \"latency\"}');" '\sleep 10 ms' > "$data/start.sql"
chmod a+r "$data/start.sql"
pgb -f "$data/start.sql" -c 1 -t 200 >/dev/null
sleep 1
q -c "WITH l AS (
	SELECT extract(epoch FROM s.at - pg_xact_commit_timestamp(c.xmin)) * 1000 AS ms
	FROM orchestrator.workflow_runs r
	JOIN orchestrator.workflow_events c ON c.run_id = r.id AND c.type = 'workflow.created'
	JOIN orchestrator.workflow_events s ON s.run_id = r.id AND s.type = 'step.started'
	WHERE r.tenant = 'latency')
	SELECT format('runs=%s  p50=%s ms  p90=%s ms  p99=%s ms  max=%s ms', count(*),
		round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2),
		round(max(ms)::numeric, 2)) FROM l"
