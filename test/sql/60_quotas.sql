\set SHOW_CONTEXT never
-- Hard limits per owner role: set by admins only; a hostile orchestrator_user
-- tries to exceed each, gets 54000 with the limit and its value, and nothing
-- is written.
CREATE ROLE q_owner LOGIN IN ROLE orchestrator_user;
CREATE ROLE q_other LOGIN IN ROLE orchestrator_user;
CREATE ROLE q_admin LOGIN IN ROLE orchestrator_admin;

SET ROLE q_owner;
SELECT orchestrator.define_workflow('q_ext', '{"steps": [{"name": "work", "kind": "external", "queue": "q_quota"},
  {"name": "wait_go", "kind": "wait", "signal": "go", "depends_on": ["work"]}]}');
SELECT orchestrator.define_workflow('q_sql', '{"steps": [{"name": "big", "kind": "sql",
  "sql": "SELECT repeat(''x'', 5000) AS blob", "retry": {"max_attempts": 1}}]}');
-- Defaults apply to every role: nothing set yet.
SELECT * FROM orchestrator.get_owner_limits();

-- 1. Only admins set limits; a user cannot raise its own, nor write the table.
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', '{"max_active_runs": 1000000}')$$) AS raise_own;
SELECT try($$INSERT INTO orchestrator.owner_limits (owner, updated_by) VALUES ('q_owner', 'q_owner')$$) AS write_table;
SELECT try($$SELECT * FROM orchestrator.get_owner_limits('q_other')$$) AS read_others;
RESET ROLE;
SET ROLE q_other;
SELECT try($$SELECT * FROM orchestrator.owner_limits$$) AS read_table;
RESET ROLE;

-- Bad limits, refused (nothing written).
SET ROLE q_admin;
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', '{"max_runs": 1}')$$) AS unknown_limit;
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', '{"max_active_runs": -1}')$$) AS negative;
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', '{"max_active_runs": 1.5}')$$) AS fraction;
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', '[1]')$$) AS not_object;
SELECT try($$SELECT orchestrator.set_owner_limits('q_owner', NULL)$$) AS null_limits;
SELECT count(*) AS rows_after_bad_calls FROM orchestrator.owner_limits;

SELECT orchestrator.set_owner_limits('q_owner', '{"max_input_bytes": 1000, "max_result_bytes": 1000,
  "max_signal_bytes": 500, "max_active_runs": 2}');
SELECT owner, max_input_bytes, max_active_runs, max_events_per_run, updated_by FROM orchestrator.owner_limits;
RESET ROLE;

-- 2. Input size.
SET ROLE q_owner;
SELECT * FROM orchestrator.get_owner_limits() WHERE source = 'role';
\set VERBOSITY default
SELECT orchestrator.start_workflow('q_ext', jsonb_build_object('blob', repeat('x', 2000)),
  '{"idempotency_key": "k1"}');
\set VERBOSITY terse
SELECT count(*) AS runs_written FROM orchestrator.runs WHERE name = 'q_ext';

-- 3. Active runs: two run, the third is refused.
SELECT orchestrator.start_workflow('q_ext', '{"n": 1}') AS run1 \gset
SELECT orchestrator.start_workflow('q_ext', '{"n": 2}') AS run2 \gset
\set VERBOSITY default
SELECT orchestrator.start_workflow('q_ext', '{"n": 3}');
\set VERBOSITY terse
SELECT count(*) AS runs_written FROM orchestrator.runs WHERE name = 'q_ext';
-- The idempotency key of the refused start was not kept either: once a run
-- finishes, it starts a new run.
SELECT orchestrator.cancel_workflow(:'run2');
SELECT orchestrator.start_workflow('q_ext', '{"n": 4}', '{"idempotency_key": "k1"}') IS NOT NULL AS started_after_cancel;
SELECT count(*) AS active FROM orchestrator.runs WHERE name = 'q_ext' AND status IN ('pending', 'running');
-- another role's workflow counts for its own owner only
RESET ROLE;
SET ROLE q_other;
SELECT orchestrator.define_workflow('q_other_wf', '{"steps": [{"name": "work", "kind": "external", "queue": "q_quota_other"}]}');
SELECT count(orchestrator.start_workflow('q_other_wf')) AS other_runs FROM generate_series(1, 3);
RESET ROLE;

-- 4. Signal payload size: refused, nothing written (no signal, no event).
SET ROLE q_owner;
SELECT count(*) AS events_before FROM orchestrator.events(:'run1') \gset
\set VERBOSITY default
SELECT orchestrator.signal_workflow(:'run1', 'go', jsonb_build_object('blob', repeat('x', 600)));
\set VERBOSITY terse
SELECT count(*) - :events_before AS events_written FROM orchestrator.events(:'run1');
SELECT orchestrator.signal_workflow(:'run1', 'noise', '{"small": true}') AS small_signal;

-- 5. Step result size: complete_step and complete_steps refuse, nothing
-- written (the lease still holds); a smaller result is taken.
SELECT lease_token AS tok, run_id AS crun FROM orchestrator.claim_steps('q_quota', 'w1', 1) \gset
\set VERBOSITY default
SELECT orchestrator.complete_step(:'crun', 'work', :'tok', jsonb_build_object('blob', repeat('x', 2000)));
\set VERBOSITY terse
SELECT try(format('SELECT * FROM orchestrator.complete_steps(ARRAY[%L]::uuid[], ARRAY[''work''], ARRAY[%L]::uuid[], ARRAY[%L]::jsonb[])',
  :'crun', :'tok', jsonb_build_object('blob', repeat('x', 2000)))) AS complete_steps_big;
-- Nor does what a worker reports on the way: heartbeat_step's progress and
-- fail_step's error are bounded as a result is (0.3 took any size, kept on
-- the step and in the history).
\set VERBOSITY default
SELECT orchestrator.heartbeat_step(:'crun', 'work', :'tok', NULL, jsonb_build_object('blob', repeat('x', 2000)));
SELECT orchestrator.fail_step(:'crun', 'work', :'tok', jsonb_build_object('blob', repeat('x', 2000)));
\set VERBOSITY terse
SELECT status, result, progress, error FROM orchestrator.run_steps WHERE run_id = :'crun' AND step = 'work';
SELECT count(*) AS progress_events FROM orchestrator.events(:'crun') WHERE type IN ('step.progress', 'step.retrying');
SELECT orchestrator.heartbeat_step(:'crun', 'work', :'tok', NULL, '{"half": true}') AS small_progress;
SELECT orchestrator.complete_step(:'crun', 'work', :'tok', '{"ok": true}') AS completed_small;
-- A sql step's result over the limit fails its attempt with 54000.
SELECT orchestrator.cancel_workflow(:'run1');
SELECT orchestrator.start_workflow('q_sql') AS srun \gset
SELECT wait_for_run(:'srun') AS sql_run;
SELECT status, error ->> 'sqlstate' AS sqlstate, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'srun';
RESET ROLE;

-- 6. Events per run: signals to a run at its limit are refused.
SET ROLE q_admin;
SELECT orchestrator.set_owner_limits('q_owner', '{"max_active_runs": null}') ->> 'max_active_runs' AS active_runs_back_to_default;
RESET ROLE;
SET ROLE q_owner;
SELECT orchestrator.start_workflow('q_ext') AS erun \gset
SELECT count(*) AS events_now FROM orchestrator.events(:'erun') \gset
RESET ROLE;
SET ROLE q_admin;
SELECT orchestrator.set_owner_limits('q_owner', jsonb_build_object('max_events_per_run', :events_now + 1)) ->> 'max_events_per_run' AS events_limit;
RESET ROLE;
SET ROLE q_owner;
SELECT orchestrator.signal_workflow(:'erun', 'noise') AS first_signal;
\set VERBOSITY default
SELECT orchestrator.signal_workflow(:'erun', 'noise');
\set VERBOSITY terse
SELECT count(*) - :events_now AS events_added FROM orchestrator.events(:'erun');
-- A worker's progress is an event each time: refused at the limit too (0.3
-- appended any number); a heartbeat without progress still holds the lease.
SELECT lease_token AS etok FROM orchestrator.claim_steps('q_quota', 'w2', 10) WHERE run_id = :'erun' \gset
\set VERBOSITY default
SELECT orchestrator.heartbeat_step(:'erun', 'work', :'etok', NULL, '{"done": 1}');
\set VERBOSITY terse
SELECT orchestrator.heartbeat_step(:'erun', 'work', :'etok') AS heartbeat_without_progress;
SELECT count(*) AS progress_events FROM orchestrator.events(:'erun') WHERE type = 'step.progress';
RESET ROLE;

-- 7. Pending webhook deliveries of the owner's runs: starts and signals are
-- refused at the limit.  (Deliveries written here directly, due tomorrow.)
INSERT INTO orchestrator.webhook_outbox (id, webhook_id, run_id, seq, type, payload, available_at)
SELECT orchestrator.uuid_v7(), orchestrator.uuid_v7(), :'erun', 1, 'workflow.created', '{}', now() + interval '1 day'
FROM generate_series(1, 3);
SET ROLE q_admin;
SELECT orchestrator.set_owner_limits('q_owner', '{"max_pending_webhooks": 3, "max_events_per_run": null}') ->> 'max_pending_webhooks' AS webhooks_limit;
RESET ROLE;
SET ROLE q_owner;
\set VERBOSITY default
SELECT orchestrator.start_workflow('q_ext');
\set VERBOSITY terse
SELECT try(format('SELECT orchestrator.signal_workflow(%L, ''noise'')', :'erun')) AS signal_with_webhooks_pending;
RESET ROLE;
-- other roles are not held back
SET ROLE q_other;
SELECT orchestrator.start_workflow('q_other_wf') IS NOT NULL AS other_starts;
RESET ROLE;
DELETE FROM orchestrator.webhook_outbox WHERE run_id = :'erun';
SET ROLE q_owner;
SELECT orchestrator.start_workflow('q_ext') IS NOT NULL AS starts_once_delivered;
RESET ROLE;

-- 8. Defaults from the settings (superuser), for roles without a row; 0 is
-- no limit; a row of nulls only is removed.
SET orchestrator.max_input_size = '1kB';
SET ROLE q_other;
SELECT try($$SELECT orchestrator.start_workflow('q_other_wf', jsonb_build_object('blob', repeat('x', 2000)))$$) AS default_limit;
SELECT * FROM orchestrator.get_owner_limits() WHERE name = 'max_input_bytes';
RESET ROLE;
SET ROLE q_admin;
SELECT orchestrator.set_owner_limits('q_other', '{"max_input_bytes": 0}') ->> 'max_input_bytes' AS no_limit;
RESET ROLE;
SET ROLE q_other;
SELECT orchestrator.start_workflow('q_other_wf', jsonb_build_object('blob', repeat('x', 2000))) IS NOT NULL AS started_without_limit;
RESET ROLE;
RESET orchestrator.max_input_size;
SET ROLE q_admin;
SELECT orchestrator.set_owner_limits('q_other', '{"max_input_bytes": null}') ->> 'max_input_bytes' AS back_to_default;
SELECT owner::text FROM orchestrator.owner_limits ORDER BY 1;
RESET ROLE;

-- Clean up: later tests count runs and roles.
SELECT count(orchestrator.cancel_workflow(r.id)) >= 0 AS cancelled
FROM orchestrator.workflow_runs r WHERE r.owner IN ('q_owner'::regrole, 'q_other'::regrole) AND r.finished_at IS NULL;
