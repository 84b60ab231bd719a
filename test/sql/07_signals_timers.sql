\set SHOW_CONTEXT never
-- wait steps complete on signals (sent before or after they start); sleep
-- steps and deadlines are driven by the background dispatchers.
SELECT orchestrator.define_workflow('approval', $$
{"steps": [
  {"name": "prepare", "kind": "external", "queue": "q_sig"},
  {"name": "approve", "kind": "wait", "signal": "approved", "depends_on": ["prepare"]},
  {"name": "pause", "kind": "sleep", "duration": "200 milliseconds", "depends_on": ["approve"]}
 ],
 "result": {"approved_by": {"$path": "$.steps.approve.result.by"}}}
$$);

-- Signal after the wait step started.
SELECT orchestrator.start_workflow('approval') AS r1 \gset
SELECT lease_token AS t1 FROM orchestrator.claim_steps('q_sig', 'w') \gset
SELECT orchestrator.complete_step(:'r1', 'prepare', :'t1', '{}');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r1' ORDER BY position;
SELECT orchestrator.signal_workflow(:'r1', 'approved', '{"by": "dana"}');
SELECT wait_for_run(:'r1');
SELECT result FROM orchestrator.runs WHERE id = :'r1';
SELECT type, step FROM orchestrator.events(:'r1') ORDER BY seq;
SELECT orchestrator.signal_workflow(:'r1', 'approved') AS signal_after_finish;

-- Signal before the wait step started: it is kept and consumed later.
SELECT orchestrator.start_workflow('approval') AS r2 \gset
SELECT orchestrator.signal_workflow(:'r2', 'approved', '{"by": "early"}');
SELECT lease_token AS t2 FROM orchestrator.claim_steps('q_sig', 'w') \gset
SELECT orchestrator.complete_step(:'r2', 'prepare', :'t2', '{}');
SELECT wait_for_run(:'r2');
SELECT result FROM orchestrator.runs WHERE id = :'r2';

-- A wait step that times out fails the run.
SELECT orchestrator.define_workflow('impatient', '{"steps": [{"name": "w", "kind": "wait", "signal": "never", "timeout": "300 milliseconds"}]}');
SELECT orchestrator.start_workflow('impatient') AS r3 \gset
SELECT wait_for_run(:'r3');
SELECT error FROM orchestrator.runs WHERE id = :'r3';

-- A run deadline fails the run and cancels its open steps.
SELECT orchestrator.define_workflow('slow', '{"steps": [{"name": "w", "kind": "external", "queue": "q_slow"}]}');
SELECT orchestrator.start_workflow('slow', '{}', '{"deadline": "300 milliseconds"}') AS r4 \gset
SELECT wait_for_run(:'r4');
SELECT error ->> 'message' AS error FROM orchestrator.runs WHERE id = :'r4';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r4';
SELECT count(*) AS nothing_to_claim FROM orchestrator.claim_steps('q_slow', 'w');
