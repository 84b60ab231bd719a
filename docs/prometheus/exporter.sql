-- The role and helper functions prometheus-postgres-exporter uses with
-- docs/prometheus/queries.yaml.  Run once as a superuser, in the database
-- named by orchestrator.database, after CREATE EXTENSION orchestrator:
--
--   psql -d mydb -v ON_ERROR_STOP=1 -f docs/prometheus/exporter.sql
--
-- Running it again is harmless.  What the exporter's role may do, and no more:
--   * log in (give it a password, or map it in pg_hba.conf);
--   * pg_monitor: the exporter's own PostgreSQL metrics (activity, replication,
--     settings); leave it out if you run the exporter with
--     --disable-default-metrics --disable-settings-metrics;
--   * call orchestrator.health() and orchestrator.metrics() (gauges of the
--     whole instance: dispatchers, queues, breakers, runs finished per
--     workflow);
--   * call the functions of schema orchestrator_exporter below: today's
--     aggregates of the analytics views over every role's runs (counts,
--     rates, percentiles, cost), never a run's input, result or error.
-- It is not a member of orchestrator_user or orchestrator_admin: it cannot
-- read runs, start, cancel or work anything.

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'orchestrator_exporter') THEN
		CREATE ROLE orchestrator_exporter LOGIN;
	END IF;
END
$$;
GRANT pg_monitor TO orchestrator_exporter;
ALTER ROLE orchestrator_exporter SET jit = off;
GRANT USAGE ON SCHEMA orchestrator TO orchestrator_exporter;
GRANT EXECUTE ON FUNCTION orchestrator.health(), orchestrator.metrics() TO orchestrator_exporter;

CREATE SCHEMA IF NOT EXISTS orchestrator_exporter;
REVOKE ALL ON SCHEMA orchestrator_exporter FROM PUBLIC;
GRANT USAGE ON SCHEMA orchestrator_exporter TO orchestrator_exporter;

-- orchestrator.metrics() (or the exposition text given) as rows: one per
-- sample, with its name, its labels as a JSON object (values unescaped) and
-- its value.  Each entry
-- of queries.yaml selects the samples of one family and turns its labels
-- into columns, so the exporter serves the very series metrics() computes,
-- under the same names.  Runs with the caller's rights (metrics() is
-- granted to the exporter's role).
CREATE OR REPLACE FUNCTION orchestrator_exporter.samples(exposition text DEFAULT NULL,
	OUT name text, OUT labels jsonb, OUT value double precision)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m[1],
		   coalesce((SELECT jsonb_object_agg(l[1],
					replace(replace(replace(replace(l[2], '\\', chr(1)), '\"', '"'), '\n', chr(10)), chr(1), '\'))
				 FROM regexp_matches(coalesce(m[3], ''), '([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', 'g') l),
					'{}'),
		   m[4]::double precision
	FROM regexp_split_to_table(coalesce(exposition, orchestrator.metrics()), E'\n') line,
		 regexp_match(line, '^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?[0-9]+)?$') m
	WHERE left(line, 1) <> '#' AND m IS NOT NULL
$$;

-- The families with their type from metrics()' "# TYPE" line:
-- what test/client/test_exporter.py compares with the exporter's scrape.
CREATE OR REPLACE FUNCTION orchestrator_exporter.families(exposition text DEFAULT NULL,
	OUT family text, OUT type text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t[1], t[2]
	FROM regexp_split_to_table(coalesce(exposition, orchestrator.metrics()), E'\n') line,
		 regexp_match(line, '^# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) (\S+)') t
	WHERE t IS NOT NULL
$$;

-- A histogram family of metrics() (<family>_bucket with "le", _sum, _count)
-- as the exporter's HISTOGRAM usage wants it: per label set, the upper
-- bounds and their cumulative counts (without +Inf, which the exporter adds
-- from the count), the sum and the count.
CREATE OR REPLACE FUNCTION orchestrator_exporter.histogram(family text, exposition text DEFAULT NULL,
	OUT labels jsonb, OUT bounds double precision[], OUT buckets bigint[],
	OUT sum double precision, OUT count bigint)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	WITH s AS MATERIALIZED (SELECT * FROM orchestrator_exporter.samples(exposition)),
	b AS (
		SELECT s.labels - 'le' AS labels,
			   array_agg((s.labels ->> 'le')::double precision ORDER BY (s.labels ->> 'le')::double precision) AS bounds,
			   array_agg(s.value::bigint ORDER BY (s.labels ->> 'le')::double precision) AS buckets
		FROM s
		WHERE s.name = family || '_bucket' AND s.labels ->> 'le' NOT IN ('+Inf', 'Inf', 'inf')
		GROUP BY 1)
	SELECT c.labels, coalesce(b.bounds, '{}'), coalesce(b.buckets, '{}'), su.value, c.value::bigint
	FROM s c
	LEFT JOIN b ON b.labels = c.labels
	LEFT JOIN s su ON su.name = family || '_sum' AND su.labels = c.labels
	WHERE c.name = family || '_count'
$$;

-- Today's numbers (UTC; runs created since midnight) from the analytics
-- views, over the runs of every role.  SECURITY DEFINER owned by
-- orchestrator_admin, the role the views show every run to; they return
-- aggregates only.
CREATE OR REPLACE FUNCTION orchestrator_exporter.runs_today(
	OUT workflow text, OUT finished bigint, OUT succeeded bigint, OUT failed bigint,
	OUT cancelled bigint, OUT error_rate double precision, OUT cost double precision,
	OUT tokens double precision)
RETURNS SETOF record
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	WITH today AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day),
	e AS (
		SELECT x.workflow, sum(x.finished)::bigint AS finished, sum(x.succeeded)::bigint AS succeeded,
			   sum(x.failed)::bigint AS failed, sum(x.cancelled)::bigint AS cancelled
		FROM orchestrator.error_rates x, today t WHERE x.day = t.day GROUP BY 1),
	c AS (
		SELECT x.workflow, sum(x.cost)::double precision AS cost, sum(x.tokens)::double precision AS tokens
		FROM orchestrator.costs_per_day x, today t WHERE x.day = t.day GROUP BY 1)
	SELECT coalesce(e.workflow, c.workflow), coalesce(e.finished, 0), coalesce(e.succeeded, 0),
		   coalesce(e.failed, 0), coalesce(e.cancelled, 0),
		   coalesce(e.failed::double precision / nullif(e.finished, 0), 0),
		   coalesce(c.cost, 0), coalesce(c.tokens, 0)
	FROM e FULL JOIN c ON c.workflow = e.workflow
$$;

CREATE OR REPLACE FUNCTION orchestrator_exporter.steps_today(
	OUT workflow text, OUT step text, OUT kind text, OUT samples bigint,
	OUT p50 double precision, OUT p95 double precision, OUT p99 double precision,
	OUT max double precision)
RETURNS SETOF record
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
	SELECT d.workflow, d.step, d.kind, d.samples::bigint, d.p50, d.p95, d.p99, d.max
	FROM orchestrator.step_durations d
	WHERE d.day = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

ALTER FUNCTION orchestrator_exporter.runs_today() OWNER TO orchestrator_admin;
ALTER FUNCTION orchestrator_exporter.steps_today() OWNER TO orchestrator_admin;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orchestrator_exporter FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA orchestrator_exporter TO orchestrator_exporter;
