-- The DAG engine: state transitions of steps and runs.
--
-- Every transition runs with the run's row locked (FOR UPDATE), which
-- serialises all changes to one run: two parallel branches finishing at once
-- cannot both miss, or both trigger, the step that joins them, and event
-- sequence numbers stay gap-free.  Claimers lock queue rows and run rows with
-- SKIP LOCKED and never wait, so the only waiters take the run lock first and
-- no lock cycle can form.
--
-- Step and run timings use clock_timestamp(), not the transaction time: a
-- dispatcher runs many steps in one transaction, and their durations matter.
--
-- All functions here are internal (not granted to anyone): the SECURITY
-- DEFINER API functions and the dispatchers call them.

-- Append an event to a run's history and announce it with NOTIFY (delivered
-- at commit); webhook outbox rows commit with it (76_webhooks.sql).  Returns
-- its sequence number: one past the run's last (callers hold the run's row
-- lock; no update of the run row per event).  In C (engine.c), on the
-- partition that holds the run, as the C transitions append theirs.
CREATE FUNCTION orchestrator._emit(run_id uuid, type text, step text DEFAULT NULL, data jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_emit';

-- The run context that templates and conditions read.
CREATE FUNCTION orchestrator._context(r orchestrator.workflow_runs)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	-- PL/pgSQL rather than SQL: its plans are cached across calls, a
	-- non-inlined SQL function's are rebuilt on every call.
	RETURN jsonb_build_object(
		'input', r.input,
		'run', jsonb_build_object('id', r.id, 'name', r.name, 'version', r.version, 'tenant', r.tenant),
		'steps', coalesce((SELECT jsonb_object_agg(s.step, jsonb_build_object(
				'status', s.status, 'result', s.result, 'error', s.error, 'attempt', s.attempt))
			FROM orchestrator.workflow_steps s WHERE s.run_id = r.id), '{}'));
END
$$;

-- Replace every {"$path": "<jsonpath>"} inside a template by the first match
-- of the path over the context (JSON null when nothing matches).
CREATE FUNCTION orchestrator._render(template jsonb, ctx jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF template IS NULL OR strpos(template::text, '"$path"') = 0 THEN
		RETURN template;
	END IF;
	IF jsonb_typeof(template) = 'object' THEN
		IF template ? '$path' THEN
			RETURN coalesce(jsonb_path_query_first(ctx, (template ->> '$path')::jsonpath, '{}', true), 'null');
		END IF;
		RETURN (SELECT jsonb_object_agg(e.key, orchestrator._render(e.value, ctx)) FROM jsonb_each(template) e);
	END IF;
	RETURN (SELECT jsonb_agg(orchestrator._render(e.value, ctx) ORDER BY e.ord)
			FROM jsonb_array_elements(template) WITH ORDINALITY e(value, ord));
END
$$;

CREATE FUNCTION orchestrator._def_step(r orchestrator.workflow_runs, step text)
RETURNS orchestrator.definition_steps
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	d orchestrator.definition_steps;
BEGIN
	SELECT * INTO d FROM orchestrator.definition_steps x
	WHERE x.name = r.name AND x.version = r.version AND x.step = _def_step.step;
	RETURN d;
END
$$;

-- Lock a run for a transition.  Raises undefined_object when it does not
-- exist or the caller may not see it (the two are indistinguishable on purpose).
CREATE FUNCTION orchestrator._lock_run(run_id uuid, check_caller boolean DEFAULT true)
RETURNS orchestrator.workflow_runs
LANGUAGE plpgsql
AS $$
DECLARE
	r orchestrator.workflow_runs;
BEGIN
	IF run_id IS NULL THEN
		RAISE EXCEPTION 'run id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _lock_run.run_id FOR UPDATE;
	IF NOT FOUND OR (check_caller AND NOT orchestrator._may_see(r.owner, r.started_by)) THEN
		PERFORM orchestrator._run_not_found(run_id);
	END IF;
	RETURN r;
END
$$;

-- A run the caller may see, unlocked (for reading).
CREATE FUNCTION orchestrator._visible_run(run_id uuid)
RETURNS orchestrator.workflow_runs
LANGUAGE plpgsql
AS $$
DECLARE
	r orchestrator.workflow_runs;
BEGIN
	IF run_id IS NULL THEN
		RAISE EXCEPTION 'run id must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _visible_run.run_id;
	IF NOT FOUND OR NOT orchestrator._may_see(r.owner, r.started_by) THEN
		PERFORM orchestrator._run_not_found(run_id);
	END IF;
	RETURN r;
END
$$;

CREATE FUNCTION orchestrator._run_not_found(run_id uuid)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	RAISE EXCEPTION 'workflow run % does not exist', run_id
		USING ERRCODE = 'undefined_object',
			  HINT = 'Runs are visible to the role that started them, to the owner of their workflow and to members of orchestrator_admin.';
END
$$;

-- Lock a run without waiting: false when another transaction holds it.
-- Claimers use it after locking queue rows, so they never wait.
CREATE FUNCTION orchestrator._try_lock_run(run_id uuid)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM 1 FROM orchestrator.workflow_runs r WHERE r.id = _try_lock_run.run_id FOR UPDATE SKIP LOCKED;
	RETURN FOUND;
END
$$;

-- Claim due work of one queue: queue rows in index order (priority, then
-- age), locked with SKIP LOCKED, then their runs, skipped when another
-- transaction holds them.  Nobody waits, so no lock cycle can form.  A row
-- whose lease expired (its holder died or gave up) is a lost attempt: it is
-- retried after a backoff or dead-lettered, and not returned.  Every
-- claimer (dispatchers, claim_steps, the HTTP claim) goes through here.
CREATE FUNCTION orchestrator._claim(queue text, max_items integer)
RETURNS TABLE (run_id uuid, step text)
LANGUAGE plpgsql
AS $$
DECLARE
	q record;
BEGIN
	FOR q IN SELECT w.run_id, w.step, w.lease_token, w.worker
			 FROM orchestrator.work_queue w
			 WHERE w.queue = _claim.queue AND w.available_at <= now()
			 ORDER BY w.priority DESC, w.available_at
			 LIMIT max_items
			 FOR UPDATE SKIP LOCKED LOOP
		CONTINUE WHEN NOT orchestrator._try_lock_run(q.run_id);
		IF q.lease_token IS NOT NULL THEN
			PERFORM orchestrator._lease_expired(q.run_id, q.step, q.worker);
			CONTINUE;
		END IF;
		run_id := q.run_id;
		step := q.step;
		RETURN NEXT;
	END LOOP;
END
$$;

-- May the caller see a run?  Its workflow's owner, the role that started
-- it (and roles with their privileges), and members of orchestrator_admin.
-- No SET clause, so that the planner inlines it (a SQL function with one is
-- parsed again on every call); its names are qualified.
CREATE FUNCTION orchestrator._may_see(owner regrole, started_by regrole)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
	SELECT orchestrator._acts_as(owner) OR orchestrator._acts_as(started_by) OR orchestrator._is_admin()
$$;

CREATE FUNCTION orchestrator._is_active(status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$ SELECT status IN ('pending', 'running', 'compensating') $$;

-- Put a step on a queue; internal queues wake the dispatchers at commit,
-- external queues are announced on channel orchestrator_queue.
CREATE FUNCTION orchestrator._enqueue(r orchestrator.workflow_runs, step text, queue text, available_at timestamptz)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	INSERT INTO orchestrator.work_queue (run_id, step, queue, priority, available_at, workflow)
		VALUES (r.id, step, queue, CASE WHEN queue = '@timer' THEN 0 ELSE r.priority END, available_at, r.name)
	ON CONFLICT ON CONSTRAINT work_queue_pkey DO UPDATE
		SET queue = excluded.queue, priority = excluded.priority, available_at = excluded.available_at,
			lease_token = NULL, lease = NULL, worker = NULL;
	IF left(queue, 1) = '@' THEN
		PERFORM orchestrator._wake_at_commit(CASE queue WHEN '@sql' THEN 'sql' WHEN '@http' THEN 'http' ELSE 'timer' END);
	ELSIF available_at <= now() THEN
		PERFORM orchestrator._notify('orchestrator_queue', queue);
	END IF;
END
$$;

-- A step starts an attempt: counted, timed, announced; the run becomes
-- running at its first step.
CREATE FUNCTION orchestrator._step_started(r orchestrator.workflow_runs, step text, worker text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	n integer;
BEGIN
	-- r may be stale, but only ever as 'pending' after the run started: the
	-- guarded update then does nothing.
	IF r.status = 'pending' THEN
		UPDATE orchestrator.workflow_runs w SET status = 'running', started_at = clock_timestamp()
			WHERE w.id = r.id AND w.status = 'pending';
		IF FOUND THEN
			PERFORM orchestrator._emit(r.id, 'workflow.started');
		END IF;
	END IF;
	UPDATE orchestrator.workflow_steps s
		SET status = 'running', attempt = s.attempt + 1, started_at = clock_timestamp(), worker = _step_started.worker
		WHERE s.run_id = r.id AND s.step = _step_started.step
		RETURNING s.attempt INTO n;
	PERFORM orchestrator._emit(r.id, 'step.started', step,
		jsonb_strip_nulls(jsonb_build_object('attempt', n, 'worker', worker)));
	RETURN n;
END
$$;

-- All of a step's dependencies are done: skip it (condition false) or start
-- it according to its kind.
CREATE FUNCTION orchestrator._step_ready(r orchestrator.workflow_runs, step text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	d    orchestrator.definition_steps := orchestrator._def_step(r, step);
	ctx  jsonb;
	due  timestamptz;
	sig  jsonb;
BEGIN
	IF d.condition IS NOT NULL OR strpos(d.spec::text, '"$path"') > 0 THEN
		ctx := orchestrator._context(r);
	END IF;
	IF d.condition IS NOT NULL AND NOT coalesce(jsonb_path_match(ctx, d.condition, '{}', true), false) THEN
		UPDATE orchestrator.workflow_steps s SET status = 'skipped', finished_at = clock_timestamp()
			WHERE s.run_id = r.id AND s.step = _step_ready.step;
		PERFORM orchestrator._emit(r.id, 'step.skipped', step, jsonb_build_object('when', d.spec -> 'when'));
		PERFORM orchestrator._step_done(r.id, d);
		RETURN;
	END IF;

	CASE d.kind
	WHEN 'sql', 'external' THEN
		UPDATE orchestrator.workflow_steps s
			SET status = 'ready', ready_at = clock_timestamp(),
				input = CASE d.kind WHEN 'external' THEN orchestrator._render(coalesce(d.spec -> 'input', '{}'), ctx) END
			WHERE s.run_id = r.id AND s.step = _step_ready.step;
		PERFORM orchestrator._enqueue(r, step, CASE d.kind WHEN 'sql' THEN '@sql' ELSE d.spec ->> 'queue' END, now());
	WHEN 'http' THEN
		-- rendered now; a dispatcher claims it with a lease and sends it (75_http.sql)
		UPDATE orchestrator.workflow_steps s
			SET status = 'ready', ready_at = clock_timestamp(), input = orchestrator._render(d.spec -> 'request', ctx)
			WHERE s.run_id = r.id AND s.step = _step_ready.step;
		PERFORM orchestrator._enqueue(r, step, '@http', now());
	WHEN 'sleep' THEN
		UPDATE orchestrator.workflow_steps s SET ready_at = clock_timestamp() WHERE s.run_id = r.id AND s.step = _step_ready.step;
		PERFORM orchestrator._step_started(r, step);
		IF d.spec ? 'duration' THEN
			due := clock_timestamp() + (d.spec ->> 'duration')::interval;
		ELSE
			BEGIN
				due := orchestrator._render(d.spec -> 'until', ctx) #>> '{}';
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_text_representation THEN
				PERFORM orchestrator._attempt_failed(r.id, step, jsonb_build_object('message',
					format('"until" is not a timestamp: %s', orchestrator._render(d.spec -> 'until', ctx))), false);
				RETURN;
			END;
			IF due IS NULL THEN
				PERFORM orchestrator._attempt_failed(r.id, step, '{"message": "\"until\" matched nothing"}', false);
				RETURN;
			END IF;
		END IF;
		PERFORM orchestrator._enqueue(r, step, '@timer', due);
		UPDATE orchestrator.workflow_steps s SET input = jsonb_build_object('until', due)
			WHERE s.run_id = r.id AND s.step = _step_ready.step;
	WHEN 'wait' THEN
		UPDATE orchestrator.workflow_steps s SET ready_at = clock_timestamp() WHERE s.run_id = r.id AND s.step = _step_ready.step;
		PERFORM orchestrator._step_started(r, step);
		SELECT g.payload INTO sig FROM orchestrator.signals g
			WHERE g.run_id = r.id AND g.name = d.spec ->> 'signal' ORDER BY g.id LIMIT 1;
		IF FOUND THEN
			PERFORM orchestrator._step_succeeded(r.id, step, sig);
		ELSIF d.timeout IS NOT NULL THEN
			PERFORM orchestrator._enqueue(r, step, '@timer', clock_timestamp() + d.timeout);
		END IF;
	END CASE;
END
$$;

-- A step succeeded: result recorded, cost added to the run, step.succeeded,
-- then _step_done().  Callers hold the run's row lock.  In C (engine.c), on
-- the run's partitions: the transitions the C hot path uses.
CREATE FUNCTION orchestrator._step_succeeded(run_id uuid, step text, result jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_step_succeeded';

-- A step is done (succeeded or skipped): release its dependents, and finish
-- the run when no step is left open.
CREATE FUNCTION orchestrator._step_done(run_id uuid, d orchestrator.definition_steps)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r     orchestrator.workflow_runs;
	next  text;
	open  integer;
BEGIN
	IF d.compensates IS NOT NULL THEN
		-- A compensation is done: its step is compensated; on to the next.
		UPDATE orchestrator.workflow_steps s SET status = 'compensated'
			WHERE s.run_id = _step_done.run_id AND s.step = d.compensates;
		PERFORM orchestrator._emit(_step_done.run_id, 'step.compensated', d.compensates);
		SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _step_done.run_id;
		PERFORM orchestrator._compensate_next(r);
		RETURN;
	END IF;
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _step_done.run_id;
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN;
	END IF;
	FOREACH next IN ARRAY d.dependents LOOP
		UPDATE orchestrator.workflow_steps s SET deps_open = s.deps_open - 1
			WHERE s.run_id = r.id AND s.step = next AND s.status = 'waiting'
			RETURNING s.deps_open INTO open;
		IF open = 0 THEN
			SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _step_done.run_id;
			PERFORM orchestrator._step_ready(r, next);
		END IF;
	END LOOP;
	-- The run succeeds when no step is open any more (a probe of the run's
	-- few step rows; cheaper than keeping a counter on the run row).
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _step_done.run_id;
	IF r.status IN ('pending', 'running') AND NOT EXISTS (
			SELECT 1 FROM orchestrator.workflow_steps s
			WHERE s.run_id = r.id AND s.status IN ('waiting', 'ready', 'running')) THEN
		PERFORM orchestrator._run_finish(r, 'succeeded', NULL);
	END IF;
END
$$;

-- Delay before the next attempt: exponential with jitter, capped.
CREATE FUNCTION orchestrator._backoff(d orchestrator.definition_steps, attempt integer)
RETURNS interval
LANGUAGE sql VOLATILE
AS $$
	SELECT least(d.backoff * power(d.multiplier, greatest(attempt - 1, 0)) * (1 + d.jitter * (2 * random() - 1)),
				 d.max_backoff)
$$;

-- An attempt failed.  Retry it after a backoff while attempts remain and the
-- error is retryable; otherwise the step is dead (out of attempts) or failed
-- (not retryable), and the run fails.
CREATE FUNCTION orchestrator._attempt_failed(run_id uuid, step text, error jsonb, retryable boolean,
											 retry_after interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r     orchestrator.workflow_runs;
	d     orchestrator.definition_steps;
	n     integer;
	base  integer;
	due   timestamptz;
	final text;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _attempt_failed.run_id;
	d := orchestrator._def_step(r, step);
	-- Attempts count from the last resume (retry_run sets attempt_base).
	SELECT s.attempt, s.attempt_base INTO n, base FROM orchestrator.workflow_steps s
		WHERE s.run_id = r.id AND s.step = _attempt_failed.step;
	IF retryable AND n - base < d.max_attempts THEN
		due := now() + greatest(orchestrator._backoff(d, n - base), coalesce(retry_after, interval '0'));
		UPDATE orchestrator.workflow_steps s SET status = 'ready', error = _attempt_failed.error, ready_at = due
			WHERE s.run_id = r.id AND s.step = _attempt_failed.step;
		UPDATE orchestrator.work_queue q SET available_at = due, lease_token = NULL, lease = NULL, worker = NULL
			WHERE q.run_id = r.id AND q.step = _attempt_failed.step;
		IF d.kind = 'sql' THEN
			-- due later: the dispatchers must learn when (_dispatch()'s next
			-- wake), which a wake for timers gives them
			PERFORM orchestrator._wake_at_commit('timer');
		END IF;
		PERFORM orchestrator._emit(r.id, 'step.retrying', step,
			jsonb_build_object('attempt', n, 'error', error, 'retry_at', due));
		RETURN;
	END IF;
	final := CASE WHEN retryable THEN 'dead' ELSE 'failed' END;
	DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id AND q.step = _attempt_failed.step;
	UPDATE orchestrator.workflow_steps s SET status = final, error = _attempt_failed.error, finished_at = clock_timestamp()
		WHERE s.run_id = r.id AND s.step = _attempt_failed.step;
	PERFORM orchestrator._emit(r.id, 'step.' || final, step, jsonb_build_object('attempt', n, 'error', error));
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _attempt_failed.run_id;
	PERFORM orchestrator._run_finish(r, 'failed',
		jsonb_build_object('step', step, 'status', final, 'error', error));
END
$$;

-- A run reaches a final status.  Open steps are cancelled and their queued
-- work removed (so leases held by external workers stop being valid).
CREATE FUNCTION orchestrator._run_finish(r orchestrator.workflow_runs, status text, error jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	s      text;
	res    jsonb;
BEGIN
	IF r.status = 'compensating' THEN
		-- A compensation failed, or the run was cancelled while compensating:
		-- keep the error that started the saga.
		error := r.error || jsonb_build_object('compensation', error);
	END IF;
	-- A run succeeds only when no step is open: then only a deadline timer
	-- can be left to remove.
	IF status <> 'succeeded' OR r.deadline IS NOT NULL THEN
		DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id;
	END IF;
	FOR s IN WITH cancelled AS (
				 UPDATE orchestrator.workflow_steps x SET status = 'cancelled', finished_at = clock_timestamp()
				 WHERE _run_finish.status <> 'succeeded' AND x.run_id = r.id AND x.status IN ('waiting', 'ready', 'running')
				 RETURNING x.step, x.position)
			 SELECT c.step FROM cancelled c ORDER BY c.position LOOP
		PERFORM orchestrator._emit(r.id, 'step.cancelled', s);
	END LOOP;
	-- A run that fails with succeeded steps that declare "compensate" first
	-- undoes them, in reverse order of completion (see _compensate_next).
	IF status = 'failed' AND r.status <> 'compensating' THEN
		INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, deps_open)
			SELECT r.id, d.step, d.position, d.kind, 0
			FROM orchestrator.workflow_steps x
			JOIN orchestrator.definition_steps d
			  ON d.name = r.name AND d.version = r.version AND d.compensates = x.step
			WHERE x.run_id = r.id AND x.status = 'succeeded';
		IF FOUND THEN
			UPDATE orchestrator.workflow_runs w SET status = 'compensating', error = _run_finish.error
				WHERE w.id = r.id;
			PERFORM orchestrator._emit(r.id, 'workflow.compensating', NULL, jsonb_build_object('error', error));
			SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = r.id;
			PERFORM orchestrator._compensate_next(r);
			RETURN;
		END IF;
	END IF;
	IF status = 'succeeded' THEN
		SELECT d.spec -> 'result' INTO res FROM orchestrator.definitions d
			WHERE d.name = r.name AND d.version = r.version;
		IF res IS NOT NULL THEN
			res := orchestrator._render(res, orchestrator._context(r));
		ELSE
			SELECT coalesce(jsonb_object_agg(x.step, x.result), '{}') INTO res
				FROM orchestrator.workflow_steps x WHERE x.run_id = r.id AND x.status = 'succeeded';
		END IF;
	END IF;
	UPDATE orchestrator.workflow_runs w
		SET status = _run_finish.status, result = res, error = _run_finish.error,
			finished_at = clock_timestamp()
		WHERE w.id = r.id;
	PERFORM orchestrator._emit(r.id, 'workflow.' || status, NULL,
		jsonb_strip_nulls(jsonb_build_object('error', error, 'result', res)));
END
$$;

-- Saga: start the next compensation (that of the step which completed
-- last, so dependents are undone before what they depended on), or, when
-- none is left, finish the run as failed with the error that started it.
CREATE FUNCTION orchestrator._compensate_next(r orchestrator.workflow_runs)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	next text;
BEGIN
	SELECT c.step INTO next
	FROM orchestrator.workflow_steps c
	JOIN orchestrator.definition_steps d
	  ON d.name = r.name AND d.version = r.version AND d.step = c.step
	JOIN orchestrator.workflow_steps x ON x.run_id = c.run_id AND x.step = d.compensates
	WHERE c.run_id = r.id AND c.status = 'waiting'
	ORDER BY x.finished_at DESC, x.position DESC
	LIMIT 1;
	IF FOUND THEN
		PERFORM orchestrator._step_ready(r, next);
		RETURN;
	END IF;
	UPDATE orchestrator.workflow_runs w SET status = 'failed', finished_at = clock_timestamp() WHERE w.id = r.id;
	PERFORM orchestrator._emit(r.id, 'workflow.failed', NULL,
		jsonb_build_object('error', r.error, 'compensated', true));
END
$$;
