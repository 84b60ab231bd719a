\set SHOW_CONTEXT never
-- Saga: when a run fails, the succeeded steps that declare "compensate" are
-- undone, one at a time, the last completed first; then the run fails.
CREATE TABLE saga_log (at serial, what text);
SELECT orchestrator.define_workflow('saga', $$
{"steps": [
  {"name": "reserve", "kind": "external", "queue": "q_saga",
   "compensate": {"kind": "sql", "sql": "INSERT INTO saga_log(what) VALUES ('release ' || ($1 #>> '{}')) RETURNING what",
                  "args": [{"$path": "$.steps.reserve.result.item"}]}},
  {"name": "charge", "kind": "external", "queue": "q_saga", "depends_on": ["reserve"],
   "compensate": {"kind": "external", "queue": "q_saga_undo", "input": {"refund": {"$path": "$.steps.charge.result.amount"}}}},
  {"name": "note", "kind": "external", "queue": "q_saga", "depends_on": ["reserve"]},
  {"name": "ship", "kind": "external", "queue": "q_saga", "depends_on": ["charge", "note"],
   "retry": {"max_attempts": 1}}
 ]}
$$);
SELECT step, kind, compensates FROM orchestrator.definition_steps WHERE name = 'saga' ORDER BY position;

SELECT orchestrator.start_workflow('saga') AS run \gset
SELECT lease_token AS t FROM orchestrator.claim_steps('q_saga', 'w') \gset
SELECT orchestrator.complete_step(:'run', 'reserve', :'t', '{"item": "lamp"}');
SELECT step, lease_token AS t FROM orchestrator.claim_steps('q_saga', 'w') ORDER BY step LIMIT 1 \gset
SELECT :'step' AS step, orchestrator.complete_step(:'run', :'step', :'t', '{"amount": 25}');
SELECT step, lease_token AS t FROM orchestrator.claim_steps('q_saga', 'w') \gset
SELECT :'step' AS step, orchestrator.complete_step(:'run', :'step', :'t', '{}');
SELECT step, lease_token AS t FROM orchestrator.claim_steps('q_saga', 'w') \gset
SELECT :'step' AS step, orchestrator.fail_step(:'run', :'step', :'t', '{"message": "no courier"}', false);

-- The run is compensating: charge completed last, so its refund comes first.
SELECT status, error FROM orchestrator.runs WHERE id = :'run';
SELECT step, input, lease_token AS t FROM orchestrator.claim_steps('q_saga_undo', 'refunder') \gset
SELECT :'step' AS step, :'input' AS input;
SELECT orchestrator.complete_step(:'run', :'step', :'t', '{"refunded": true}');
SELECT wait_for_run(:'run');
SELECT what FROM saga_log ORDER BY at;
SELECT status, error FROM orchestrator.runs WHERE id = :'run';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'run' ORDER BY position;
SELECT seq, type, step FROM orchestrator.events(:'run') ORDER BY seq;

-- A compensation that fails for good: the run fails with both errors.
SELECT orchestrator.define_workflow('saga_broken', $$
{"steps": [
  {"name": "a", "kind": "external", "queue": "q_saga2",
   "compensate": {"kind": "sql", "sql": "SELECT 1 / 0"}},
  {"name": "b", "kind": "external", "queue": "q_saga2", "depends_on": ["a"]}
 ]}
$$);
SELECT orchestrator.start_workflow('saga_broken') AS run2 \gset
SELECT lease_token AS t FROM orchestrator.claim_steps('q_saga2', 'w') \gset
SELECT orchestrator.complete_step(:'run2', 'a', :'t', '{}');
SELECT lease_token AS t FROM orchestrator.claim_steps('q_saga2', 'w') \gset
SELECT orchestrator.fail_step(:'run2', 'b', :'t', '{"message": "broken"}', false);
SELECT wait_for_run(:'run2', 60);
SELECT status, error -> 'error' AS error, error -> 'compensation' ->> 'status' AS compensation_status,
       error -> 'compensation' -> 'error' ->> 'sqlstate' AS compensation_sqlstate
FROM orchestrator.runs WHERE id = :'run2';
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'run2' ORDER BY position;

-- A run with no succeeded step to undo just fails.
SELECT orchestrator.start_workflow('saga_broken') AS run3 \gset
SELECT lease_token AS t FROM orchestrator.claim_steps('q_saga2', 'w') \gset
SELECT orchestrator.fail_step(:'run3', 'a', :'t', '{"message": "early"}', false);
SELECT status FROM orchestrator.runs WHERE id = :'run3';
