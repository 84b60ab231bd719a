\set SHOW_CONTEXT never
-- The state machine in C (src/engine.c): settings read when a step runs,
-- not when its definition was first read.

-- orchestrator.default_step_timeout applies to a step without "timeout"
-- as it is now: 0.3 kept the value it had when the dispatcher first read
-- the step's definition.
SELECT orchestrator.define_workflow('engine_default_timeout', $$
{"steps": [{"name": "nap", "kind": "sql", "sql": "SELECT pg_sleep($1::float8) IS NOT NULL AS slept", "args": [1.5],
            "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.start_workflow('engine_default_timeout') AS r1 \gset
SELECT wait_for_run(:'r1');

ALTER SYSTEM SET orchestrator.default_step_timeout = '300ms';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT orchestrator.start_workflow('engine_default_timeout') AS r2 \gset
SELECT wait_for_run(:'r2');
SELECT s.status, s.error ->> 'sqlstate' AS sqlstate, s.error ->> 'message' AS message
FROM orchestrator.run_steps s WHERE s.run_id = :'r2';

ALTER SYSTEM RESET orchestrator.default_step_timeout;
SELECT pg_reload_conf();
