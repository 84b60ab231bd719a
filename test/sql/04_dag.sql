\set SHOW_CONTEXT never
-- A 4-step DAG driven only over SQL: a parallel branch, a skipped branch,
-- templates, a retry, an idempotent start; then cancellation and failure.
SELECT orchestrator.define_workflow('order', $$
{"steps": [
  {"name": "fetch", "kind": "external", "queue": "q_order", "input": {"q": {"$path": "$.input.query"}},
   "retry": {"max_attempts": 2, "backoff": "0 seconds", "jitter": 0}},
  {"name": "enrich", "kind": "external", "queue": "q_order", "depends_on": ["fetch"],
   "input": {"doc": {"$path": "$.steps.fetch.result.doc"}, "run": {"$path": "$.run.name"}}},
  {"name": "audit", "kind": "external", "queue": "q_order", "depends_on": ["fetch"],
   "when": "$.steps.fetch.result.flagged == true"},
  {"name": "store", "kind": "external", "queue": "q_order", "depends_on": ["enrich", "audit"],
   "input": {"e": {"$path": "$.steps.enrich.result"}, "audit": {"$path": "$.steps.audit.status"},
             "missing": {"$path": "$.steps.nothing.result"}, "literal": [1, "two", {"three": 3}]}}
 ],
 "result": {"stored": {"$path": "$.steps.store.result.id"}, "query": {"$path": "$.input.query"}}}
$$);

SELECT orchestrator.start_workflow('order', '{"query": "lamps"}', '{"idempotency_key": "order-1", "tenant": "acme", "priority": 5}') AS run \gset
SELECT orchestrator.start_workflow('order', '{"query": "other"}', '{"idempotency_key": "order-1"}') = :'run' AS idempotent_start;
SELECT status, tenant, priority, input FROM orchestrator.runs WHERE id = :'run';
SELECT step, status, deps_open FROM orchestrator.workflow_steps WHERE run_id = :'run' ORDER BY position;

-- Only fetch is ready.  Claim it, fail it once (retryable), claim again.
SELECT step, attempt, input, workflow, lease_token AS token FROM orchestrator.claim_steps('q_order', 'w1', 10) \gset
SELECT :'step' AS step, :'attempt' AS attempt, :'input' AS input, :'workflow' AS workflow;
SELECT orchestrator.fail_step(:'run', 'fetch', :'token', '{"message": "upstream busy"}');
SELECT orchestrator.fail_step(:'run', 'fetch', :'token', '{"message": "again"}') AS stale_token_refused;
SELECT step, attempt, lease_token AS token FROM orchestrator.claim_steps('q_order', 'w1', 10) \gset
SELECT :'step' AS step, :'attempt' AS attempt;
SELECT orchestrator.heartbeat_step(:'run', 'fetch', :'token') AS heartbeat;
SELECT orchestrator.complete_step(:'run', 'fetch', gen_random_uuid(), '{}') AS wrong_token_refused;
SELECT orchestrator.complete_step(orchestrator.uuid_v7(), 'fetch', gen_random_uuid(), '{}') AS unknown_run_refused;
SELECT orchestrator.complete_step(:'run', 'fetch', :'token', '{"doc": "D-1", "flagged": false, "cost": 0.00125}');
SELECT orchestrator.complete_step(:'run', 'fetch', :'token', '{"doc": "again"}') AS second_completion_refused;

-- fetch done: audit is skipped (condition false), enrich is ready.
SELECT step, status FROM orchestrator.workflow_steps WHERE run_id = :'run' ORDER BY position;
SELECT step, input, lease_token AS token FROM orchestrator.claim_steps('q_order', 'w2', 10) \gset
SELECT :'step' AS step, :'input' AS input;
SELECT orchestrator.complete_step(:'run', 'enrich', :'token', '{"score": 7, "cost": 0.01}');
SELECT step, input, lease_token AS token FROM orchestrator.claim_steps('q_order', 'w2', 10) \gset
SELECT :'step' AS step, :'input' AS input;
SELECT orchestrator.complete_step(:'run', 'store', :'token', '{"id": 42}');

SELECT status, result, error, cost, started_at >= created_at AND finished_at >= started_at AS timed
FROM orchestrator.runs WHERE id = :'run';
SELECT orchestrator.workflow_result(:'run');
SELECT jsonb_pretty((orchestrator.get_workflow(:'run') -> 'steps' -> 'fetch') - 'started_at' - 'finished_at');
SELECT seq, type, step, data - 'retry_at' AS data FROM orchestrator.events(:'run');
SELECT count(*) AS nothing_left_queued FROM orchestrator.work_queue WHERE run_id = :'run';

-- Cancellation: a claimed step's lease stops being valid.
SELECT orchestrator.start_workflow('order', '{"query": "chairs"}') AS run2 \gset
SELECT lease_token AS token2 FROM orchestrator.claim_steps('q_order', 'w1') \gset
SELECT orchestrator.cancel_workflow(:'run2', 'customer changed their mind');
SELECT orchestrator.cancel_workflow(:'run2') AS second_cancel;
SELECT orchestrator.heartbeat_step(:'run2', 'fetch', :'token2') AS heartbeat_after_cancel;
SELECT orchestrator.complete_step(:'run2', 'fetch', :'token2', '{}') AS complete_after_cancel;
SELECT status, error, orchestrator.workflow_result(id) AS result FROM orchestrator.runs WHERE id = :'run2';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'run2' ORDER BY position;
SELECT type, step, data FROM orchestrator.events(:'run2', 2);

-- Out of attempts: the step is dead and the run fails.
SELECT orchestrator.start_workflow('order', '{"query": "tables"}') AS run3 \gset
SELECT lease_token AS token3 FROM orchestrator.claim_steps('q_order', 'w1') \gset
SELECT orchestrator.fail_step(:'run3', 'fetch', :'token3', '{"message": "boom 1"}');
SELECT lease_token AS token3 FROM orchestrator.claim_steps('q_order', 'w1') \gset
SELECT orchestrator.fail_step(:'run3', 'fetch', :'token3', '{"message": "boom 2"}');
SELECT status, error FROM orchestrator.runs WHERE id = :'run3';
SELECT step, status, attempt, error FROM orchestrator.run_steps WHERE run_id = :'run3' ORDER BY position;

-- A failure that is not retryable fails the step at once.
SELECT orchestrator.start_workflow('order', '{"query": "rugs"}') AS run4 \gset
SELECT lease_token AS token4 FROM orchestrator.claim_steps('q_order', 'w1') \gset
SELECT orchestrator.fail_step(:'run4', 'fetch', :'token4', '{"message": "bad request"}', false);
SELECT r.status, s.status AS fetch_status, s.attempt FROM orchestrator.runs r
JOIN orchestrator.run_steps s ON s.run_id = r.id AND s.step = 'fetch' WHERE r.id = :'run4';
SELECT count(*) AS queue_empty FROM orchestrator.claim_steps('q_order', 'w1', 10);

-- Claims take the highest priority first, then the oldest.
SELECT orchestrator.define_workflow('prio', '{"steps": [{"name": "s", "kind": "external", "queue": "q_prio"}]}');
SELECT orchestrator.start_workflow('prio', '{"n": "low"}', '{"priority": -5}') IS NOT NULL AS started;
SELECT orchestrator.start_workflow('prio', '{"n": "normal-1"}') IS NOT NULL AS started;
SELECT orchestrator.start_workflow('prio', '{"n": "high"}', '{"priority": 10}') IS NOT NULL AS started;
SELECT orchestrator.start_workflow('prio', '{"n": "normal-2"}') IS NOT NULL AS started;
SELECT c.n AS claim_order, r.input ->> 'n' AS run
FROM orchestrator.claim_steps('q_prio', 'w', 4) WITH ORDINALITY c(run_id, step, attempt, lease_token, input, workflow, deadline, traceparent, n)
JOIN orchestrator.runs r ON r.id = c.run_id
ORDER BY c.n;
