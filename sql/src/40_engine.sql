-- The state machine of runs and steps lives in C (src/engine.c): every
-- transition of runs and steps, in one place, and the API functions that
-- make them (start, cancel, resume, signal, claims and completions of
-- external steps, HTTP responses, webhooks) are C as well.  Here:
-- templates, and the helpers of the read-only API functions.
--
-- All functions here are internal (not granted to anyone but _may_see(),
-- which the views use): the SECURITY DEFINER API functions and the
-- dispatchers call them.

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

-- A run the caller may see, unlocked (for reading: get_workflow,
-- workflow_result, events).  Raises undefined_object when it does not exist
-- or the caller may not see it (the two are indistinguishable on purpose).
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
		RAISE EXCEPTION 'workflow run % does not exist', run_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Runs are visible to the role that started them, to the owner of their workflow and to members of orchestrator_admin.';
	END IF;
	RETURN r;
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

