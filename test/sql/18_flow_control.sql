\set SHOW_CONTEXT never
-- Flow control: admission limits (workflow "max_active_runs",
-- set_tenant_limits, orchestrator.max_active_runs) make runs over them
-- wait as "queued"; step "rate_limit" spaces out steps with a token bucket.
-- (Concurrent starts and finishes: test/isolation/specs/admission.spec and
-- rate_limit.spec; restarts: test/t/011_flow_control_restart.pl.)

-- Wait until the dispatchers have moved a step out of "status".
CREATE FUNCTION fc_wait_step(run uuid, step_name text, status text, seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. seconds * 20 LOOP
		SELECT x.status INTO s FROM orchestrator.workflow_steps x WHERE x.run_id = run AND x.step = step_name;
		IF s IS DISTINCT FROM fc_wait_step.status THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timeout: ' || s;
END $$;
-- Wait until a step has made "attempts" attempts.
CREATE FUNCTION fc_wait_attempt(run uuid, step_name text, attempts integer, seconds integer DEFAULT 30) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	n integer;
BEGIN
	FOR i IN 1 .. seconds * 20 LOOP
		SELECT x.attempt INTO n FROM orchestrator.run_steps x WHERE x.run_id = run AND x.step = step_name;
		IF n >= attempts THEN
			RETURN n;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN n;
END $$;
-- SQLSTATE and errdetail of a statement.
CREATE FUNCTION fc_try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN SQLSTATE || ': ' || coalesce(nullif(d, ''), SQLERRM);
END $$;
GRANT EXECUTE ON FUNCTION fc_try(text), fc_wait_step(uuid, text, text, integer),
	fc_wait_attempt(uuid, text, integer, integer) TO PUBLIC;

-- ----------------------------------------------------------------
-- Bad specs: 22023, and nothing is written.
-- ----------------------------------------------------------------
SET ROLE alice;
SELECT count(*) AS definitions_before FROM orchestrator.definitions WHERE name LIKE 'fc_bad%';
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"max_active_runs": 0, "steps": [{"name": "a", "kind": "wait", "signal": "go"}]}')$$) AS zero_active;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"max_active_runs": 2.5, "steps": [{"name": "a", "kind": "wait", "signal": "go"}]}')$$) AS fraction_active;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"max_active_runs": "3", "steps": [{"name": "a", "kind": "wait", "signal": "go"}]}')$$) AS string_active;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": 0, "burst": 1}}]}')$$) AS zero_rate;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": -1, "burst": 1}}]}')$$) AS negative_rate;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": 1, "burst": 0}}]}')$$) AS zero_burst;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": 1, "burst": 1.5}}]}')$$) AS fraction_burst;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "", "per_second": 1, "burst": 1}}]}')$$) AS empty_key;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"per_second": 1, "burst": 1}}]}')$$) AS no_key;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": 1, "burst": 1, "per_minute": 3}}]}')$$) AS unknown_field;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": "fast"}]}')$$) AS not_object;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "sleep", "duration": "1 second", "rate_limit": {"key": "k", "per_second": 1, "burst": 1}}]}')$$) AS sleep_rate;
SELECT fc_try($$SELECT orchestrator.define_workflow('fc_bad2', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "compensate": {"kind": "sql", "sql": "SELECT 2", "rate_limit": {"key": "k", "per_second": 1}}}]}')$$) AS compensation_no_burst;
SELECT count(*) AS definitions_after FROM orchestrator.definitions WHERE name LIKE 'fc_bad%';
SELECT count(*) AS workflows_after FROM orchestrator.workflows WHERE name LIKE 'fc_bad%';
-- The whole message of one of them.
SELECT orchestrator.define_workflow('fc_bad', '{"steps": [{"name": "a", "kind": "external", "queue": "q", "rate_limit": {"key": "k", "per_second": 0, "burst": 1}}]}');
SELECT orchestrator.define_workflow('fc_bad', '{"max_active_runs": -1, "steps": [{"name": "a", "kind": "wait", "signal": "go"}]}');
RESET ROLE;

-- ----------------------------------------------------------------
-- A workflow's max_active_runs: runs over it are queued.
-- ----------------------------------------------------------------
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_report', '{"max_active_runs": 2, "steps": [{"name": "w", "kind": "wait", "signal": "go"}]}') AS v1;
CREATE TEMP TABLE fc_started AS
	SELECT i, orchestrator.start_workflow('fc_report', jsonb_build_object('i', i), jsonb_build_object('priority', CASE WHEN i = 5 THEN 10 ELSE 0 END)) AS id
	FROM generate_series(1, 5) i;
SELECT i, status FROM fc_started JOIN orchestrator.runs r ON r.id = fc_started.id ORDER BY i;
SELECT i, e.seq, e.type, e.data FROM fc_started JOIN orchestrator.events(fc_started.id) e ON true WHERE i IN (1, 3) ORDER BY i, e.seq;
-- get_workflow and the view show the status.
SELECT orchestrator.get_workflow(id) ->> 'status' AS get_workflow_status FROM fc_started WHERE i = 4;
-- A signal to a queued run is kept for its wait step.
SELECT orchestrator.signal_workflow(id, 'go') AS signal_queued FROM fc_started WHERE i = 4;
RESET ROLE;
SELECT scope, key, max_active, active FROM orchestrator.admission_slots WHERE key = 'fc_report';
SELECT count(*) AS queued_rows FROM orchestrator.admission_queue WHERE workflow = 'fc_report';

-- A run that finishes admits the best queued run: priority 10 first.
SET ROLE alice;
SELECT orchestrator.signal_workflow(id, 'go') AS finish_1 FROM fc_started WHERE i = 1;
SELECT i, status FROM fc_started JOIN orchestrator.runs r ON r.id = fc_started.id ORDER BY i;
SELECT i, e.type FROM fc_started JOIN orchestrator.events(fc_started.id) e ON true WHERE i = 5 ORDER BY e.seq;
-- Cancelling a queued run: it ends, frees nothing, takes nothing.
SELECT orchestrator.cancel_workflow(id, 'not needed') AS cancel_queued FROM fc_started WHERE i = 3;
SELECT i, status FROM fc_started JOIN orchestrator.runs r ON r.id = fc_started.id ORDER BY i;
-- A failure frees a slot too: run 2 is cancelled, run 4 (oldest) is admitted
-- and its wait step takes the signal sent while it was queued.
SELECT orchestrator.cancel_workflow(id) AS cancel_running FROM fc_started WHERE i = 2;
SELECT i, status FROM fc_started JOIN orchestrator.runs r ON r.id = fc_started.id ORDER BY i;
RESET ROLE;
SELECT scope, key, max_active, active FROM orchestrator.admission_slots WHERE key = 'fc_report';
SELECT count(*) AS queued_rows FROM orchestrator.admission_queue WHERE workflow = 'fc_report';

-- The limit is per name, across versions; the latest version's value applies.
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_report', '{"max_active_runs": 1, "steps": [{"name": "w", "kind": "wait", "signal": "go"}, {"name": "x", "kind": "wait", "signal": "go2"}]}') AS v2;
SELECT orchestrator.start_workflow('fc_report', '{}', '{"version": 1}') AS v1_run \gset
SELECT status FROM orchestrator.runs WHERE id = :'v1_run';
-- A version without the key removes the limit: the queued run is admitted.
SELECT orchestrator.define_workflow('fc_report', '{"steps": [{"name": "w", "kind": "wait", "signal": "go"}]}') AS v3;
SELECT status FROM orchestrator.runs WHERE id = :'v1_run';
RESET ROLE;
SELECT count(*) AS slot_rows FROM orchestrator.admission_slots WHERE key = 'fc_report';

-- A queued run's deadline still applies.
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_one', '{"max_active_runs": 1, "steps": [{"name": "w", "kind": "wait", "signal": "go"}]}') AS v;
SELECT orchestrator.start_workflow('fc_one') AS one_a \gset
SELECT orchestrator.start_workflow('fc_one', '{}', '{"deadline": "1 second"}') AS one_b \gset
SELECT status FROM orchestrator.runs WHERE id = :'one_b';
SELECT wait_for_run(:'one_b') AS queued_past_deadline;
SELECT error ->> 'message' AS error FROM orchestrator.runs WHERE id = :'one_b';
RESET ROLE;
SELECT count(*) AS queue_rows_left FROM orchestrator.admission_queue WHERE run_id = :'one_b';
SET ROLE alice;
-- A resumed run takes a slot again, or waits: one_a holds it.
SELECT orchestrator.cancel_workflow(:'one_a') AS cancel_a;
SELECT orchestrator.start_workflow('fc_one') AS one_c \gset
SELECT orchestrator.retry_run(:'one_a') AS resumed;
SELECT status FROM orchestrator.runs WHERE id = :'one_a';
SELECT orchestrator.signal_workflow(:'one_c', 'go') AS finish_c;
SELECT status FROM orchestrator.runs WHERE id = :'one_a';
SELECT e.type FROM orchestrator.events(:'one_a') e ORDER BY e.seq;
SELECT orchestrator.signal_workflow(:'one_a', 'go') AS finish_a;
RESET ROLE;
SELECT scope, key, max_active, active FROM orchestrator.admission_slots WHERE key = 'fc_one';

-- ----------------------------------------------------------------
-- Tenant limits: admins only; a limit on a busy tenant counts its runs.
-- ----------------------------------------------------------------
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_tenant', '{"steps": [{"name": "w", "kind": "wait", "signal": "go"}]}') AS v;
CREATE TEMP TABLE fc_t AS SELECT i, orchestrator.start_workflow('fc_tenant', '{}', '{"tenant": "acme"}') AS id FROM generate_series(1, 2) i;
SELECT try($$SELECT orchestrator.set_tenant_limits('acme', 1)$$) AS user_sets;
SELECT try($$SELECT * FROM orchestrator.get_tenant_limits()$$) AS user_reads;
SELECT try($$SELECT orchestrator._api_set_tenant_limits('acme', 1)$$) AS implementation_direct;
SELECT try($$SELECT orchestrator._admission_configure('tenant', 'acme', 1)$$) AS internal_direct;
SELECT try($$SELECT * FROM orchestrator.admission_slots$$) AS user_reads_slots;
RESET ROLE;
SET ROLE mallory;
SELECT try($$SELECT orchestrator.set_tenant_limits('acme', 1)$$) AS mallory_sets;
RESET ROLE;
SET ROLE carol;
SELECT try($$SELECT orchestrator.set_tenant_limits(NULL, 1)$$) AS null_tenant;
SELECT try($$SELECT orchestrator.set_tenant_limits('', 1)$$) AS empty_tenant;
SELECT try($$SELECT orchestrator.set_tenant_limits(repeat('t', 256), 1)$$) AS long_tenant;
SELECT try($$SELECT orchestrator.set_tenant_limits('acme', -1)$$) AS negative;
SELECT count(*) AS tenant_rows FROM orchestrator.get_tenant_limits();
SELECT orchestrator.set_tenant_limits('acme', 1);
-- Two runs were active before the limit: both are counted (over it until one ends).
SELECT * FROM orchestrator.get_tenant_limits('acme');
RESET ROLE;
SET ROLE alice;
INSERT INTO fc_t SELECT 3, orchestrator.start_workflow('fc_tenant', '{}', '{"tenant": "acme"}');
INSERT INTO fc_t SELECT 4, orchestrator.start_workflow('fc_tenant', '{}', '{"tenant": "other"}');
SELECT i, status FROM fc_t JOIN orchestrator.runs r ON r.id = fc_t.id ORDER BY i;
SELECT orchestrator.signal_workflow(id, 'go') FROM fc_t WHERE i = 1;
SELECT i, status FROM fc_t JOIN orchestrator.runs r ON r.id = fc_t.id ORDER BY i;
SELECT orchestrator.signal_workflow(id, 'go') FROM fc_t WHERE i = 2;
SELECT i, status FROM fc_t JOIN orchestrator.runs r ON r.id = fc_t.id ORDER BY i;
RESET ROLE;
SET ROLE carol;
SELECT * FROM orchestrator.get_tenant_limits();
-- Cleared: the row goes.
SELECT orchestrator.set_tenant_limits('acme', NULL);
SELECT count(*) AS tenant_rows FROM orchestrator.get_tenant_limits();
RESET ROLE;

-- ----------------------------------------------------------------
-- orchestrator.max_active_runs: all runs (superuser setting).
-- ----------------------------------------------------------------
SET ROLE alice;
SELECT try($$SET orchestrator.max_active_runs = 1$$) AS user_sets_setting;
RESET ROLE;
SELECT count(*) > 1 AS several_active FROM orchestrator.workflow_runs WHERE status IN ('pending', 'running', 'compensating');
SET orchestrator.max_active_runs = 1;
SELECT orchestrator.start_workflow('fc_tenant') AS g1 \gset
SELECT status FROM orchestrator.runs WHERE id = :'g1';
SELECT data - 'active' AS data FROM orchestrator.events(:'g1') WHERE type = 'workflow.queued';
RESET orchestrator.max_active_runs;
-- The setting back at 0: the dispatchers' pass admits it.
SELECT orchestrator._admission_sweep();
SELECT status FROM orchestrator.runs WHERE id = :'g1';

-- ----------------------------------------------------------------
-- Rate limits: a bucket per owner role and key.
-- ----------------------------------------------------------------
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_rate', '{"steps": [{"name": "call", "kind": "external", "queue": "fc_api",
  "rate_limit": {"key": "partner-api", "per_second": 0.001, "burst": 2}}]}') AS v;
CREATE TEMP TABLE fc_r AS SELECT i, orchestrator.start_workflow('fc_rate') AS id FROM generate_series(1, 4) i;
-- Two tokens (the burst); the others wait as scheduled, 1000 s apart.
SELECT i, s.status, round(extract(epoch FROM s.ready_at - min(s.ready_at) OVER ()) / 1000) AS thousand_seconds_later
	FROM fc_r JOIN orchestrator.run_steps s ON s.run_id = fc_r.id ORDER BY i;
SELECT i, e.type, e.data ->> 'rate_limit' AS key FROM fc_r JOIN orchestrator.events(fc_r.id) e ON true WHERE i = 3 ORDER BY e.seq;
SELECT count(*) AS claimable FROM orchestrator.claim_steps('fc_api', 'w', 10);
RESET ROLE;
SELECT owner, key, round(tokens::numeric) AS tokens FROM orchestrator.rate_buckets;
-- Another role's steps of the same key have a bucket of their own.
SET ROLE bob;
SELECT orchestrator.define_workflow('fc_rate_bob', '{"steps": [{"name": "call", "kind": "external", "queue": "fc_api_bob",
  "rate_limit": {"key": "partner-api", "per_second": 0.001, "burst": 1}}]}') AS v;
SELECT orchestrator.start_workflow('fc_rate_bob') AS bob_run \gset
SELECT status FROM orchestrator.run_steps WHERE run_id = :'bob_run';
RESET ROLE;
SELECT owner, key FROM orchestrator.rate_buckets ORDER BY owner::text;
-- When its token is due, a scheduled step becomes ready on its queue.
UPDATE orchestrator.work_queue SET available_at = now() - interval '1 second'
	WHERE run_id = (SELECT id FROM fc_r WHERE i = 3) AND queue = '@timer';
SELECT fc_wait_step((SELECT id FROM fc_r WHERE i = 3), 'call', 'scheduled') AS after_token;
SET ROLE alice;
SELECT count(*) AS claimable_now FROM orchestrator.claim_steps('fc_api', 'w', 10);
-- Cancelling a run cancels its scheduled step.
SELECT orchestrator.cancel_workflow(id) FROM fc_r WHERE i = 4;
SELECT status FROM orchestrator.run_steps WHERE run_id = (SELECT id FROM fc_r WHERE i = 4);
RESET ROLE;
SELECT count(*) AS timers_left FROM orchestrator.work_queue WHERE run_id = (SELECT id FROM fc_r WHERE i = 4);

-- A sql step's retry takes a token as well.
SET ROLE alice;
SELECT orchestrator.define_workflow('fc_rate_sql', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1/0",
  "retry": {"max_attempts": 2, "backoff": "0 seconds"}, "rate_limit": {"key": "fc-sql", "per_second": 0.001, "burst": 1}}]}') AS v;
SELECT orchestrator.start_workflow('fc_rate_sql') AS sql_run \gset
SELECT fc_wait_attempt(:'sql_run', 's', 1) AS first_attempt;
SELECT s.status, s.attempt, s.ready_at > now() + interval '900 seconds' AS retry_waits_for_token
	FROM orchestrator.run_steps s WHERE s.run_id = :'sql_run';
SELECT orchestrator.cancel_workflow(:'sql_run');
RESET ROLE;

-- A run that fails while it is started (its first step a sleep whose "until"
-- is no time) gives back the tenant slot it took: the run's tenant is read in
-- the same command that wrote the run (with rows.c, a read-only query of the
-- statement's snapshot found no row, and the slot was kept: the tenant's next
-- start queued for good).
SELECT orchestrator.set_tenant_limits('fc_fail_fast', 1);
SELECT orchestrator.define_workflow('fc_fail_at_start',
  '{"steps": [{"name": "s", "kind": "sleep", "until": {"$path": "$.input.until"}}]}') > 0 AS defined;
SELECT orchestrator.start_workflow('fc_fail_at_start', '{"until": "soon"}', '{"tenant": "fc_fail_fast"}') AS ff \gset
SELECT status FROM orchestrator.workflow_runs WHERE id = :'ff';
SELECT active FROM orchestrator.get_tenant_limits('fc_fail_fast');
SELECT orchestrator.start_workflow('fc_fail_at_start', '{"until": "2999-01-01T00:00:00Z"}', '{"tenant": "fc_fail_fast"}') AS ff2 \gset
SELECT status <> 'queued' AS admitted FROM orchestrator.workflow_runs WHERE id = :'ff2';
SELECT orchestrator.cancel_workflow(:'ff2');
SELECT orchestrator.set_tenant_limits('fc_fail_fast', NULL);
