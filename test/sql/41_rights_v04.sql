\set SHOW_CONTEXT never
-- Attacks of one ordinary role on another through what 0.3 and 0.4 added
-- (hostile review; docs/security.md).  Each block failed before its fix.
CREATE ROLE h_alice LOGIN IN ROLE orchestrator_user;
CREATE ROLE h_bob LOGIN IN ROLE orchestrator_user;
CREATE ROLE h_admin LOGIN IN ROLE orchestrator_admin;
-- An error's SQLSTATE, message, detail and hint.
CREATE FUNCTION h_try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
	h text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || nullif(d, ''), '') || coalesce(' / ' || nullif(h, ''), '');
END $$;
GRANT EXECUTE ON FUNCTION h_try(text) TO PUBLIC;

-- 1. A cursor a sql step leaves open.  A dispatcher's batch runs the steps
-- of many owners in one transaction, each in a subtransaction: a cursor
-- h_alice's step declared stayed open for the steps after it, of h_bob, which
-- could FETCH rows read with h_alice's rights (or find the name taken).  The
-- step's cursors are closed when its statement ends.  _run_sql_step() is what
-- the dispatcher runs for each step, each in a subtransaction (the savepoints
-- here); several in one transaction are a batch.
CREATE FUNCTION h_open() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'h_ref'; BEGIN OPEN c FOR SELECT 1; RETURN c; END $$;
BEGIN;
-- a cursor of the batch's own, declared before, is not a step's to close
DECLARE mine CURSOR FOR SELECT 1;
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_alice'::regrole, 'DECLARE h_cur CURSOR FOR SELECT current_user AS declared_by', NULL, 0) AS alice_declares;
RELEASE step;
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_bob'::regrole, 'SELECT array_agg(name ORDER BY name) AS cursors FROM pg_cursors', NULL, 0) AS bob_sees;
RELEASE step;
SAVEPOINT step;
SELECT try($$SELECT orchestrator._run_sql_step('h_bob'::regrole, 'FETCH h_cur', NULL, 0)$$) AS bob_fetches;
RELEASE step;
-- the same for a cursor opened by a function and returned by name
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_alice'::regrole, 'SELECT public.h_open() AS opened', NULL, 0) AS alice_opens;
RELEASE step;
SELECT name FROM pg_cursors ORDER BY name;
COMMIT;

-- 2. A YAML text larger than a spec may be: it was parsed and turned into
-- jsonb whole (memory and time in proportion, up to 1 GB of text) before
-- define_workflow() refused the 1 MB spec.  Now the text is refused first:
-- 22023 with its size, even when what follows the 1 MB is not valid YAML (an
-- anchor at the end, which the reader refuses with 22P02), and nothing is
-- written; a text of 1 MB is read.
SET ROLE h_alice;
SELECT h_try($$SELECT orchestrator.define_workflow_yaml('h_big', 'steps: [' || repeat(' ', 1048576) || '&a x]')$$) AS yaml_over_1mb;
SELECT count(*) AS written FROM orchestrator.definitions WHERE name = 'h_big';
SELECT h_try($$SELECT orchestrator.define_workflow_yaml('h_big', 'steps: [{name: s, kind: external, queue: q}]' || repeat(' ', 1048576 - 44))$$) AS yaml_of_1mb;
SELECT name, version FROM orchestrator.definitions WHERE name = 'h_big';
RESET ROLE;

-- 3. Session values had no bound: one role could write values of up to 1 GB
-- each into the table every role's sessions share.  A value is held to the
-- writing role's max_input_bytes (54000, nothing written), as a run's input.
SELECT orchestrator.set_owner_limits('h_alice', '{"max_input_bytes": 100}') ->> 'max_input_bytes' AS alice_max_input;
SET ROLE h_alice;
SELECT h_try($$SELECT orchestrator.session_set('h_big', jsonb_build_object('x', repeat('x', 200)))$$) AS set_over_limit;
SELECT h_try($$SELECT orchestrator.session_create('h_big', jsonb_build_object('x', repeat('x', 200)))$$) AS create_over_limit;
SELECT count(*) AS written FROM orchestrator.sessions WHERE key = 'h_big';
SELECT orchestrator.session_set('h_small', '{"x": 1}') AS small_set, orchestrator.session_create('h_small2', '{"x": 1}') AS small_created;
RESET ROLE;
-- h_bob's limit is the default (1 MB): h_alice's does not apply to it
SET ROLE h_bob;
SELECT orchestrator.session_set('h_big', jsonb_build_object('x', repeat('x', 200))) AS bob_sets;
RESET ROLE;
SELECT orchestrator.set_owner_limits('h_alice', '{"max_input_bytes": null}') ->> 'max_input_bytes' AS alice_max_input;

-- 3b. The number of session keys had no bound either (rows, not bytes: a
-- role could fill the shared table with small keys).  max_sessions counts a
-- role's live keys; a new key beyond it is refused (54000, nothing written),
-- a write of a live key never is, expired keys do not count, and another
-- role's keys are its own.
SELECT orchestrator.set_owner_limits('h_alice', '{"max_sessions": 2}') ->> 'max_sessions' AS alice_max_sessions;
SET ROLE h_alice;
SELECT orchestrator.session_delete('h_small') AND orchestrator.session_delete('h_small2') AS alice_starts_empty;
SELECT orchestrator.session_set('h_k1', '1') AS k1, orchestrator.session_create('h_k2', '2') AS k2;
SELECT h_try($$SELECT orchestrator.session_set('h_k3', '3')$$) AS set_new_key_over;
SELECT h_try($$SELECT orchestrator.session_create('h_k3', '3')$$) AS create_new_key_over;
SELECT count(*) AS written FROM orchestrator.sessions WHERE key = 'h_k3';
SELECT orchestrator.session_set('h_k1', '10') AS live_key_rewritten,
	   orchestrator.session_set('h_k2', '20', expected_version => 1) AS live_key_at_version;
-- a key that expires frees its place; so does a deleted one
SELECT orchestrator.session_set('h_k2', '2', '1 millisecond') AS k2_expiring;
SELECT pg_sleep(0.01);
SELECT orchestrator.session_set('h_k3', '3') AS k3_after_expiry;
SELECT orchestrator.session_delete('h_k1') AS k1_deleted;
SELECT orchestrator.session_create('h_k4', '4') AS k4_after_delete;
SELECT * FROM orchestrator.get_owner_limits() WHERE name = 'max_sessions';
RESET ROLE;
SET ROLE h_bob;
SELECT orchestrator.session_set('h_k1', '1') + orchestrator.session_set('h_k2', '2')
	+ orchestrator.session_set('h_k3', '3') AS bob_sets_three_new_keys;
RESET ROLE;
SELECT orchestrator.set_owner_limits('h_alice', '{"max_sessions": null}') ->> 'max_sessions' AS alice_max_sessions;
-- A session write in h_alice's index expression, evaluated by a superuser's
-- ANALYZE, would write (and count against) the superuser's sessions: calls
-- from a security-restricted operation are refused, nothing is written.
CREATE SCHEMA h_trap AUTHORIZATION h_alice;
SET ROLE h_alice;
CREATE TABLE h_trap.t (x int);
CREATE FUNCTION h_trap.f(int) RETURNS int LANGUAGE sql IMMUTABLE
	AS $$ SELECT orchestrator.session_set('h_trap_key', to_jsonb($1))::int $$;
CREATE INDEX ON h_trap.t (h_trap.f(x));
INSERT INTO h_trap.t VALUES (1);
RESET ROLE;
SELECT h_try('ANALYZE h_trap.t') AS analyze_by_superuser;
SELECT owner::text, key FROM orchestrator.session_store WHERE key = 'h_trap_key' ORDER BY 1;
DROP SCHEMA h_trap CASCADE;
-- later tests count the sessions
DELETE FROM orchestrator.session_store WHERE key LIKE 'h\_k_' OR key = 'h_trap_key';

-- 4. Flow control.  A rate_limit key names a bucket of the workflow's owner:
-- h_bob draining its own "h_key" (burst 1, a token an hour) leaves h_alice's
-- bucket of the same name full (held).
SET ROLE h_bob;
SELECT orchestrator.define_workflow('h_bob_rl', '{"steps": [{"name": "s", "kind": "external", "queue": "h_rl",
	"rate_limit": {"key": "h_key", "per_second": 0.0003, "burst": 1}}]}') AS bob_defines;
SELECT count(orchestrator.start_workflow('h_bob_rl')) AS bob_starts FROM generate_series(1, 3);
SELECT status, count(*) FROM orchestrator.run_steps WHERE workflow = 'h_bob_rl' GROUP BY status ORDER BY status;
RESET ROLE;
SET ROLE h_alice;
SELECT orchestrator.define_workflow('h_alice_rl', '{"steps": [{"name": "s", "kind": "external", "queue": "h_rl",
	"rate_limit": {"key": "h_key", "per_second": 0.0003, "burst": 1}}]}') AS alice_defines;
SELECT orchestrator.start_workflow('h_alice_rl') AS alice_rl_run \gset
SELECT status FROM orchestrator.run_steps WHERE run_id = :'alice_rl_run';
RESET ROLE;
SELECT owner, key, tokens < 0 AS promised FROM orchestrator.rate_buckets WHERE key = 'h_key' ORDER BY owner::text;

-- A tenant is a label any starter may give (docs/security.md): the slots of
-- a tenant limit are the tenant's, whoever owns the runs.  Known limit
-- (decision 81): h_bob's own runs labelled "h_acme" hold the slot an
-- administrator meant for h_alice's, whose run waits queued.
SELECT orchestrator.set_tenant_limits('h_acme', 1);
SET ROLE h_bob;
SELECT orchestrator.define_workflow('h_bob_t', '{"steps": [{"name": "s", "kind": "external", "queue": "h_t"}]}') AS bob_defines;
SELECT orchestrator.start_workflow('h_bob_t', '{}', '{"tenant": "h_acme"}') AS bob_t_run \gset
SELECT status FROM orchestrator.runs WHERE id = :'bob_t_run';
RESET ROLE;
SET ROLE h_alice;
SELECT orchestrator.define_workflow('h_alice_t', '{"steps": [{"name": "s", "kind": "external", "queue": "h_t"}]}') AS alice_defines;
SELECT orchestrator.start_workflow('h_alice_t', '{}', '{"tenant": "h_acme"}') AS alice_t_run \gset
SELECT status FROM orchestrator.runs WHERE id = :'alice_t_run';
RESET ROLE;
SELECT count(orchestrator.cancel_workflow(id)) AS cancelled FROM orchestrator.runs WHERE name IN ('h_bob_t', 'h_alice_t', 'h_bob_rl', 'h_alice_rl');
SELECT orchestrator.set_tenant_limits('h_acme', NULL);

-- Run events on private channels (decision 83).  With
-- orchestrator.notify_channels 'public', the default, there is no private
-- channel to tell; the implementation is nobody's to call directly.
-- (test/client/test_events_channel.py shows what each role hears with
-- 'private' and 'both', a setting of the server.)
SET ROLE h_alice;
SELECT h_try('SELECT orchestrator.events_channel()') AS public_only;
SELECT h_try('SELECT orchestrator._api_events_channel()') AS implementation;
RESET ROLE;

-- Who may start and work a workflow, checked in C (src/rights.c; the same
-- rule as _may()): its owner, a role granted the privilege or a member of
-- one, an administrator.  A revocation counts at once; "work" is not
-- "start"; the function itself is nobody's to call.
CREATE ROLE h_workers NOLOGIN;
CREATE ROLE h_worker LOGIN IN ROLE orchestrator_user, h_workers;
SET ROLE h_alice;
SELECT orchestrator.define_workflow('h_rights', '{"steps": [{"name": "s", "kind": "external", "queue": "h_rights"}]}') AS rights_defined;
SELECT orchestrator.grant_workflow('h_rights', 'h_workers', 'work') AS granted;
SELECT orchestrator.start_workflow('h_rights') AS rights_run \gset
RESET ROLE;
SET ROLE h_worker;
SELECT h_try($$SELECT orchestrator.start_workflow('h_rights')$$) AS work_is_not_start;
SELECT run_id = :'rights_run' AS claimed, lease_token AS rights_token FROM orchestrator.claim_steps('h_rights', 'w', 1) \gset
SELECT :'claimed' AS member_claims, orchestrator.heartbeat_step(:'rights_run', 's', :'rights_token') AS member_heartbeats;
RESET ROLE;
SET ROLE h_alice;
SELECT orchestrator.revoke_workflow('h_rights', 'h_workers', 'work') AS revoked;
RESET ROLE;
SET ROLE h_worker;
SELECT h_try(format('SELECT orchestrator.complete_step(%L, %L, %L, %L)', :'rights_run', 's', :'rights_token', '{}')) AS completes_after_revoke;
RESET ROLE;
-- and its claims pass over the workflow's steps, which an admin's take
SET ROLE h_alice;
SELECT orchestrator.start_workflow('h_rights') AS rights_run2 \gset
RESET ROLE;
SET ROLE h_worker;
SELECT count(*) AS claims_after_revoke FROM orchestrator.claim_steps('h_rights', 'w', 5);
RESET ROLE;
SET ROLE h_admin;
SELECT run_id = :'rights_run2' AS admin_claims FROM orchestrator.claim_steps('h_rights', 'w', 5);
RESET ROLE;
SET ROLE h_admin;
SELECT orchestrator.complete_step(:'rights_run', 's', :'rights_token', '{"by": "admin"}') AS admin_completes;
RESET ROLE;
SELECT status, result FROM orchestrator.runs WHERE id = :'rights_run';
SET ROLE h_alice;
SELECT h_try($$SELECT orchestrator._may('h_rights', 'work')$$) AS may_not_callable;
RESET ROLE;
