\set SHOW_CONTEXT never
-- Attacks of one ordinary role on another, each refused.  Every block was an
-- attack that worked on 0.2 (see docs/security.md for the threat model).
CREATE ROLE r_owner LOGIN IN ROLE orchestrator_user;
CREATE ROLE r_other LOGIN IN ROLE orchestrator_user;
CREATE ROLE r_admin LOGIN IN ROLE orchestrator_admin;
CREATE SCHEMA r_owner AUTHORIZATION r_owner;
CREATE SCHEMA r_other AUTHORIZATION r_other;

-- 1. Escalation through a trap: r_other's index expression starts a
-- workflow whose sql step makes r_other superuser; a superuser's ANALYZE
-- (or autovacuum) evaluates it.  0.2 recorded the superuser (the outer user)
-- as the run's owner.  Now calls from a security-restricted operation are
-- refused, and nothing is started.
SET ROLE r_other;
SELECT orchestrator.define_workflow('r_escalate', '{"steps": [{"name": "s", "kind": "sql", "sql": "ALTER ROLE r_other SUPERUSER"}]}');
CREATE TABLE r_other.trap (x int);
CREATE FUNCTION r_other.trap_fn(int) RETURNS int LANGUAGE sql IMMUTABLE
	AS $$ SELECT length(orchestrator.start_workflow('r_escalate')::text) $$;
CREATE INDEX trap_idx ON r_other.trap (r_other.trap_fn(x));
INSERT INTO r_other.trap VALUES (1);
RESET ROLE;
SELECT try('ANALYZE r_other.trap') AS analyze_by_superuser;
SELECT try('REINDEX TABLE r_other.trap') AS reindex_by_superuser;
SELECT count(*) AS runs_started_in_trap FROM orchestrator.workflow_runs
	WHERE name = 'r_escalate' AND started_by <> 'r_other'::regrole;

-- ... and through a SECURITY DEFINER function of r_other that a superuser
-- calls: the caller is current_user at the call (r_other), so the workflow
-- it defines belongs to r_other and its step runs as r_other.
SET ROLE r_other;
CREATE FUNCTION r_other.helpful() RETURNS uuid LANGUAGE sql SECURITY DEFINER AS $$
	SELECT orchestrator.define_workflow('r_escalate2', '{"steps": [{"name": "s", "kind": "sql", "sql": "ALTER ROLE r_other SUPERUSER"}]}');
	SELECT orchestrator.start_workflow('r_escalate2')
$$;
RESET ROLE;
SELECT r_other.helpful() AS trap_run \gset
SELECT wait_for_run(:'trap_run') AS trap_run_status;
SELECT owner, started_by, (SELECT error ->> 'error' FROM orchestrator.runs WHERE id = :'trap_run') IS NOT NULL AS failed_with_error
	FROM orchestrator.runs WHERE id = :'trap_run';
SELECT rolsuper AS r_other_is_superuser FROM pg_roles WHERE rolname = 'r_other';

-- 2. Trojan workflows: a workflow runs with its owner's rights, whoever
-- starts it.  A superuser starting r_other's workflow does not lend it
-- superuser rights.
SET ROLE r_other;
SELECT orchestrator.define_workflow('r_whoami', '{"steps": [{"name": "s", "kind": "sql",
	"sql": "SELECT current_user::text AS who, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super"}]}');
RESET ROLE;
SELECT orchestrator.start_workflow('r_whoami') AS su_run \gset
SELECT wait_for_run(:'su_run') AS su_run_status;
SELECT orchestrator.workflow_result(:'su_run') -> 's' AS step_ran_as;
-- Others may not start it at all without a grant.
SET ROLE r_owner;
SELECT try($$SELECT orchestrator.start_workflow('r_whoami')$$) AS start_without_grant;
RESET ROLE;
SET ROLE r_other;
SELECT orchestrator.grant_workflow('r_whoami', 'r_owner');
RESET ROLE;
SET ROLE r_owner;
SELECT orchestrator.start_workflow('r_whoami') AS granted_run \gset
SELECT wait_for_run(:'granted_run') AS granted_run_status;
SELECT orchestrator.workflow_result(:'granted_run') -> 's' AS step_ran_as;
SELECT owner, started_by FROM orchestrator.runs WHERE id = :'granted_run';
RESET ROLE;
-- The owner sees runs others started of its workflow; the starter only its own.
SET ROLE r_other;
SELECT count(*) AS owner_sees FROM orchestrator.runs WHERE name = 'r_whoami';
RESET ROLE;
SET ROLE r_owner;
SELECT count(*) AS starter_sees FROM orchestrator.runs WHERE name = 'r_whoami';
SELECT try(format('SELECT orchestrator.get_workflow(%L)', :'su_run')) AS starter_reads_others_run;
RESET ROLE;
SET ROLE r_other;
SELECT orchestrator.revoke_workflow('r_whoami', 'r_owner') AS revoked,
	   orchestrator.revoke_workflow('r_whoami', 'r_owner') AS revoked_again;
RESET ROLE;
SET ROLE r_owner;
SELECT try($$SELECT orchestrator.start_workflow('r_whoami')$$) AS start_after_revoke;
-- Only the owner (or an admin) grants.
SELECT try($$SELECT orchestrator.grant_workflow('r_whoami', 'r_owner')$$) AS grant_to_self;
SELECT try($$SELECT orchestrator.grant_workflow('r_whoami', 'r_owner', 'own')$$) AS unknown_privilege;
SELECT try($$SELECT orchestrator.grant_workflow('r_no_such_workflow', 'r_owner')$$) AS grant_missing;
RESET ROLE;

-- 3. Queues are per workflow: a role claims only the external steps of the
-- workflows it owns or was granted "work" on, and cannot complete, fail or
-- heartbeat the others' even with their lease token.
SET ROLE r_owner;
SELECT orchestrator.define_workflow('r_billing', '{"steps": [{"name": "charge", "kind": "external", "queue": "r_billing"}]}');
SELECT orchestrator.start_workflow('r_billing', '{"card": "4242"}') AS bill_run \gset
RESET ROLE;
SET ROLE r_other;
SELECT count(*) AS others_claim FROM orchestrator.claim_steps('r_billing', 'thief', 10);
RESET ROLE;
SET ROLE r_owner;
SELECT lease_token AS bill_token, input FROM orchestrator.claim_steps('r_billing', 'owner-worker') \gset
SELECT :'input' AS owner_claimed_input;
RESET ROLE;
SET ROLE r_other;
SELECT try(format('SELECT orchestrator.complete_step(%L, %L, %L, %L)', :'bill_run', 'charge', :'bill_token', '{"forged": true}')) AS forge_complete;
SELECT try(format('SELECT orchestrator.complete_steps(ARRAY[%L]::uuid[], ARRAY[%L], ARRAY[%L]::uuid[], ARRAY[%L]::jsonb[])', :'bill_run', 'charge', :'bill_token', '{"forged": true}')) AS forge_complete_steps;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L)', :'bill_run', 'charge', :'bill_token')) AS hold_lease;
SELECT try(format('SELECT orchestrator.fail_step(%L, %L, %L, %L)', :'bill_run', 'charge', :'bill_token', '{}')) AS forge_fail;
RESET ROLE;
SET ROLE r_owner;
SELECT orchestrator.complete_step(:'bill_run', 'charge', :'bill_token', '{"charged": true}') AS owner_completes;
SELECT status, result FROM orchestrator.runs WHERE id = :'bill_run';
RESET ROLE;
-- An admin works every queue.
SET ROLE r_owner;
SELECT orchestrator.start_workflow('r_billing') IS NOT NULL AS started;
RESET ROLE;
SET ROLE r_admin;
SELECT count(*) AS admin_claims FROM orchestrator.claim_steps('r_billing', 'admin-worker');
RESET ROLE;

-- 4. Definitions are readable only by the workflow's owner, its grantees
-- and admins (row-level security on the tables).
SET ROLE r_other;
SELECT count(*) AS others_definitions FROM orchestrator.definitions WHERE name = 'r_billing';
SELECT count(*) AS others_workflows FROM orchestrator.workflows WHERE name = 'r_billing';
SELECT name FROM orchestrator.definitions WHERE name LIKE 'r\_%' ORDER BY name;
RESET ROLE;
SET ROLE r_owner;
SELECT name, owner FROM orchestrator.workflows WHERE name LIKE 'r\_%' ORDER BY name;
SELECT orchestrator.grant_workflow('r_billing', 'r_other', 'work');
RESET ROLE;
SET ROLE r_other;
SELECT name, version FROM orchestrator.definitions WHERE name = 'r_billing';
SELECT name, grantee, privilege, owner FROM orchestrator.workflow_grants WHERE name = 'r_billing';
RESET ROLE;
SET ROLE r_admin;
SELECT count(*) AS admin_sees_definitions FROM orchestrator.definitions WHERE name IN ('r_billing', 'r_whoami');
RESET ROLE;

-- 5. Idempotency keys belong to the role that starts the run: another role
-- neither takes the key nor learns the run id.
SET ROLE r_other;
SELECT orchestrator.grant_workflow('r_whoami', 'r_owner');
SELECT orchestrator.start_workflow('r_whoami', '{}', '{"idempotency_key": "order-1"}') AS key_run_other \gset
RESET ROLE;
SET ROLE r_owner;
SELECT orchestrator.start_workflow('r_whoami', '{}', '{"idempotency_key": "order-1"}') AS key_run_owner \gset
SELECT :'key_run_owner' <> :'key_run_other' AS different_runs,
	   orchestrator.start_workflow('r_whoami', '{}', '{"idempotency_key": "order-1"}') = :'key_run_owner' AS same_key_same_run;
RESET ROLE;

-- 6. Owners are role OIDs: a role created later with a dropped role's name
-- inherits neither its workflows nor its runs.
CREATE ROLE r_gone LOGIN IN ROLE orchestrator_user;
SET ROLE r_gone;
SELECT orchestrator.define_workflow('r_gone_wf', '{"steps": [{"name": "e", "kind": "external", "queue": "r_gone"}]}');
SELECT orchestrator.start_workflow('r_gone_wf') AS gone_run \gset
RESET ROLE;
DROP ROLE r_gone;
CREATE ROLE r_gone LOGIN IN ROLE orchestrator_user;
SET ROLE r_gone;
SELECT count(*) AS new_role_sees_runs FROM orchestrator.runs WHERE id = :'gone_run';
SELECT count(*) AS new_role_sees_workflows FROM orchestrator.workflows WHERE name = 'r_gone_wf';
SELECT try($$SELECT orchestrator.define_workflow('r_gone_wf', '{"steps": [{"name": "x", "kind": "sql", "sql": "SELECT 1"}]}')$$) AS new_role_takes_name;
SELECT count(*) AS new_role_claims FROM orchestrator.claim_steps('r_gone', 'w');
RESET ROLE;
SELECT owner::oid <> 'r_gone'::regrole::oid AS owner_is_old_oid FROM orchestrator.runs WHERE id = :'gone_run';

-- 7. A step's timeout is bounded by orchestrator.max_step_timeout (1 hour).
SET ROLE r_owner;
SELECT try($$SELECT orchestrator.define_workflow('r_long', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1", "timeout": "2 hours"}]}')$$) AS too_long;
SELECT try($$SELECT orchestrator.define_workflow('r_long', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1", "compensate": {"kind": "sql", "sql": "SELECT 2", "timeout": "1 day"}}]}')$$) AS compensation_too_long;
SELECT count(*) AS nothing_written FROM orchestrator.workflows WHERE name = 'r_long';
-- waiting holds nothing: a wait step may wait longer
SELECT orchestrator.define_workflow('r_long', '{"steps": [{"name": "w", "kind": "wait", "signal": "go", "timeout": "7 days"}]}') AS long_wait_ok;
SHOW orchestrator.max_step_timeout;
SELECT try($$SET orchestrator.max_step_timeout = '1 day'$$) AS user_raises_limit;
RESET ROLE;

-- 8. Internal functions are not callable by users, implementations included.
SET ROLE r_other;
SELECT try($$SELECT orchestrator._api_start_workflow('r_billing', '{}', '{}')$$) AS call_implementation;
SELECT try($$SELECT * FROM orchestrator._api_claim_steps('r_billing', 'w', 1, '1 minute')$$) AS call_claim;
-- the API's transitions in C, on any run id
SELECT try($$SELECT orchestrator._api_cancel_workflow(orchestrator.uuid_v7(), NULL)$$) AS call_cancel_implementation;
SELECT try($$SELECT orchestrator._api_retry_run(orchestrator.uuid_v7(), NULL)$$) AS call_retry_implementation;
SELECT try($$SELECT orchestrator._api_heartbeat_step(orchestrator.uuid_v7(), 'a', orchestrator.uuid_v7(), NULL, NULL)$$) AS call_heartbeat_implementation;
SELECT try($$SELECT orchestrator._api_fail_step(orchestrator.uuid_v7(), 'a', orchestrator.uuid_v7(), '{}', false)$$) AS call_fail_implementation;
SELECT try($$SELECT * FROM orchestrator._http_step_record(orchestrator.uuid_v7(), 'a', orchestrator.uuid_v7(), 200, '{}', '', 'text', NULL, NULL, 1)$$) AS call_http_step_record;
SELECT try($$SELECT orchestrator._api_signal_workflow(orchestrator.uuid_v7(), 'go', '{}')$$) AS call_signal_implementation;
SELECT try($$SELECT * FROM orchestrator._dispatch(10)$$) AS call_dispatch;
RESET ROLE;
-- Every internal function (a name starting with "_") a user may execute: only
-- these, which reveal nothing but what the caller may know of itself (a new
-- internal function granted by mistake shows here).
SELECT p.proname
FROM pg_proc p
WHERE p.pronamespace = 'orchestrator'::regnamespace AND p.proname LIKE '\_%'
  AND has_function_privilege('r_other', p.oid, 'EXECUTE')
ORDER BY 1;

-- 9. Circuit breakers are per workflow owner: r_other's failures against a
-- host open r_other's breaker only, and each role sees its own.
INSERT INTO orchestrator.http_circuits (owner, host, state, failures, opened_at, retry_at)
	VALUES ('r_other', 'partner.example:443', 'open', 5, now(), now() + interval '1 hour');
SELECT orchestrator._http_circuit_admit('r_other', 'partner.example:443', '1 minute') IS NOT NULL AS r_other_waits,
	   orchestrator._http_circuit_admit('r_owner', 'partner.example:443', '1 minute') IS NULL AS r_owner_passes;
SET ROLE r_owner;
SELECT count(*) AS r_owner_sees_breakers FROM orchestrator.circuit_breakers WHERE host = 'partner.example:443';
RESET ROLE;
SET ROLE r_other;
SELECT owner, host, state FROM orchestrator.circuit_breakers WHERE host = 'partner.example:443';
RESET ROLE;
DELETE FROM orchestrator.http_circuits WHERE host = 'partner.example:443';

-- 10. Resuming, cancelling, heartbeating and failing another role's run are
-- refused (these transitions are C since 0.4, with the errors of the
-- PL/pgSQL they replaced): cancel and resume answer as for a run that does
-- not exist; heartbeat and fail refuse a lease of a workflow the caller may
-- not work, whatever the token.  Nothing is written.
CREATE FUNCTION r_err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN regexp_replace(concat_ws(' | ', st, msg, nullif(det, ''), nullif(hin, '')),
		'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END $$;
GRANT EXECUTE ON FUNCTION r_err(text) TO PUBLIC;
SET ROLE r_owner;
SELECT orchestrator.define_workflow('r_victim', '{"steps": [{"name": "job", "kind": "external", "queue": "r_victim"},
	{"name": "after", "kind": "wait", "signal": "go", "depends_on": ["job"]}]}');
SELECT orchestrator.start_workflow('r_victim') AS victim_run \gset
SELECT orchestrator.start_workflow('r_victim') AS victim_stopped \gset
SELECT orchestrator.cancel_workflow(:'victim_stopped', 'to resume later') AS owner_cancels;
SELECT lease_token AS victim_token FROM orchestrator.claim_steps('r_victim', 'owner-worker') \gset
RESET ROLE;
SET ROLE r_other;
SELECT r_err(format('SELECT orchestrator.cancel_workflow(%L, %L)', :'victim_run', 'hostile')) AS cancel_others;
SELECT r_err(format('SELECT orchestrator.retry_run(%L)', :'victim_stopped')) AS resume_others;
SELECT r_err(format('SELECT orchestrator.retry_run(%L, ARRAY[%L])', :'victim_stopped', 'job')) AS resume_others_named;
SELECT r_err(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L, %L)', :'victim_run', 'job', :'victim_token',
	'1 hour', '{"hostile": true}')) AS heartbeat_others;
SELECT r_err(format('SELECT orchestrator.fail_step(%L, %L, %L, %L, false)', :'victim_run', 'job', :'victim_token',
	'{"hostile": true}')) AS fail_others;
SELECT r_err(format('SELECT orchestrator.fail_step(%L, %L, %L, %L)', :'victim_stopped', 'job', orchestrator.uuid_v7(), '{}')) AS fail_others_ended;
SELECT r_err(format('SELECT orchestrator.signal_workflow(%L, %L)', :'victim_run', 'go')) AS signal_others;
-- arguments are checked first, the same for any run
SELECT r_err(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L)', :'victim_run', 'job', :'victim_token', '0 seconds')) AS heartbeat_bad_lease;
SELECT r_err(format('SELECT orchestrator.heartbeat_step(%L, NULL, %L)', :'victim_run', :'victim_token')) AS heartbeat_null_step;
SELECT r_err(format('SELECT orchestrator.fail_step(NULL, %L, %L, %L)', 'job', :'victim_token', '{}')) AS fail_null_run;
SELECT r_err('SELECT orchestrator.retry_run(NULL)') AS resume_null;
SELECT r_err('SELECT orchestrator.cancel_workflow(NULL)') AS cancel_null;
SELECT r_err(format('SELECT orchestrator.cancel_workflow(%L)', orchestrator.uuid_v7())) AS cancel_missing;
SELECT r_err(format('SELECT orchestrator.fail_step(%L, %L, %L, %L)', orchestrator.uuid_v7(), 'job', orchestrator.uuid_v7(), '{}')) AS fail_missing;
SELECT r_err($$SELECT * FROM orchestrator.claim_steps('r victim', 'w')$$) AS claim_bad_queue;
SELECT r_err($$SELECT * FROM orchestrator.claim_steps('r_victim', '')$$) AS claim_bad_worker;
SELECT r_err($$SELECT * FROM orchestrator.claim_steps('r_victim', 'w', 0)$$) AS claim_bad_max;
SELECT r_err($$SELECT * FROM orchestrator.claim_steps('r_victim', 'w', 1, '2 days')$$) AS claim_bad_lease;
SELECT count(*) AS others_claim FROM orchestrator.claim_steps('r_victim', 'thief', 10, '1 hour');
RESET ROLE;
SELECT status FROM orchestrator.runs WHERE id = :'victim_run';
SELECT status FROM orchestrator.runs WHERE id = :'victim_stopped';
SELECT type, step FROM orchestrator.events(:'victim_run') ORDER BY seq;
SELECT status, attempt, progress FROM orchestrator.run_steps WHERE run_id = :'victim_run' AND step = 'job';
SELECT lease, worker FROM orchestrator.work_queue WHERE run_id = :'victim_run';
-- The owner's calls go through: heartbeat with progress, a failed attempt
-- (retried), and the cancelled run resumed.
SET ROLE r_owner;
SELECT orchestrator.heartbeat_step(:'victim_run', 'job', :'victim_token', '10 minutes', '{"done": 1}') AS owner_heartbeats;
RESET ROLE;
SELECT lease FROM orchestrator.work_queue WHERE run_id = :'victim_run';
SELECT data FROM orchestrator.events(:'victim_run') WHERE type = 'step.progress';
SET ROLE r_owner;
SELECT orchestrator.fail_step(:'victim_run', 'job', :'victim_token', '{"message": "try again"}') AS owner_fails;
SELECT orchestrator.fail_step(:'victim_run', 'job', :'victim_token', '{"message": "again"}') AS stale_token_fails;
SELECT status, attempt, error FROM orchestrator.run_steps WHERE run_id = :'victim_run' AND step = 'job';
SELECT orchestrator.retry_run(:'victim_stopped') AS owner_resumes;
SELECT status FROM orchestrator.runs WHERE id = :'victim_stopped';
SELECT type, step, data - 'by' AS data FROM orchestrator.events(:'victim_stopped') ORDER BY seq;
SELECT orchestrator.cancel_workflow(:'victim_run') AS owner_cancels, orchestrator.cancel_workflow(:'victim_stopped') AS owner_cancels_resumed;
RESET ROLE;
