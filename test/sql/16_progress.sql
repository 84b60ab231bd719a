\set SHOW_CONTEXT never
-- heartbeat_step(run_id, step, lease_token, lease DEFAULT NULL, progress
-- DEFAULT NULL): a new lease length, and progress kept on the step and
-- appended as event step.progress.

SET ROLE alice;
SELECT orchestrator.define_workflow('progressing', '{"steps": [{"name": "crunch", "kind": "external", "queue": "q_progress"}]}') AS v;
SELECT orchestrator.start_workflow('progressing') AS prun \gset
SELECT run_id AS prun, step, lease_token AS ptoken FROM orchestrator.claim_steps('q_progress', 'w1', 1, '1 minute') \gset
RESET ROLE;
SELECT lease, available_at - now() BETWEEN lease - interval '5 seconds' AND lease AS lease_ahead FROM orchestrator.work_queue WHERE run_id = :'prun';

-- The 0.3 call: extends by the lease's length, nothing else.
SET ROLE alice;
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', :'ptoken') AS plain;
RESET ROLE;
SELECT lease, available_at - now() BETWEEN lease - interval '5 seconds' AND lease AS lease_ahead FROM orchestrator.work_queue WHERE run_id = :'prun';
-- A new lease length: from now on, also for later heartbeats.
SET ROLE alice;
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', :'ptoken', '10 minutes') AS longer;
RESET ROLE;
SELECT lease, available_at - now() BETWEEN lease - interval '5 seconds' AND lease AS lease_ahead FROM orchestrator.work_queue WHERE run_id = :'prun';
-- Progress: kept on the step (the latest), each report an event.
SET ROLE alice;
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', :'ptoken', progress => '{"done": 10, "of": 100}') AS p1;
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', :'ptoken', NULL, '{"done": 60, "of": 100}') AS p2;
SELECT step, status, progress FROM orchestrator.run_steps WHERE run_id = :'prun';
SELECT type, step, data FROM orchestrator.events(:'prun') WHERE type = 'step.progress' ORDER BY seq;
RESET ROLE;
SELECT lease FROM orchestrator.work_queue WHERE run_id = :'prun';

-- Bad input: a specific SQLSTATE, nothing written.
SET ROLE alice;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L)', :'prun', 'crunch', :'ptoken', '0 seconds')) AS zero_lease;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L)', :'prun', 'crunch', :'ptoken', '2 days')) AS long_lease;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L)', :'prun', 'crunch', :'ptoken', '-1 minute')) AS negative_lease;
SELECT try(format('SELECT orchestrator.heartbeat_step(NULL, %L, %L, NULL, %L)', 'crunch', :'ptoken', '{"x": 1}')) AS null_run;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, NULL, %L, NULL, %L)', :'prun', :'ptoken', '{"x": 1}')) AS null_step;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, NULL, NULL, %L)', :'prun', 'crunch', '{"x": 1}')) AS null_token;
-- A stale token: false, and no progress recorded.
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', gen_random_uuid(), NULL, '{"stale": true}') AS stale;
SELECT progress FROM orchestrator.run_steps WHERE run_id = :'prun';
SELECT count(*) AS progress_events FROM orchestrator.events(:'prun') WHERE type = 'step.progress';
RESET ROLE;
SELECT lease FROM orchestrator.work_queue WHERE run_id = :'prun';

-- Hostile roles: bob, without "work", cannot report progress even with the
-- token; mallory cannot call it at all.
SET ROLE bob;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, %L, %L)', :'prun', 'crunch', :'ptoken', '1 day', '{"hacked": true}')) AS bob_progress;
RESET ROLE;
SET ROLE mallory;
SELECT try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, NULL, %L)', :'prun', 'crunch', :'ptoken', '{"hacked": true}')) AS mallory_progress;
RESET ROLE;
SELECT progress, (SELECT lease FROM orchestrator.work_queue WHERE run_id = :'prun') AS lease
FROM orchestrator.run_steps WHERE run_id = :'prun';

-- Completed, the step keeps its last progress; heartbeats are stale.
SET ROLE alice;
SELECT orchestrator.complete_step(:'prun', 'crunch', :'ptoken', '{"answer": 42}') AS completed;
SELECT orchestrator.heartbeat_step(:'prun', 'crunch', :'ptoken', NULL, '{"late": true}') AS after_completion;
SELECT status, progress, result FROM orchestrator.run_steps WHERE run_id = :'prun';
SELECT type FROM orchestrator.events(:'prun') ORDER BY seq;
RESET ROLE;
