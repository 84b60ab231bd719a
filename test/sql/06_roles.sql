\set SHOW_CONTEXT never
-- The API works for a non-superuser member of orchestrator_user, who sees
-- only its own runs; orchestrator_admin sees all.
CREATE ROLE alice LOGIN IN ROLE orchestrator_user;
CREATE ROLE bob LOGIN IN ROLE orchestrator_user;
CREATE ROLE carol LOGIN IN ROLE orchestrator_admin;
CREATE ROLE mallory LOGIN;

SET ROLE alice;
SELECT orchestrator.define_workflow('alice_wf', '{"steps": [{"name": "work", "kind": "external", "queue": "q_roles"},
  {"name": "wait_go", "kind": "wait", "signal": "go", "depends_on": ["work"]}]}');
SELECT orchestrator.start_workflow('alice_wf', '{"n": 1}') AS arun \gset
SELECT owner, status FROM orchestrator.runs WHERE id = :'arun';
SELECT orchestrator.get_workflow(:'arun') ->> 'owner' AS owner_in_document;
-- Tables are not readable directly; the views and functions are the API.
SELECT count(*) FROM orchestrator.workflow_runs;
RESET ROLE;

SET ROLE bob;
SELECT count(*) AS bob_sees FROM orchestrator.runs WHERE id = :'arun';
SELECT try(format('SELECT orchestrator.get_workflow(%L)', :'arun')) AS get_others_run;
SELECT try(format('SELECT orchestrator.cancel_workflow(%L)', :'arun')) AS cancel_others_run;
SELECT try(format('SELECT orchestrator.signal_workflow(%L, %L)', :'arun', 'go')) AS signal_others_run;
-- bob may not work alice's external steps: his claim returns nothing.
SELECT count(*) AS bob_claims FROM orchestrator.claim_steps('q_roles', 'bob-worker');
RESET ROLE;
-- Until alice grants him "work" on her workflow.
SET ROLE alice;
SELECT orchestrator.grant_workflow('alice_wf', 'bob', 'work');
RESET ROLE;
SET ROLE bob;
SELECT lease_token AS btoken FROM orchestrator.claim_steps('q_roles', 'bob-worker') \gset
SELECT orchestrator.complete_step(:'arun', 'work', :'btoken', '{"done": true}') AS bob_completed;
RESET ROLE;

SET ROLE alice;
SELECT orchestrator.signal_workflow(:'arun', 'go', '{"by": "alice"}');
SELECT status, result FROM orchestrator.runs WHERE id = :'arun';
RESET ROLE;

SET ROLE carol;
SELECT count(*) AS admin_sees FROM orchestrator.runs WHERE id = :'arun';
SELECT type FROM orchestrator.events(:'arun') ORDER BY seq;
RESET ROLE;

SET ROLE mallory;
SELECT orchestrator.start_workflow('alice_wf');
SELECT * FROM orchestrator.runs;
SELECT orchestrator._run_sql_step(10, 'SELECT 1', NULL, 0);
RESET ROLE;

-- A workflow name belongs to the role that defined it first: another user
-- cannot slip a new version (and its sql steps) under it.
SET ROLE bob;
SELECT try($$SELECT orchestrator.define_workflow('alice_wf', '{"steps": [{"name": "x", "kind": "sql", "sql": "SELECT 1"}]}')$$) AS takeover;
RESET ROLE;
-- Not even an admin: a new version would run its sql steps with alice's
-- rights.
SET ROLE carol;
SELECT try($$SELECT orchestrator.define_workflow('alice_wf', '{"steps": [{"name": "x", "kind": "external", "queue": "q_roles"}]}')$$) AS admin_takeover;
RESET ROLE;
