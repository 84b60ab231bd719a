\set SHOW_CONTEXT never
-- Resuming failed work: retry_run() and retry_webhook_deliveries().

-- A run fails because a table is missing; once it exists, the run resumes
-- where it stopped: the step that succeeded is not run again.
CREATE TABLE r_effects (step text, at timestamptz DEFAULT clock_timestamp());
SELECT orchestrator.define_workflow('r_load', $$
{"steps": [
  {"name": "extract", "kind": "sql", "sql": "INSERT INTO r_effects (step) VALUES ('extract') RETURNING 42 AS n"},
  {"name": "load", "kind": "sql", "depends_on": ["extract"],
   "sql": "INSERT INTO r_missing (n) VALUES (($1 #>> '{}')::integer) RETURNING n",
   "args": [{"$path": "$.steps.extract.result.n"}]},
  {"name": "report", "kind": "sql", "depends_on": ["load"],
   "sql": "INSERT INTO r_effects (step) VALUES ('report') RETURNING true AS ok"}
 ]}
$$);
SELECT orchestrator.start_workflow('r_load') AS run \gset
SELECT wait_for_run(:'run');
SELECT error ->> 'step' AS step, error ->> 'status' AS status, error -> 'error' ->> 'sqlstate' AS sqlstate
FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;

-- Bad input writes nothing: an unknown step, a step that succeeded.
SELECT count(*) AS events_before FROM orchestrator.events(:'run') \gset
CREATE FUNCTION r_try(sql text) RETURNS TABLE (state text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	state := 'ok';
	RETURN NEXT;
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
	message := regexp_replace(message, '[0-9a-f]{8}-[0-9a-f-]{27}', '<id>', 'g');
	RETURN NEXT;
END $$;
\x on
SELECT * FROM r_try(format('SELECT orchestrator.retry_run(%L, %L)', :'run', '{nope}'));
SELECT * FROM r_try(format('SELECT orchestrator.retry_run(%L, %L)', :'run', '{extract}'));
\x off
SELECT try(format('SELECT orchestrator.retry_run(%L, %L)', :'run', '{load,NULL}'));
SELECT status, count(*) = :events_before AS nothing_written
FROM orchestrator.runs, orchestrator.events(:'run') WHERE id = :'run' GROUP BY status;

-- Another role does not see the run.
CREATE ROLE rec_other LOGIN IN ROLE orchestrator_user;
SET ROLE rec_other;
SELECT try(format('SELECT orchestrator.retry_run(%L)', :'run'));
RESET ROLE;

-- Fixed: the table exists now.
CREATE TABLE r_missing (n integer);
SELECT orchestrator.retry_run(:'run', '{load}');
SELECT wait_for_run(:'run');
SELECT status, error, result FROM orchestrator.runs WHERE id = :'run';
SELECT step, count(*) FROM r_effects GROUP BY step ORDER BY step;
SELECT n FROM r_missing;
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
SELECT seq, type, step, CASE WHEN type = 'workflow.resumed' THEN data END AS data
FROM orchestrator.events(:'run') ORDER BY seq;
-- A succeeded run is not resumed.
SELECT orchestrator.retry_run(:'run');

-- A partner is down: the external step fails for good, the run fails; once
-- the partner is back the step gets max_attempts fresh attempts.
SELECT orchestrator.define_workflow('r_partner', $$
{"steps": [
  {"name": "prepare", "kind": "external", "queue": "q_rec"},
  {"name": "call", "kind": "external", "queue": "q_rec", "depends_on": ["prepare"], "retry": {"max_attempts": 2}},
  {"name": "notify", "kind": "external", "queue": "q_rec", "depends_on": ["call"]},
  {"name": "audit", "kind": "external", "queue": "q_rec", "depends_on": ["prepare"]}
 ]}
$$);
SELECT orchestrator.start_workflow('r_partner') AS run \gset
SELECT lease_token AS t FROM orchestrator.claim_steps('q_rec', 'w') \gset
SELECT orchestrator.complete_step(:'run', 'prepare', :'t', '{"order": 7}');
CREATE TEMP TABLE claims AS SELECT step, lease_token FROM orchestrator.claim_steps('q_rec', 'w', 10);
SELECT step FROM claims ORDER BY step;
SELECT orchestrator.fail_step(:'run', 'call', lease_token, '{"message": "partner down"}', false)
FROM claims WHERE step = 'call';
SELECT status, error ->> 'step' AS step, error ->> 'status' AS step_status FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
-- Naming only a step that was cancelled leaves the failed one: refused.
\x on
SELECT * FROM r_try(format('SELECT orchestrator.retry_run(%L, %L)', :'run', '{notify}'));
\x off
SELECT orchestrator.retry_run(:'run');
SELECT status, error FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, attempt, attempt_base, deps_open FROM orchestrator.workflow_steps
WHERE run_id = :'run' ORDER BY position;
-- The old leases are gone.
SELECT orchestrator.complete_step(:'run', step, lease_token, '{}') FROM claims ORDER BY step;
-- "call" has two fresh attempts: the first fails and is retried.
TRUNCATE claims;
INSERT INTO claims SELECT step, lease_token FROM orchestrator.claim_steps('q_rec', 'w', 10);
SELECT step FROM claims ORDER BY step;
SELECT orchestrator.fail_step(:'run', 'call', lease_token, '{"message": "still warming up"}', true)
FROM claims WHERE step = 'call';
SELECT orchestrator.complete_step(:'run', 'audit', lease_token, '{}') FROM claims WHERE step = 'audit';
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run' AND step = 'call';
UPDATE orchestrator.work_queue SET available_at = now() WHERE run_id = :'run' AND step = 'call';
SELECT step, orchestrator.complete_step(:'run', step, lease_token, '{"ok": true}')
FROM orchestrator.claim_steps('q_rec', 'w', 10);
SELECT step, orchestrator.complete_step(:'run', step, lease_token, '{}')
FROM orchestrator.claim_steps('q_rec', 'w', 10);
SELECT status FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
SELECT seq, type, step, CASE WHEN type = 'workflow.resumed' THEN data END AS data
FROM orchestrator.events(:'run') ORDER BY seq;

-- A cancelled run is resumed: it never started, so it is pending again.
SELECT orchestrator.start_workflow('r_partner') AS run \gset
SELECT orchestrator.cancel_workflow(:'run', 'by mistake');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
SELECT orchestrator.retry_run(:'run');
SELECT status, error, started_at IS NULL AS never_started FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, deps_open FROM orchestrator.workflow_steps WHERE run_id = :'run' ORDER BY position;
SELECT data FROM orchestrator.events(:'run') WHERE type = 'workflow.resumed';
SELECT orchestrator.cancel_workflow(:'run');

-- A compensated run is not resumed.
SELECT orchestrator.define_workflow('r_saga', $$
{"steps": [
  {"name": "book", "kind": "external", "queue": "q_rec_saga",
   "compensate": {"kind": "sql", "sql": "SELECT 'unbooked'"}},
  {"name": "pay", "kind": "external", "queue": "q_rec_saga", "depends_on": ["book"]}
 ]}
$$);
SELECT orchestrator.start_workflow('r_saga') AS run \gset
SELECT lease_token AS t FROM orchestrator.claim_steps('q_rec_saga', 'w') \gset
SELECT orchestrator.complete_step(:'run', 'book', :'t', '{}');
SELECT lease_token AS t FROM orchestrator.claim_steps('q_rec_saga', 'w') \gset
SELECT orchestrator.fail_step(:'run', 'pay', :'t', '{"message": "card declined"}', false);
SELECT wait_for_run(:'run');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
\x on
SELECT * FROM r_try(format('SELECT orchestrator.retry_run(%L)', :'run'));
\x off

-- A run whose deadline has passed is not resumed.
SELECT orchestrator.start_workflow('r_partner', '{}', '{"deadline": "1 second"}') AS run \gset
SELECT orchestrator.cancel_workflow(:'run');
SELECT pg_sleep(1.1);
SELECT try(format('SELECT orchestrator.retry_run(%L)', :'run'));

-- Webhook deliveries that are dead are queued again.
SELECT id AS hook FROM orchestrator.create_webhook('http://127.0.0.1:9/hook', '{workflow.created}') \gset
BEGIN;
SELECT orchestrator.start_workflow('r_partner') AS run \gset
SELECT orchestrator.start_workflow('r_partner') AS run2 \gset
UPDATE orchestrator.webhook_outbox SET status = 'dead', attempt = 6, last_error = 'connection refused'
WHERE webhook_id = :'hook';
COMMIT;
SELECT status, attempts FROM orchestrator.webhook_deliveries WHERE webhook_id = :'hook';
BEGIN;
SELECT orchestrator.retry_webhook_deliveries(:'hook', now() + interval '1 hour');
SELECT orchestrator.retry_webhook_deliveries(:'hook');
SELECT status, attempts, next_attempt_at <= now() AS due, last_error FROM orchestrator.webhook_deliveries
WHERE webhook_id = :'hook';
SELECT orchestrator.retry_webhook_deliveries();
SELECT orchestrator.drop_webhook(:'hook');
COMMIT;
SELECT try(format('SELECT orchestrator.retry_webhook_deliveries(%L)', :'hook'));
SET ROLE rec_other;
SELECT try('SELECT orchestrator.retry_webhook_deliveries()');
RESET ROLE;
SELECT orchestrator.cancel_workflow(:'run'), orchestrator.cancel_workflow(:'run2');

-- Resuming runs the owner's steps again: it needs the right to start the
-- workflow.  A role whose "start" grant was revoked still sees the run it
-- started, but cannot resume it; the owner can.
CREATE ROLE rec_owner LOGIN IN ROLE orchestrator_user;
SET ROLE rec_owner;
SELECT orchestrator.define_workflow('r_granted', '{"steps": [{"name": "e", "kind": "external", "queue": "q_rec_granted"}]}') IS NOT NULL AS defined;
SELECT orchestrator.grant_workflow('r_granted', 'rec_other');
RESET ROLE;
SET ROLE rec_other;
SELECT orchestrator.start_workflow('r_granted') AS run \gset
SELECT orchestrator.cancel_workflow(:'run') AS cancelled;
RESET ROLE;
SET ROLE rec_owner;
SELECT orchestrator.revoke_workflow('r_granted', 'rec_other') AS revoked;
RESET ROLE;
SET ROLE rec_other;
SELECT try(format('SELECT orchestrator.retry_run(%L)', :'run')) AS resume_after_revoke;
SELECT status FROM orchestrator.runs WHERE id = :'run';
RESET ROLE;
SET ROLE rec_owner;
SELECT orchestrator.retry_run(:'run') AS owner_resumes;
SELECT orchestrator.cancel_workflow(:'run') AS cancelled_again;
RESET ROLE;
