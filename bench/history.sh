#!/usr/bin/env bash
# Benchmark of history at scale: N finished runs spread over 90 days (two
# steps and six events each), on one throwaway cluster, measured in one run:
#   - bytes per run, by table (heap + indexes + TOAST of all partitions);
#   - lookup of a run by id, get_workflow(id) and events(run_id): p50, p99;
#   - each analytics view over the last 1 and 30 days (as orchestrator_admin),
#     all live, then after maintain() has rolled up the closed days;
#   - maintain() retiring the oldest day.
#   bash bench/history.sh              (as root on Debian 12; N=1000000 by default)
#   N=10000000 bash bench/history.sh   (the issue's 10 million runs; long on 2 cores)
#   PORT=57902 PG_BINDIR=... bash bench/history.sh   (another port, another installation)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] && bash "$root/test/setup.sh" >/dev/null
n=${N:-1000000}
days=90
lookups=${LOOKUPS:-2000}
port=${PORT:-5525}
data=$(mktemp -d /tmp/orchestrator-history.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg /usr/lib/postgresql/15/bin/psql -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }

echo "# orchestrator history benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: N=$n bash bench/history.sh"
q -c "CREATE EXTENSION orchestrator" -c "SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - $days, $days)" >/dev/null

echo
echo "## generating $n finished runs over $days days (2 steps, 6 events each; direct inserts, one day per transaction)"
t0=$(date +%s)
per_day=$(( (n + days - 1) / days ))
for d in $(seq 1 $days); do
	q <<SQL
-- Runs of day -$d: created through the day, finished 1-120 s later; 1 in 20
-- fails, 3 tenants, 4 workflows; the second step reports cost and tokens.
CREATE TEMP TABLE gen AS
SELECT i, orchestrator.uuid_v7_boundary(t) AS id, t AS created,
	   t + (1 + i % 120) * interval '1 second' AS finished
FROM (SELECT i, date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - $d * interval '1 day'
				+ (i * (86390000.0 / $per_day))::bigint * interval '1 millisecond' AS t
	  FROM generate_series(1, $per_day) i) x;
INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, result, error,
	created_at, started_at, finished_at, cost)
SELECT id, 'wf_' || i % 4, 1, CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 'tenant_' || i % 3,
	   'postgres', 'postgres', jsonb_build_object('order', i, 'customer', 'c' || i % 1000),
	   CASE WHEN i % 20 <> 0 THEN jsonb_build_object('fetch', jsonb_build_object('id', i), 'summarize', jsonb_build_object('ok', true)) END,
	   CASE WHEN i % 20 = 0 THEN jsonb_build_object('step', 'summarize', 'status', 'dead', 'error', jsonb_build_object('message', 'upstream timeout')) END,
	   created, created, finished, CASE WHEN i % 20 <> 0 THEN (i % 1000) / 10000.0 ELSE 0 END
FROM gen;
INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, attempt, deps_open, input, result, error, worker, ready_at, started_at, finished_at)
SELECT id, 'fetch', 0, 'sql', 'succeeded', 1, 0, jsonb_build_object('args', jsonb_build_array(i)), jsonb_build_object('id', i),
	   NULL, 'dispatcher', created, created, created + interval '5 milliseconds' * (1 + i % 7)
FROM gen
UNION ALL
SELECT id, 'summarize', 1, 'external', CASE WHEN i % 20 = 0 THEN 'dead' ELSE 'succeeded' END, 1 + (i % 20 = 0)::int * 2, 0,
	   jsonb_build_object('doc', i),
	   CASE WHEN i % 20 <> 0 THEN jsonb_build_object('ok', true, 'cost', (i % 1000) / 10000.0, 'tokens', 100 + i % 900) END,
	   CASE WHEN i % 20 = 0 THEN jsonb_build_object('message', 'upstream timeout') END,
	   'worker-' || i % 8, created, created + interval '10 milliseconds', finished
FROM gen;
INSERT INTO orchestrator.workflow_events (run_id, seq, at, type, step, data)
SELECT id, e.seq, created + e.seq * interval '1 millisecond', e.type, e.step, e.data
FROM gen, LATERAL (VALUES
	(1, 'workflow.created', NULL, jsonb_build_object('name', 'wf_' || i % 4, 'version', 1)),
	(2, 'workflow.started', NULL, '{}'::jsonb),
	(3, 'step.started', 'fetch', jsonb_build_object('attempt', 1)),
	(4, 'step.succeeded', 'fetch', jsonb_build_object('result', jsonb_build_object('id', i))),
	(5, 'step.started', 'summarize', jsonb_build_object('attempt', 1)),
	(6, CASE WHEN i % 20 = 0 THEN 'workflow.failed' ELSE 'workflow.succeeded' END, NULL, '{}'::jsonb)) e(seq, type, step, data);
DROP TABLE gen;
SQL
done
q -c "VACUUM ANALYZE orchestrator.workflow_runs, orchestrator.workflow_steps, orchestrator.workflow_events"
t1=$(date +%s)
total=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs")
echo "runs=$total  generated in $((t1 - t0)) s"

echo
echo "## bytes per run, by table (all partitions: heap, TOAST, indexes)"
q <<'SQL'
SELECT format('%-16s %8s bytes/run  (%s)', t, round(sum(pg_total_relation_size(i.inhrelid)) / (SELECT count(*) FROM orchestrator.workflow_runs)),
			  pg_size_pretty(sum(pg_total_relation_size(i.inhrelid))))
FROM unnest(ARRAY['workflow_runs', 'workflow_steps', 'workflow_events']) t
JOIN pg_inherits i ON i.inhparent = ('orchestrator.' || t)::regclass
GROUP BY t ORDER BY t;
SELECT format('%-16s %8s bytes/run', 'total', round(sum(pg_total_relation_size(i.inhrelid)) / (SELECT count(*) FROM orchestrator.workflow_runs)))
FROM pg_inherits i WHERE i.inhparent IN ('orchestrator.workflow_runs'::regclass, 'orchestrator.workflow_steps'::regclass, 'orchestrator.workflow_events'::regclass);
SQL

echo
echo "## lookups of random runs ($lookups each, in-server time per call, warm cache)"
q <<SQL
CREATE TEMP TABLE sample AS SELECT id FROM orchestrator.workflow_runs TABLESAMPLE SYSTEM (1) ORDER BY random() LIMIT $lookups;
CREATE FUNCTION pg_temp.timed(kind text) RETURNS TABLE (p50 numeric, p99 numeric) LANGUAGE plpgsql AS \$\$
DECLARE
	r  uuid;
	t  timestamptz;
	ms float8[] := '{}';
	j  jsonb;
BEGIN
	FOR r IN SELECT id FROM sample LOOP
		t := clock_timestamp();
		IF kind = 'by id' THEN
			PERFORM * FROM orchestrator.runs WHERE id = r;
		ELSIF kind = 'get_workflow' THEN
			j := orchestrator.get_workflow(r);
		ELSE
			PERFORM * FROM orchestrator.events(r);
		END IF;
		ms := ms || extract(epoch FROM clock_timestamp() - t) * 1000;
	END LOOP;
	RETURN QUERY SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY m)::numeric, 3),
						round(percentile_cont(0.99) WITHIN GROUP (ORDER BY m)::numeric, 3) FROM unnest(ms) m;
END \$\$;
CREATE TEMP TABLE warm_up AS SELECT * FROM pg_temp.timed('by id');
SELECT format('%-34s p50 %s ms  p99 %s ms', k, p50, p99) FROM unnest(ARRAY['by id', 'get_workflow', 'events']) k, pg_temp.timed(k);
SQL

echo
q <<'SQL'
CREATE ROLE bench_admin IN ROLE orchestrator_admin;
CREATE FUNCTION view_ms(sql text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
	t timestamptz;
	n bigint;
BEGIN
	EXECUTE 'SELECT count(*) FROM (' || sql || ') x' INTO n;
	t := clock_timestamp();
	EXECUTE 'SELECT count(*) FROM (' || sql || ') x' INTO n;
	RETURN round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1);
END $$;
GRANT EXECUTE ON FUNCTION view_ms(text) TO bench_admin;
SQL
views() {
	q <<'SQL'
-- jit = off, as docs/operations.md recommends for the analytics role: the
-- planner cannot know that run-time pruning leaves one partition, and
-- JIT-compiling such a plan costs more than running it.
SET jit = off;
SET ROLE bench_admin;
SELECT format('%-44s 1 day: %8s ms   30 days: %8s ms', v,
	view_ms(format('SELECT * FROM orchestrator.%s WHERE %s >= now() - interval ''1 day''', v, c)),
	view_ms(format('SELECT * FROM orchestrator.%s WHERE %s >= now() - interval ''30 days''', v, c)))
FROM (VALUES ('runs_per_day', 'day'), ('step_durations', 'day'), ('error_rates', 'day'), ('step_errors', 'day'),
			 ('throughput', 'minute'), ('costs_per_day', 'day')) x(v, c);
SELECT format('%-44s now:   %8s ms', 'queue_depth', view_ms('SELECT * FROM orchestrator.queue_depth'));
-- The views that join steps, with partition-wise joins (runs and steps are
-- partitioned alike, so each day's runs meet only that day's steps).
SET enable_partitionwise_join = on;
SELECT format('%-44s 1 day: %8s ms   30 days: %8s ms', v || ' (partitionwise join)',
	view_ms(format('SELECT * FROM orchestrator.%s WHERE day >= now() - interval ''1 day''', v)),
	view_ms(format('SELECT * FROM orchestrator.%s WHERE day >= now() - interval ''30 days''', v)))
FROM unnest(ARRAY['step_durations', 'step_errors']) v;
RESET enable_partitionwise_join;
RESET ROLE;
SQL
}
echo "## analytics views as orchestrator_admin, before any roll-up (all live; second of two runs, whole result read)"
views

echo
echo "## roll-ups: maintain() calls until every closed day is aggregated (7 days per call)"
q <<'SQL'
SET orchestrator.retention = '1000d';
CREATE TEMP TABLE calls (n serial, ms numeric, days int);
DO $$
DECLARE
	t timestamptz;
	r jsonb;
BEGIN
	LOOP
		t := clock_timestamp();
		r := orchestrator.maintain();
		INSERT INTO calls (ms, days) VALUES (extract(epoch FROM clock_timestamp() - t) * 1000, jsonb_array_length(r -> 'stats_days_rolled_up'));
		EXIT WHEN jsonb_array_length(r -> 'stats_days_rolled_up') < 7;
	END LOOP;
END $$;
SELECT format('%s calls, %s days rolled up, %s ms per call (max %s), %s ms per day; roll-up rows: %s',
	count(*), sum(days), round(avg(ms)), round(max(ms)), round(sum(ms) / nullif(sum(days), 0)),
	(SELECT count(*) FROM orchestrator.run_stats_daily)) FROM calls;
SQL
echo
echo "## analytics views as orchestrator_admin, with roll-ups"
views

echo
echo "## maintain() retiring the oldest day"
# Retention chosen so that the cutoff is 00:02:10 UTC of the day after the
# oldest one: every run of the oldest day has finished before it (the last
# finish 2 minutes after midnight), so that day goes whole; the few runs of
# the next day that finished in its first two minutes go row by row.
q <<'SQL'
DO $$
DECLARE
	cutoff timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
						  - interval '89 days' + interval '2 minutes 10 seconds';
BEGIN
	PERFORM set_config('orchestrator.retention', extract(epoch FROM now() - cutoff)::bigint || 's', false);
END $$;
SELECT format('maintain(): %s ms, retired %s, runs deleted row by row %s',
	round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1), r -> 'partitions_retired', r -> 'runs_deleted')
FROM (SELECT clock_timestamp() AS t) s, LATERAL (SELECT orchestrator.maintain() AS r) m;
SELECT format('maintain() again (nothing to do): %s ms, retired %s, runs deleted %s',
	round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1), jsonb_array_length(r -> 'partitions_retired'), r -> 'runs_deleted')
FROM (SELECT clock_timestamp() AS t) s, LATERAL (SELECT orchestrator.maintain() AS r) m;
SQL
echo "runs left: $(q -c "SELECT count(*) FROM orchestrator.workflow_runs")"
