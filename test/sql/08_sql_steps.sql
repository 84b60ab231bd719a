\set SHOW_CONTEXT never
-- sql steps run in the background dispatchers, as the role that started the
-- run, with jsonb arguments, a per-step timeout and retries.
CREATE ROLE erin LOGIN IN ROLE orchestrator_user;
CREATE SCHEMA app;
CREATE TABLE app.items (id serial PRIMARY KEY, doc jsonb, added_by name DEFAULT current_user);
GRANT USAGE ON SCHEMA app TO erin;
GRANT SELECT, INSERT ON app.items TO erin;
GRANT USAGE ON SEQUENCE app.items_id_seq TO erin;
CREATE TABLE app.secrets (s text);
INSERT INTO app.secrets VALUES ('do not read');

SET ROLE erin;
SELECT orchestrator.define_workflow('store_item', $$
{"steps": [
  {"name": "store", "kind": "sql", "sql": "INSERT INTO app.items(doc) VALUES ($1) RETURNING id, doc, added_by",
   "args": [{"$path": "$.input.item"}]},
  {"name": "count", "kind": "sql", "depends_on": ["store"],
   "sql": "SELECT count(*) AS n, $1::jsonb AS first_id FROM app.items", "args": [{"$path": "$.steps.store.result.id"}]}
 ],
 "result": {"id": {"$path": "$.steps.store.result.id"}, "n": {"$path": "$.steps.count.result.n"}}}
$$);
SELECT orchestrator.start_workflow('store_item', '{"item": {"name": "lamp"}}') AS r1 \gset
SELECT wait_for_run(:'r1');
SELECT result FROM orchestrator.runs WHERE id = :'r1';
SELECT step, status, attempt, result FROM orchestrator.run_steps WHERE run_id = :'r1' ORDER BY position;
SELECT type, step FROM orchestrator.events(:'r1') ORDER BY seq;
SELECT id, doc, added_by FROM app.items;

-- A step runs with the starter's privileges, never the dispatcher's.
SELECT orchestrator.define_workflow('escalate', '{"steps": [{"name": "s", "kind": "sql", "sql": "CREATE ROLE evil SUPERUSER"}]}');
SELECT orchestrator.start_workflow('escalate') AS r2 \gset
SELECT wait_for_run(:'r2');
SELECT status, error -> 'error' ->> 'sqlstate' AS sqlstate, error ->> 'status' AS step_status FROM orchestrator.runs WHERE id = :'r2';
SELECT orchestrator.define_workflow('peek', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT * FROM app.secrets"}]}');
SELECT orchestrator.start_workflow('peek') AS r3 \gset
SELECT wait_for_run(:'r3');
SELECT status, error -> 'error' ->> 'message' AS message FROM orchestrator.runs WHERE id = :'r3';
SELECT orchestrator.define_workflow('become', '{"steps": [{"name": "s", "kind": "sql", "sql": "SET ROLE postgres"}]}');
SELECT orchestrator.start_workflow('become') AS r4 \gset
SELECT wait_for_run(:'r4');
SELECT status, error -> 'error' ->> 'sqlstate' AS sqlstate FROM orchestrator.runs WHERE id = :'r4';
RESET ROLE;
SELECT count(*) AS evil_roles FROM pg_roles WHERE rolname = 'evil';

-- A failing statement is retried with backoff, then dead; its effects are
-- rolled back each time.
SELECT orchestrator.define_workflow('flaky', $$
{"steps": [{"name": "s", "kind": "sql", "sql": "INSERT INTO app.items(doc) SELECT ('{\"n\": ' || (1 / 0) || '}')::jsonb",
            "retry": {"max_attempts": 3, "backoff": "10 milliseconds", "jitter": 0}}]}
$$);
SELECT orchestrator.start_workflow('flaky') AS r5 \gset
SELECT wait_for_run(:'r5');
SELECT step, status, attempt, error ->> 'sqlstate' AS sqlstate FROM orchestrator.run_steps WHERE run_id = :'r5';
SELECT type, data ->> 'attempt' AS attempt FROM orchestrator.events(:'r5') WHERE step = 's' ORDER BY seq;

-- The step's timeout cancels a slow statement.
SELECT orchestrator.define_workflow('slow_sql', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT pg_sleep(10)", "timeout": "200 milliseconds", "retry": {"max_attempts": 1}}]}');
SELECT orchestrator.start_workflow('slow_sql') AS r6 \gset
SELECT wait_for_run(:'r6');
SELECT error -> 'error' ->> 'sqlstate' AS sqlstate, error -> 'error' ->> 'message' AS message FROM orchestrator.runs WHERE id = :'r6';

-- The dispatchers are visible.
SELECT count(*) >= 1 AS dispatchers_alive FROM orchestrator._worker_status();
SELECT count(*) >= 1 AS in_pg_stat_activity FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%';

-- The same statement in two owners' runs resolves names for each owner
-- ("$user" in the step's search_path): prepared plans are not shared wrongly.
CREATE ROLE frank LOGIN IN ROLE orchestrator_user;
CREATE ROLE gina LOGIN IN ROLE orchestrator_user;
CREATE SCHEMA frank AUTHORIZATION frank;
CREATE SCHEMA gina AUTHORIZATION gina;
CREATE TABLE frank.notes (who name);
ALTER TABLE frank.notes OWNER TO frank;
CREATE TABLE gina.notes (who name);
ALTER TABLE gina.notes OWNER TO gina;
SET ROLE frank;
SELECT orchestrator.define_workflow('frank_note', '{"steps": [{"name": "n", "kind": "sql", "sql": "INSERT INTO notes VALUES (current_user) RETURNING who"}]}');
SELECT orchestrator.start_workflow('frank_note') AS note_run \gset
SELECT wait_for_run(:'note_run');
RESET ROLE;
SET ROLE gina;
SELECT orchestrator.define_workflow('gina_note', '{"steps": [{"name": "n", "kind": "sql", "sql": "INSERT INTO notes VALUES (current_user) RETURNING who"}]}');
SELECT orchestrator.start_workflow('gina_note') AS note_run \gset
SELECT wait_for_run(:'note_run');
SELECT orchestrator.start_workflow('gina_note') AS note_run \gset
SELECT wait_for_run(:'note_run');
RESET ROLE;
SET ROLE frank;
SELECT orchestrator.start_workflow('frank_note') AS note_run \gset
SELECT wait_for_run(:'note_run');
RESET ROLE;
SELECT 'frank' AS schema, who, count(*) FROM frank.notes GROUP BY who
UNION ALL
SELECT 'gina', who, count(*) FROM gina.notes GROUP BY who ORDER BY 1;

-- A step runs with search_path "$user", public, whatever the dispatcher's
-- session has; a step that sets another for the session leaves the next
-- step of the same batch with its own.
SELECT orchestrator.define_workflow('path_steps', $q$
{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT current_setting('search_path') AS path, set_config('search_path', 'pg_catalog', false) AS changed"},
           {"name": "b", "kind": "sql", "sql": "SELECT current_setting('search_path') AS path", "depends_on": ["a"]}]}
$q$);
SELECT orchestrator.start_workflow('path_steps') AS r_path \gset
SELECT wait_for_run(:'r_path');
SELECT step, result FROM orchestrator.workflow_steps WHERE run_id = :'r_path' ORDER BY step;

-- A step's result is its first row as row_to_json() would give it, as jsonb,
-- for every kind of value (built with to_jsonb(record) since 0.4).
RESET ROLE;
SELECT orchestrator.define_workflow('result_types', $q$
{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1::int AS i, 1.5::float8 AS f, 'NaN'::float8 AS n, '-Infinity'::float4 AS inf, 1e-7::float8 AS small, '2026-01-01 10:00:00.123456+00'::timestamptz AS ts, 'infinity'::timestamptz AS tinf, '2026-01-01'::date AS d, '1 day'::interval AS iv, '{\"a\": 1, \"a\": 2}'::json AS j, '[1, null]'::jsonb AS jb, ARRAY[1, 2] AS arr, ARRAY[ROW(1, 'x')] AS recs, 'x\"y\\u00e9'::text AS t, NULL::int AS nul, true AS b, '\\x00ff'::bytea AS by, 12345678901234567890.5::numeric AS big, 'NaN'::numeric AS nn, ROW(1, 'a') AS rec, '(1,2)'::point AS p, 7 AS i"}]}
$q$);
SELECT orchestrator.start_workflow('result_types') AS r_types \gset
SELECT wait_for_run(:'r_types');
SET TimeZone = 'UTC';	-- the dispatchers' settings, not pg_regress's
SET IntervalStyle = 'postgres';
SELECT s.result = (SELECT row_to_json(z)::jsonb FROM (SELECT 1::int AS i, 1.5::float8 AS f, 'NaN'::float8 AS n, '-Infinity'::float4 AS inf,
		1e-7::float8 AS small, '2026-01-01 10:00:00.123456+00'::timestamptz AS ts, 'infinity'::timestamptz AS tinf, '2026-01-01'::date AS d,
		'1 day'::interval AS iv, '{"a": 1, "a": 2}'::json AS j, '[1, null]'::jsonb AS jb, ARRAY[1, 2] AS arr, ARRAY[ROW(1, 'x')] AS recs,
		'x"y\u00e9'::text AS t, NULL::int AS nul, true AS b, '\x00ff'::bytea AS by, 12345678901234567890.5::numeric AS big,
		'NaN'::numeric AS nn, ROW(1, 'a') AS rec, '(1,2)'::point AS p, 7 AS i) z) AS as_row_to_json,
	s.result
FROM orchestrator.run_steps s WHERE s.run_id = :'r_types';
RESET TimeZone;
RESET IntervalStyle;
