-- The state machine of runs and steps lives in C (src/engine.c): every
-- transition of runs and steps, in one place.  Here: the internal functions
-- through which the API functions written in PL/pgSQL (cancel, signal,
-- resume, the HTTP claim and recording) reach those transitions, and the
-- helpers for reading runs.  Callers hold the run's row lock (FOR UPDATE),
-- which serialises all changes to one run.
--
-- All functions here are internal (not granted to anyone): the SECURITY
-- DEFINER API functions and the dispatchers call them.

-- Append an event to a run's history and announce it (after commit,
-- through the relay); webhook outbox rows commit with it (76_webhooks.sql).
-- Returns its sequence number: one past the run's last.
CREATE FUNCTION orchestrator._emit(run_id uuid, type text, step text DEFAULT NULL, data jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_emit';

-- Transitions (src/engine.c).
CREATE FUNCTION orchestrator._step_ready(run_id uuid, step text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_step_ready';

CREATE FUNCTION orchestrator._step_started(run_id uuid, step text, worker text DEFAULT NULL)
RETURNS integer
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_step_started';

CREATE FUNCTION orchestrator._step_succeeded(run_id uuid, step text, result jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_step_succeeded';

-- Retried after a backoff (at least retry_after) while attempts remain and
-- the error is retryable; otherwise the step is dead or failed, and the run
-- fails.
CREATE FUNCTION orchestrator._attempt_failed(run_id uuid, step text, error jsonb, retryable boolean,
											 retry_after interval DEFAULT NULL)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_attempt_failed';

-- A run reaches a final status: succeeded, failed or cancelled.
CREATE FUNCTION orchestrator._run_finish(run_id uuid, status text, error jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_run_finish';

CREATE FUNCTION orchestrator._enqueue(run_id uuid, step text, queue text, available_at timestamptz)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_enqueue';

-- A queue row whose lease expired: a lost attempt, retried or dead.
CREATE FUNCTION orchestrator._lease_expired(run_id uuid, step text, worker text)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_lease_expired';

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
AS $$ SELECT status IN ('queued', 'pending', 'running', 'compensating') $$;

