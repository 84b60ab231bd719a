-- Runs: start, read, cancel, resume, signal; the relational views.

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

-- cancel_workflow() (src/run_api.c): the run locked for the caller, then
-- engine_run_finish() as cancelled; false when it had ended.
CREATE FUNCTION orchestrator._api_cancel_workflow(run_id uuid, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_api_cancel_workflow'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- retry_run() (src/run_api.c): resume a failed or cancelled run after its
-- cause was fixed.  Succeeded and skipped steps keep their results; every
-- other step waits again for its dependencies still to do, and those with
-- none left are made ready as at the start.
CREATE FUNCTION orchestrator._api_retry_run(run_id uuid, steps text[] DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_api_retry_run'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

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
