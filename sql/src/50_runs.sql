-- Runs: start, read, cancel, signal; the relational views.

-- start_workflow() (src/start.c): options, the caller's right, the
-- idempotency key, then the run, its steps and its first transitions on the
-- run's partitions.
CREATE FUNCTION orchestrator._api_start_workflow(name text, input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE C
SECURITY DEFINER
AS 'MODULE_PATHNAME', 'orchestrator_api_start_workflow';

-- start_workflow()'s "deadline" option: an interval from now, or a time in
-- the future.
CREATE FUNCTION orchestrator._start_deadline(deadline jsonb)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t timestamptz;
BEGIN
	BEGIN
		IF jsonb_typeof(deadline) <> 'string' THEN
			RAISE invalid_datetime_format;
		END IF;
		BEGIN
			t := now() + (deadline #>> '{}')::interval;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			t := (deadline #>> '{}')::timestamptz;
		END;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
		RAISE EXCEPTION 'option "deadline" must be an interval or a timestamp' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', deadline),
			HINT = 'For example "30 minutes" or "2030-01-01T00:00:00Z".';
	END;
	IF t <= now() THEN
		RAISE EXCEPTION 'option "deadline" is not in the future' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('%s is at or before now (%s).', t, now());
	END IF;
	RETURN t;
END
$$;

CREATE FUNCTION orchestrator._api_get_workflow(run_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	r orchestrator.workflow_runs;
BEGIN
	r := orchestrator._visible_run(run_id);
	RETURN jsonb_build_object(
		'id', r.id, 'name', r.name, 'version', r.version, 'status', r.status, 'tenant', r.tenant,
		'owner', r.owner, 'started_by', r.started_by, 'priority', r.priority, 'deadline', r.deadline, 'cost', r.cost,
		'input', r.input, 'result', r.result, 'error', r.error, 'idempotency_key', r.idempotency_key,
		'created_at', r.created_at, 'started_at', r.started_at, 'finished_at', r.finished_at,
		'trace_id', coalesce(r.trace_id, replace(r.id::text, '-', '')),
		'parent_id', r.parent_id, 'parent_step', r.parent_step,
		-- elements of for_each steps are steps "<step>[<index>]"; a step of
		-- kind workflow names the child run of its latest attempt
		'steps', (SELECT jsonb_object_agg(s.step, jsonb_build_object(
					'kind', s.kind, 'status', s.status, 'attempt', s.attempt, 'input', s.input,
					'result', s.result, 'error', s.error, 'started_at', s.started_at,
					'finished_at', s.finished_at)
					|| CASE WHEN s.child_id IS NOT NULL THEN jsonb_build_object('child_id', s.child_id) ELSE '{}' END
					|| CASE WHEN s.element IS NOT NULL THEN jsonb_build_object('element', s.element, 'item', s.item) ELSE '{}' END
					|| CASE WHEN s.progress IS NOT NULL THEN jsonb_build_object('progress', s.progress) ELSE '{}' END)
				  FROM orchestrator.workflow_steps s WHERE s.run_id = r.id),
		-- its child runs, every attempt's (children are created after their parent)
		'children', coalesce((SELECT jsonb_agg(jsonb_build_object('id', c.id, 'name', c.name, 'version', c.version,
					'status', c.status, 'step', c.parent_step, 'created_at', c.created_at) ORDER BY c.id)
				  FROM orchestrator.workflow_runs c WHERE c.parent_id = r.id AND c.id >= r.id), '[]'));
END
$$;

CREATE FUNCTION orchestrator._api_workflow_result(run_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	r orchestrator.workflow_runs;
BEGIN
	r := orchestrator._visible_run(run_id);
	RETURN CASE WHEN r.status = 'succeeded' THEN r.result END;
END
$$;

CREATE FUNCTION orchestrator._api_cancel_workflow(run_id uuid, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	r orchestrator.workflow_runs := orchestrator._lock_run(run_id);
BEGIN
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN false;
	END IF;
	PERFORM orchestrator._run_finish(r.id, 'cancelled',
		jsonb_strip_nulls(jsonb_build_object('reason', reason, 'by', orchestrator._caller())));
	RETURN true;
END
$$;

-- Resume a failed or cancelled run after its cause was fixed.  Succeeded and
-- skipped steps keep their results and are not run again; every other step
-- (failed, dead, or cancelled by the run's end, whether it had started or
-- not) is to do again: it waits for its dependencies that are still to do,
-- with deps_open counted afresh, and the steps with none left are made ready
-- as when the run started.  A retried step keeps its attempt count (the
-- history numbers attempts on), and attempt_base records where its fresh
-- max_attempts tries begin (_attempt_failed counts from there).
CREATE FUNCTION orchestrator._api_retry_run(run_id uuid, steps text[] DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	r     orchestrator.workflow_runs := orchestrator._lock_run(run_id);
	bad   text;
	redo  text[];
	s     text;
BEGIN
	IF r.status = 'compensating' THEN
		RAISE EXCEPTION 'workflow run % is compensating and cannot be resumed', r.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its failed steps are being undone by their compensations.',
				  HINT = 'Start a new run once the compensations are done.';
	END IF;
	IF r.status NOT IN ('failed', 'cancelled') THEN
		RETURN false;
	END IF;
	-- Resuming runs the owner's steps again, as starting does: seeing the
	-- run is not enough (a role whose "start" grant was revoked sees the
	-- runs it started).
	IF NOT orchestrator._may(r.name, 'start') THEN
		RAISE EXCEPTION 'permission denied to resume a run of workflow "%"', r.name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Resuming a run needs the right to start its workflow: its owner, roles granted "start", members of orchestrator_admin.',
				  HINT = format('The owner can run: SELECT orchestrator.grant_workflow(%L, %L);', r.name, orchestrator._caller());
	END IF;
	IF EXISTS (SELECT 1 FROM orchestrator.workflow_steps x
			   JOIN orchestrator.definition_steps d
				 ON d.name = r.name AND d.version = r.version AND d.step = x.step
			   WHERE x.run_id = r.id AND (x.status = 'compensated' OR d.compensates IS NOT NULL)) THEN
		RAISE EXCEPTION 'workflow run % was compensated and cannot be resumed', r.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its failure started the compensations of its succeeded steps: what they did was undone.',
				  HINT = 'Start a new run.';
	END IF;
	IF r.deadline IS NOT NULL AND r.deadline <= now() THEN
		RAISE EXCEPTION 'the deadline of workflow run % has passed', r.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('Its deadline was %s.', r.deadline),
				  HINT = 'A resumed run keeps its deadline; start a new run with a later one.';
	END IF;

	-- Every step that did not succeed and was not skipped is to do again.
	-- (Elements of a for_each step are redone by their step: its fan-out
	-- keeps the elements that succeeded.)
	SELECT coalesce(array_agg(x.step ORDER BY x.position), '{}') INTO redo
		FROM orchestrator.workflow_steps x
		WHERE x.run_id = r.id AND x.status NOT IN ('succeeded', 'skipped') AND x.element IS NULL;
	IF steps IS NOT NULL THEN
		SELECT n INTO bad FROM unnest(steps) n
			WHERE n IS NULL OR NOT EXISTS (SELECT 1 FROM orchestrator.workflow_steps x
										   WHERE x.run_id = r.id AND x.step = n AND x.element IS NULL)
			LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'workflow run % has no step %', r.id, coalesce(quote_literal(bad), 'NULL')
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Its steps are: %s.', (SELECT string_agg(x.step, ', ' ORDER BY x.position)
						  FROM orchestrator.workflow_steps x WHERE x.run_id = r.id AND x.element IS NULL)),
					  HINT = 'Name the failed steps to retry, or pass NULL to retry every failed step.';
		END IF;
		SELECT n INTO bad FROM unnest(steps) n WHERE n <> ALL (redo) LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'step % of workflow run % is %, not failed', quote_literal(bad), r.id,
				(SELECT x.status FROM orchestrator.workflow_steps x WHERE x.run_id = r.id AND x.step = bad)
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'A resumed run keeps the results of its succeeded and skipped steps.',
					  HINT = 'Name only failed, dead or cancelled steps.';
		END IF;
		-- A run cannot go on past a failed step that stays failed.
		SELECT x.step INTO bad FROM orchestrator.workflow_steps x
			WHERE x.run_id = r.id AND x.status IN ('failed', 'dead') AND x.step <> ALL (steps) AND x.element IS NULL
			ORDER BY x.position LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'step % of workflow run % failed and is not named', quote_literal(bad), r.id
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'A run cannot continue while one of its steps stays failed.',
					  HINT = 'Name every failed or dead step, or pass NULL to retry them all.';
		END IF;
	END IF;

	UPDATE orchestrator.workflow_runs w
		SET status = CASE WHEN w.started_at IS NULL THEN 'pending' ELSE 'running' END,
			error = NULL, result = NULL, finished_at = NULL
		WHERE w.id = r.id
		RETURNING * INTO r;
	-- The steps that get a new attempt: those of the steps to do that had
	-- started (the others never ran).
	PERFORM orchestrator._emit(r.id, 'workflow.resumed', NULL, jsonb_build_object(
		'steps', to_jsonb((SELECT coalesce(array_agg(x.step ORDER BY x.position), '{}')
						   FROM orchestrator.workflow_steps x
						   WHERE x.run_id = r.id AND x.step = ANY (redo) AND x.attempt > 0)),
		'by', orchestrator._caller()));
	-- Active again: it takes admission slots like a start, or waits queued
	-- (then no step is made ready below; its admission does that).
	PERFORM orchestrator._admission_resumed(r.id);
	IF r.deadline IS NOT NULL THEN
		PERFORM orchestrator._enqueue(r.id, '@deadline', '@timer', r.deadline);
	END IF;

	UPDATE orchestrator.workflow_steps x
		SET status = 'waiting', attempt_base = x.attempt, error = NULL, result = NULL, worker = NULL,
			ready_at = NULL, started_at = NULL, finished_at = NULL,
			deps_open = (SELECT count(*) FROM unnest(d.depends_on) dep
						 WHERE dep = ANY (redo))
		FROM orchestrator.definition_steps d
		WHERE x.run_id = r.id AND x.step = ANY (redo)
		  AND d.name = r.name AND d.version = r.version AND d.step = x.step;
	FOREACH s IN ARRAY redo LOOP
		-- Making a step ready may end the run (a sleep whose "until" is no time).
		SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = r.id;
		EXIT WHEN r.status NOT IN ('pending', 'running');
		IF EXISTS (SELECT 1 FROM orchestrator.workflow_steps x
				   WHERE x.run_id = r.id AND x.step = s AND x.deps_open = 0 AND x.status = 'waiting') THEN
			PERFORM orchestrator._step_ready(r.id, s);
		END IF;
	END LOOP;
	RETURN true;
END
$$;

CREATE FUNCTION orchestrator._api_signal_workflow(run_id uuid, signal text, payload jsonb DEFAULT '{}')
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_api_signal_workflow'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION orchestrator._api_events(run_id uuid, after_seq bigint DEFAULT 0)
RETURNS TABLE (seq bigint, at timestamptz, type text, step text, data jsonb)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	PERFORM orchestrator._visible_run(run_id);
	RETURN QUERY SELECT e.seq, e.at, e.type, e.step, e.data FROM orchestrator.workflow_events e
		WHERE e.run_id = _api_events.run_id AND e.seq > coalesce(after_seq, 0) ORDER BY e.seq;
END
$$;

-- The relational face, for psql and Grafana.  Each role sees the runs it
-- started and the runs of the workflows it owns; members of
-- orchestrator_admin see all.  owner and started_by are regrole: role names.
CREATE VIEW orchestrator.runs WITH (security_barrier) AS
	SELECT r.id, r.name, r.version, r.status, r.tenant, r.owner, r.started_by, r.idempotency_key, r.priority,
		   r.deadline, r.parent_id, r.created_at, r.started_at, r.finished_at, r.cost, r.input,
		   r.result, r.error, coalesce(r.trace_id, replace(r.id::text, '-', '')) AS trace_id, r.parent_step
	FROM orchestrator.workflow_runs r
	WHERE orchestrator._may_see(r.owner, r.started_by);

CREATE VIEW orchestrator.run_steps WITH (security_barrier) AS
	SELECT s.run_id, r.name AS workflow, r.version, r.tenant, s.step, s.position, s.kind, s.status,
		   s.attempt, s.input, s.result, s.error, s.worker, s.ready_at, s.started_at, s.finished_at,
		   s.finished_at - s.started_at AS duration, s.progress
	FROM orchestrator.workflow_steps s
	JOIN orchestrator.workflow_runs r ON r.id = s.run_id
	WHERE orchestrator._may_see(r.owner, r.started_by);
