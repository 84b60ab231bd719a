\set SHOW_CONTEXT never
-- Bad input anywhere: a specific SQLSTATE (never XX000) and nothing written.
\set QUIET on
\pset format unaligned
\pset tuples_only on
BEGIN;
SELECT plan(26);
SELECT orchestrator.define_workflow('e_wf', '{"steps": [{"name": "a", "kind": "external", "queue": "q_err"}]}') IS NOT NULL;
CREATE TEMP TABLE counts_before AS
	SELECT (SELECT count(*) FROM orchestrator.definitions) AS defs, (SELECT count(*) FROM orchestrator.workflow_runs) AS runs,
	       (SELECT count(*) FROM orchestrator.workflow_events) AS events, (SELECT count(*) FROM orchestrator.work_queue) AS queued;

SELECT throws_ok($$SELECT orchestrator.define_workflow('x', '{"steps": [{"name": "a", "kind": "nope"}]}')$$, '22023', 'invalid workflow definition "x"', 'unknown kind: 22023');
SELECT throws_ok($$SELECT orchestrator.define_workflow('x', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "depends_on": ["b"]}, {"name": "b", "kind": "sql", "sql": "SELECT 1", "depends_on": ["a"]}]}')$$, '22023', NULL, 'cycle: 22023');
SELECT throws_ok($$SELECT orchestrator.define_workflow('x', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "http://example.com/"}}]}')$$, '42501', NULL, 'http step to a host not allowed: 42501');
SELECT throws_ok($$SELECT orchestrator.start_workflow('no_such_workflow')$$, '42704', 'workflow "no_such_workflow" is not defined', 'unknown workflow: 42704');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"version": 99}')$$, '42704', NULL, 'unknown version: 42704');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"versoin": 1}')$$, '22023', 'unknown option "versoin"', 'unknown option: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '[]')$$, '22023', NULL, 'options not an object: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', NULL)$$, '22004', NULL, 'null input: 22004');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"deadline": "tomorrowish"}')$$, '22023', NULL, 'bad deadline: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"deadline": "2000-01-01T00:00:00Z"}')$$, '22023', NULL, 'past deadline: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"priority": 5000}')$$, '22023', NULL, 'priority out of range: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"priority": "high"}')$$, '22023', NULL, 'priority not a number: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"tenant": 7}')$$, '22023', NULL, 'tenant not a string: 22023');
SELECT throws_ok($$SELECT orchestrator.start_workflow('e_wf', '{}', '{"idempotency_key": ""}')$$, '22023', NULL, 'empty idempotency key: 22023');
SELECT throws_ok($$SELECT orchestrator.get_workflow('00000000-0000-7000-8000-000000000000')$$, '42704', NULL, 'unknown run: 42704');
SELECT throws_ok($$SELECT orchestrator.get_workflow(NULL)$$, '22004', NULL, 'null run id: 22004, as for cancel_workflow');
SELECT throws_ok($$SELECT orchestrator.cancel_workflow('00000000-0000-7000-8000-000000000000')$$, '42704', NULL, 'cancel unknown run: 42704');
SELECT throws_ok($$SELECT orchestrator.signal_workflow('00000000-0000-7000-8000-000000000000', 'go')$$, '42704', NULL, 'signal unknown run: 42704');
SELECT throws_ok($$SELECT orchestrator.signal_workflow(orchestrator.uuid_v7(), 'no spaces allowed')$$, '22023', NULL, 'bad signal name: 22023');
SELECT throws_ok($$SELECT * FROM orchestrator.events('00000000-0000-7000-8000-000000000000')$$, '42704', NULL, 'events of unknown run: 42704');
SELECT throws_ok($$SELECT * FROM orchestrator.claim_steps('bad queue', 'w')$$, '22023', NULL, 'bad queue name: 22023');
SELECT throws_ok($$SELECT * FROM orchestrator.claim_steps('q_err', NULL)$$, '22023', NULL, 'null worker: 22023');
SELECT throws_ok($$SELECT * FROM orchestrator.claim_steps('q_err', 'w', 0)$$, '22023', NULL, 'max_steps 0: 22023');
SELECT throws_ok($$SELECT * FROM orchestrator.claim_steps('q_err', 'w', 1, '0 seconds')$$, '22023', NULL, 'zero lease: 22023');
SELECT throws_ok($$SELECT orchestrator.complete_step(orchestrator.uuid_v7(), 'a', NULL, '{}')$$, '22004', NULL, 'null lease token: 22004');

SELECT results_eq(
	$$SELECT (SELECT count(*) FROM orchestrator.definitions), (SELECT count(*) FROM orchestrator.workflow_runs),
	         (SELECT count(*) FROM orchestrator.workflow_events), (SELECT count(*) FROM orchestrator.work_queue)$$,
	$$SELECT defs, runs, events, queued FROM counts_before$$,
	'bad input wrote nothing');
SELECT * FROM finish();
ROLLBACK;
