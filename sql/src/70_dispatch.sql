-- What the background dispatchers do in PL/pgSQL: the sql steps that the C
-- batch (sql_steps.c) hands over, timers, and expired leases of external
-- steps.  A sql step's statement, its result, its successors and its events
-- commit together, so its effect happens exactly once.

-- Run one sql step as the owner of its workflow.
CREATE FUNCTION orchestrator._exec_sql_step(run_id uuid, step text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r       orchestrator.workflow_runs;
	d       orchestrator.definition_steps;
	args    jsonb;
	owner   oid;
	timeout interval;
	result  jsonb;
	state   text;
	msg     text;
	detail  text;
	hint    text;
	ok      boolean;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _exec_sql_step.run_id;
	d := orchestrator._def_step(r, step);
	PERFORM orchestrator._step_started(r, step, 'dispatcher');
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _exec_sql_step.run_id;
	-- The workflow's owner: its steps run with the owner's rights.
	owner := r.owner;
	IF NOT EXISTS (SELECT 1 FROM pg_roles a WHERE a.oid = owner) THEN
		PERFORM orchestrator._attempt_failed(r.id, step, jsonb_build_object(
			'message', format('role %s that owns workflow "%s" does not exist', r.owner, r.name)), false);
		RETURN;
	END IF;
	timeout := coalesce(d.timeout, current_setting('orchestrator.default_step_timeout')::interval);
	-- Only the statement runs in the subtransaction: its error fails this
	-- attempt and undoes its effects.  The bookkeeping stays in the
	-- top-level transaction, which holds the row locks (a subtransaction
	-- updating rows its parent locked would create multixacts).
	ok := true;
	BEGIN
		args := coalesce(d.spec -> 'args', '[]');
		IF strpos(args::text, '"$path"') > 0 THEN
			args := orchestrator._render(args, orchestrator._context(r));
		END IF;
		result := orchestrator._run_sql_step(owner, d.spec ->> 'sql',
			ARRAY(SELECT a FROM jsonb_array_elements(args) a),
			greatest(1, least(extract(epoch FROM timeout) * 1000, 2147483647))::integer);
	EXCEPTION WHEN query_canceled OR others THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
								detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
		ok := false;
	END;
	IF NOT ok THEN
		-- Syntax and privilege errors (class 42) and unsupported features
		-- (0A) will not go away by themselves: no retry.
		PERFORM orchestrator._attempt_failed(r.id, step, jsonb_strip_nulls(jsonb_build_object(
			'message', msg, 'sqlstate', state, 'detail', nullif(detail, ''), 'hint', nullif(hint, ''))),
			left(state, 2) NOT IN ('42', '0A'));
		RETURN;
	END IF;
	IF args <> '[]' THEN
		UPDATE orchestrator.workflow_steps s SET input = jsonb_build_object('args', args)
			WHERE s.run_id = r.id AND s.step = _exec_sql_step.step;
	END IF;
	PERFORM orchestrator._step_succeeded(r.id, step, result);
END
$$;

-- An attempt of a sql step that was lost outside its statement's own error
-- handling: the dispatcher's transaction failed while handling the step (an
-- error of the engine's own work, "internal"), or the dispatcher process died
-- while the step ran (it crashed or was killed, or the watchdog ended a step
-- that ignored its timeout).  Nothing of the attempt committed; it is counted
-- now, and retried or dead-lettered like any failed attempt.  "attempt" is
-- the attempt that was lost: a step that has moved on since (recorded by
-- another dispatcher, read back twice) is left alone.  Returns 'recorded',
-- 'stale' (nothing to do) or 'busy' (the run is locked: try again later).
CREATE FUNCTION orchestrator._sql_attempt_lost(run_id uuid, step text, attempt integer, error jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r  orchestrator.workflow_runs;
	st text;
	n  integer;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _sql_attempt_lost.run_id FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN CASE WHEN EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = _sql_attempt_lost.run_id)
			THEN 'busy' ELSE 'stale' END;
	END IF;
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN 'stale';
	END IF;
	SELECT s.status, s.attempt INTO st, n FROM orchestrator.workflow_steps s
		WHERE s.run_id = r.id AND s.step = _sql_attempt_lost.step;
	IF st IS DISTINCT FROM 'ready' OR n <> attempt - 1
	   OR NOT EXISTS (SELECT 1 FROM orchestrator.work_queue q
					  WHERE q.run_id = r.id AND q.step = _sql_attempt_lost.step
						AND q.queue = '@sql' AND q.lease_token IS NULL) THEN
		RETURN 'stale';
	END IF;
	PERFORM orchestrator._step_started(r, step, 'dispatcher');
	PERFORM orchestrator._attempt_failed(r.id, step, error, true);
	RETURN 'recorded';
END
$$;

-- A timer is due: a sleep ends, a wait times out, or a run's deadline passes.
CREATE FUNCTION orchestrator._fire_timer(run_id uuid, step text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r orchestrator.workflow_runs;
	kind text;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _fire_timer.run_id;
	IF step = '@deadline' THEN
		DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id AND q.step = '@deadline';
		-- A saga already under way is let finish.
		IF r.status IN ('pending', 'running') THEN
			PERFORM orchestrator._run_finish(r, 'failed',
				jsonb_build_object('message', 'deadline exceeded', 'deadline', r.deadline));
		END IF;
		RETURN;
	END IF;
	SELECT s.kind INTO kind FROM orchestrator.workflow_steps s
		WHERE s.run_id = r.id AND s.step = _fire_timer.step AND s.status = 'running';
	IF kind = 'sleep' THEN
		PERFORM orchestrator._step_succeeded(r.id, step, jsonb_build_object('slept_until', now()));
	ELSIF kind = 'wait' THEN
		PERFORM orchestrator._attempt_failed(r.id, step, jsonb_build_object(
			'message', 'timed out waiting for signal',
			'signal', (orchestrator._def_step(r, step)).spec ->> 'signal'), false);
	ELSE
		DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id AND q.step = _fire_timer.step;
	END IF;
END
$$;

-- One dispatcher pass after the sql steps: timers and expired leases.
-- Returns how many items it processed and when the next timer, retry or
-- lease expiry is due (NULL: nothing is scheduled).
CREATE FUNCTION orchestrator._dispatch(max_steps integer, OUT processed integer, OUT next_wake timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	q     record;
	msg   text;
	state text;
	ahead integer;
BEGIN
	processed := 0;
	-- sql steps were claimed and run before this, in C (sql_steps.c).
	FOR q IN SELECT * FROM orchestrator._claim('@timer', max_steps) LOOP
		BEGIN
			PERFORM orchestrator._fire_timer(q.run_id, q.step);
		EXCEPTION WHEN others THEN
			-- An error of the engine itself: fail the step rather than
			-- retry the whole batch forever.
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
			RAISE WARNING 'orchestrator: timer "%" of run % failed in the dispatcher: %', q.step, q.run_id, msg;
			IF left(q.step, 1) = '@' THEN
				DELETE FROM orchestrator.work_queue w WHERE w.run_id = q.run_id AND w.step = q.step;
			ELSE
				PERFORM orchestrator._attempt_failed(q.run_id, q.step,
					jsonb_build_object('message', msg, 'sqlstate', state, 'internal', true), false);
			END IF;
		END;
		processed := processed + 1;
	END LOOP;

	IF processed < max_steps THEN
		FOR q IN SELECT w.run_id, w.step, w.worker
				 FROM orchestrator.work_queue w
				 WHERE w.lease_token IS NOT NULL AND w.available_at <= now()
				 ORDER BY w.available_at
				 LIMIT max_steps - processed
				 FOR UPDATE SKIP LOCKED LOOP
			CONTINUE WHEN NOT orchestrator._try_lock_run(q.run_id);
			PERFORM orchestrator._lease_expired(q.run_id, q.step, q.worker);
			processed := processed + 1;
		END LOOP;
	END IF;

	IF processed = 0 THEN
		-- Idle: keep orchestrator.partitions_ahead days of partitions ahead
		-- (a lookup of one name), even where maintain() is not scheduled.
		ahead := current_setting('orchestrator.partitions_ahead')::integer;
		IF to_regclass(format('orchestrator.workflow_events_p%s',
				to_char((now() AT TIME ZONE 'UTC')::date + ahead, 'YYYYMMDD'))) IS NULL THEN
			PERFORM orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date, ahead + 1);
		END IF;
		SELECT min(t) INTO next_wake FROM (
			(SELECT w.available_at FROM orchestrator.work_queue w
			 WHERE w.queue = '@timer' AND w.priority = 0 ORDER BY w.priority DESC, w.available_at LIMIT 1)
			UNION ALL
			(SELECT w.available_at FROM orchestrator.work_queue w
			 WHERE w.lease_token IS NOT NULL ORDER BY w.available_at LIMIT 1)
			UNION ALL
			(SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@sql')
		) due(t);
		-- Work that is due but locked belongs to another dispatcher's open
		-- transaction: look again shortly rather than spin.
		IF next_wake IS NOT NULL THEN
			next_wake := greatest(next_wake, clock_timestamp() + interval '20 milliseconds');
		END IF;
	END IF;
END
$$;
