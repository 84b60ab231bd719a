\set SHOW_CONTEXT never
-- "timeout" bounds an attempt of every kind of step, counted from its start
-- (a claim, for external steps); the outcomes are awaited, never timed.
CREATE OR REPLACE FUNCTION wait_for_step(run uuid, step_name text, want text, seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. seconds * 20 LOOP
		SELECT status INTO s FROM orchestrator.run_steps r WHERE r.run_id = run AND r.step = step_name;
		IF s = want THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timeout: ' || s;
END $$;
-- A worker that keeps its lease alive, in a transaction per heartbeat,
-- until a heartbeat is refused.
CREATE PROCEDURE beat_until_refused(run uuid, token uuid, INOUT accepted boolean DEFAULT false,
									INOUT refused boolean DEFAULT false)
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. 1200 LOOP
		IF NOT orchestrator.heartbeat_step(run, 'e', token, interval '1 minute') THEN
			refused := true;
			RETURN;
		END IF;
		accepted := true;
		COMMIT;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

-- Bad timeouts are refused when the workflow is defined, and nothing is written.
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": "soon"}]}')$$) AS not_an_interval;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": 30}]}')$$) AS a_number;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": "-1 second"}]}')$$) AS negative;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": "0 seconds"}]}')$$) AS zero;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": "2 hours"}]}')$$) AS over_max_step_timeout;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "s", "kind": "sleep", "duration": "1 minute", "timeout": "30 seconds"}]}')$$) AS sleep_longer_than_timeout;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "s", "kind": "sleep", "duration": "1 second", "timeout": "soon"}]}')$$) AS sleep_bad_timeout;
SELECT try($$SELECT orchestrator.define_workflow('t_bad', '{"steps": [{"name": "w", "kind": "wait", "signal": "go", "timeout": "400 days"}]}')$$) AS wait_too_long;
SELECT count(*) AS written FROM orchestrator.definitions WHERE name = 't_bad';
-- A sleep as long as its timeout is fine.
SELECT orchestrator.define_workflow('t_sleep_ok', '{"steps": [{"name": "s", "kind": "sleep", "duration": "200 milliseconds", "timeout": "200 milliseconds"}]}');

-- external: the attempt ends "timeout" after its claim however often the
-- worker heartbeats; the token is then refused like an expired lease's, and
-- the attempt fails as timed out (retried per the step's policy).
SELECT orchestrator.define_workflow('t_ext', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t", "timeout": "2 seconds",
  "retry": {"max_attempts": 2, "backoff": "0 seconds"}}]}');
SELECT orchestrator.start_workflow('t_ext') AS r1 \gset
-- The claim's deadline is the end of the attempt, not of the 1-minute lease.
SELECT lease_token AS t1, deadline < now() + interval '30 seconds' AS deadline_is_the_timeout
FROM orchestrator.claim_steps('q_t', 'w1', 1, '1 minute') \gset
\echo :deadline_is_the_timeout
CALL beat_until_refused(:'r1', :'t1');
-- The token is refused by every call, as an expired lease's is.
SELECT orchestrator.heartbeat_step(:'r1', 'e', :'t1') AS heartbeat,
	   orchestrator.complete_step(:'r1', 'e', :'t1', '{}') AS complete,
	   orchestrator.fail_step(:'r1', 'e', :'t1', '{"message": "late"}') AS fail;
SELECT wait_for_step(:'r1', 'e', 'ready');
SELECT type, data -> 'error' ->> 'message' AS message, data -> 'error' ->> 'timeout' AS timeout,
	   data -> 'error' ->> 'worker' AS worker, data ->> 'attempt' AS attempt
FROM orchestrator.events(:'r1') WHERE type LIKE 'step.%' ORDER BY seq;
-- The second attempt, not heartbeated, times out too: out of attempts, dead.
SELECT lease_token AS t2 FROM orchestrator.claim_steps('q_t', 'w2', 1, '1 minute') \gset
SELECT wait_for_run(:'r1');
SELECT step, status, attempt, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'r1';
SELECT orchestrator.complete_step(:'r1', 'e', :'t2', '{}') AS complete_after_dead;

-- A lease shorter than the timeout still expires by itself: "lease expired".
SELECT orchestrator.define_workflow('t_ext_lease', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t2", "timeout": "1 hour",
  "retry": {"max_attempts": 1}}]}');
SELECT orchestrator.start_workflow('t_ext_lease') AS r2 \gset
SELECT lease_token AS t3 FROM orchestrator.claim_steps('q_t2', 'w3', 1, '1 second') \gset
SELECT wait_for_run(:'r2');
SELECT step, status, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'r2';

-- Completed within its timeout: succeeds as ever.
SELECT orchestrator.define_workflow('t_ext_quick', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t3", "timeout": "1 minute"}]}');
SELECT orchestrator.start_workflow('t_ext_quick') AS r3 \gset
SELECT lease_token AS t4 FROM orchestrator.claim_steps('q_t3', 'w4', 1, '10 minutes') \gset
SELECT orchestrator.heartbeat_step(:'r3', 'e', :'t4') AS heartbeat;
SELECT orchestrator.complete_step(:'r3', 'e', :'t4', '{"done": true}') AS complete;
SELECT wait_for_run(:'r3');

-- Without "timeout" an external step has none: orchestrator.default_step_timeout
-- (for sql and http steps) does not apply; only its lease bounds an attempt.
SET orchestrator.default_step_timeout = '1ms';
SELECT orchestrator.define_workflow('t_ext_none', '{"steps": [{"name": "e", "kind": "external", "queue": "q_t4"}]}');
SELECT orchestrator.start_workflow('t_ext_none') AS r4 \gset
SELECT lease_token AS t5, deadline > now() + interval '9 minutes' AS deadline_is_the_lease
FROM orchestrator.claim_steps('q_t4', 'w5', 1, '10 minutes') \gset
\echo :deadline_is_the_lease
SELECT orchestrator.complete_step(:'r4', 'e', :'t5', '{}') AS complete;
RESET orchestrator.default_step_timeout;

-- sleep: a sleep that would end after its timeout fails as timed out when
-- the timeout comes (an "until" is known only when the step starts).
SELECT orchestrator.define_workflow('t_sleep', '{"steps": [{"name": "s", "kind": "sleep", "until": {"$path": "$.input.until"}, "timeout": "300 milliseconds"}]}');
SELECT orchestrator.start_workflow('t_sleep', jsonb_build_object('until', now() + interval '1 hour')) AS r5 \gset
SELECT wait_for_run(:'r5');
SELECT step, status, error ->> 'message' AS message, error ->> 'timeout' AS timeout, error ? 'until' AS has_until
FROM orchestrator.run_steps WHERE run_id = :'r5';
SELECT type FROM orchestrator.events(:'r5') ORDER BY seq;
-- ... and one that ends in time succeeds.
SELECT orchestrator.start_workflow('t_sleep', jsonb_build_object('until', now() + interval '50 milliseconds')) AS r6 \gset
SELECT wait_for_run(:'r6');
SELECT orchestrator.start_workflow('t_sleep_ok') AS r7 \gset
SELECT wait_for_run(:'r7');

-- wait: how long to wait for the signal.
SELECT orchestrator.define_workflow('t_wait', '{"steps": [{"name": "w", "kind": "wait", "signal": "never", "timeout": "300 milliseconds"}]}');
SELECT orchestrator.start_workflow('t_wait') AS r8 \gset
SELECT wait_for_run(:'r8');
SELECT step, status, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'r8';

-- sql: the statement timeout of each attempt (57014, retryable).
SELECT orchestrator.define_workflow('t_sql', '{"steps": [{"name": "q", "kind": "sql", "sql": "SELECT pg_sleep(30)", "timeout": "200 milliseconds",
  "retry": {"max_attempts": 1}}]}');
SELECT orchestrator.start_workflow('t_sql') AS r9 \gset
SELECT wait_for_run(:'r9');
SELECT step, status, error ->> 'sqlstate' AS sqlstate FROM orchestrator.run_steps WHERE run_id = :'r9';
