-- External steps: application workers claim them over SQL with a lease,
-- heartbeat, and complete or fail them.  Only the workflow's owner, roles
-- granted "work" on it, and admins claim or report its steps.  A call with a stale lease (expired,
-- superseded, or of a run that has finished) returns false and changes nothing.

CREATE FUNCTION orchestrator._check_queue_name(queue text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF queue IS NULL OR queue !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid queue name %', coalesce(quote_literal(queue), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A queue name is 1 to 63 letters, digits, "_", ".", ":" or "-", as in the step''s "queue".';
	END IF;
END
$$;

-- workflows: the names whose steps may be claimed (NULL: any).
CREATE FUNCTION orchestrator._claim_external(queue text, worker text, max_steps integer, lease interval,
											 workflows text[])
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz, traceparent text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_claim_external';

-- The workflows whose external steps the caller may work: NULL for members
-- of orchestrator_admin (all of them), else those it owns or was granted
-- "work" on (directly or through a role it has the privileges of).
-- PL/pgSQL so that its plan is kept (see _may()).
CREATE FUNCTION orchestrator._workable_workflows()
RETURNS text[]
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF orchestrator._is_admin() THEN
		RETURN NULL;
	END IF;
	RETURN ARRAY(
		SELECT w.name FROM orchestrator.workflows w WHERE orchestrator._acts_as(w.owner)
		UNION
		SELECT g.name FROM orchestrator.workflow_grants g
		WHERE g.privilege = 'work' AND orchestrator._acts_as(g.grantee));
END
$$;

CREATE FUNCTION orchestrator._api_claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
										 lease interval DEFAULT NULL)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz, traceparent text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	lim     integer;
	running bigint;
BEGIN
	PERFORM orchestrator._check_queue_name(queue);
	IF worker IS NULL OR length(worker) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'worker must be a name of 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Name the worker so that its leases can be traced, for example host:pid.';
	END IF;
	IF max_steps IS NULL OR max_steps NOT BETWEEN 1 AND 1000 THEN
		RAISE EXCEPTION 'max_steps must be from 1 to 1000' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(max_steps::text, 'NULL'));
	END IF;
	-- No lease given: orchestrator.default_lease (5 minutes unless set).
	lease := coalesce(lease, current_setting('orchestrator.default_lease')::interval);
	IF lease < interval '1 second' OR lease > interval '1 day' THEN
		RAISE EXCEPTION 'lease must be from 1 second to 1 day' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(lease::text, 'NULL')),
			HINT = 'Heartbeat with heartbeat_step() to keep a long task''s lease.';
	END IF;

	-- A limited queue (set_queue_limit): at most max_running live leases.
	-- Updating its row makes claims of the queue follow one another (under
	-- REPEATABLE READ a second claim fails with 40001 rather than count
	-- leases it cannot see); the count is a new snapshot, after the lock.
	UPDATE orchestrator.queue_limits l SET claimed_at = now()
		WHERE l.queue = _api_claim_steps.queue
		RETURNING l.max_running INTO lim;
	IF FOUND THEN
		SELECT count(*) INTO running FROM orchestrator.work_queue w
			WHERE w.queue = _api_claim_steps.queue AND w.lease_token IS NOT NULL AND w.available_at > now();
		IF running >= lim THEN
			RETURN;
		END IF;
		max_steps := least(max_steps, lim - running);
	END IF;

	-- The claim itself is in C (external.c, with engine_claim() and
	-- engine_step_claimed()): a step of a run that another
	-- transaction holds is left for the next claim.
	-- Only steps of workflows the caller may work; others' rows are not
	-- even locked.
	-- traceparent: the attempt's span in the run's trace, for the worker to
	-- continue.
	RETURN QUERY SELECT * FROM orchestrator._claim_external(_api_claim_steps.queue, _api_claim_steps.worker, max_steps, lease,
															  orchestrator._workable_workflows());
END
$$;

-- Limit how many steps of an external queue are leased at once (NULL: no
-- limit; 0: none are handed out, a pause).  Queues are shared by every
-- workflow that names them, so the limit is an operator's: admins only.
CREATE FUNCTION orchestrator._api_set_queue_limit(queue text, max_running integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM orchestrator._check_queue_name(queue);
	IF max_running < 0 OR max_running > 1000000 THEN
		RAISE EXCEPTION 'max_running must be from 0 to 1000000, or NULL for no limit' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', max_running),
			HINT = '0 pauses the queue: claims return nothing until the limit is raised or removed.';
	END IF;
	IF max_running IS NULL THEN
		DELETE FROM orchestrator.queue_limits l WHERE l.queue = _api_set_queue_limit.queue;
	ELSE
		INSERT INTO orchestrator.queue_limits AS l (queue, max_running, set_by)
			VALUES (queue, max_running, orchestrator._caller())
			ON CONFLICT ON CONSTRAINT queue_limits_pkey DO UPDATE
			SET max_running = excluded.max_running, set_by = excluded.set_by, set_at = now();
	END IF;
END
$$;

-- 42501 unless the caller may work the external steps of workflow "name"
-- (heartbeat_step and fail_step here, complete_step(s) in C).
CREATE FUNCTION orchestrator._require_may_work(name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF NOT orchestrator._may(name, 'work') THEN
		RAISE EXCEPTION 'permission denied to work steps of workflow "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'External steps are worked by the owner of their workflow, by roles it was granted to with privilege "work", and by members of orchestrator_admin.',
				  HINT = format('The owner can run: SELECT orchestrator.grant_workflow(%L, ''<role>'', ''work'');', name);
	END IF;
END
$$;

-- Find the queue row a lease token refers to, locking the run first.  Returns
-- false when the token is stale.
CREATE FUNCTION orchestrator._check_lease(run_id uuid, step text, lease_token uuid)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
	r     orchestrator.workflow_runs;
	valid boolean;
BEGIN
	IF run_id IS NULL OR step IS NULL OR lease_token IS NULL THEN
		RAISE EXCEPTION 'run_id, step and lease_token must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass the values claim_steps() returned.';
	END IF;
	-- A run that no longer exists (retention removed it) is a stale lease.
	-- The token proves which attempt the caller works on; the caller must
	-- also be allowed to work the workflow's steps (a token may leak).
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _check_lease.run_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	PERFORM orchestrator._require_may_work(r.name);
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN false;
	END IF;
	-- By key alone: with the lease conditions in the WHERE clause the generic
	-- plan used the partial index of leased rows and read every live lease.
	SELECT w.lease_token = _check_lease.lease_token AND w.available_at > now() INTO valid
		FROM orchestrator.work_queue w
		WHERE w.run_id = _check_lease.run_id AND w.step = _check_lease.step
		FOR UPDATE;
	RETURN coalesce(valid, false);
END
$$;

-- A claimed step's lease runs on from now, by its length or a new one, but
-- never past the end of its attempt ("timeout" after the claim).  Internal.
CREATE FUNCTION orchestrator._extend_lease(run_id uuid, step text, lease interval)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_extend_lease';

-- Extend a claimed step's lease: by its length, or by a new length from now
-- on (never past the end of the attempt: the step's timeout); progress (when not NULL) is kept on the step and appended as event
-- step.progress.
CREATE FUNCTION orchestrator._api_heartbeat_step(run_id uuid, step text, lease_token uuid,
												 lease interval DEFAULT NULL, progress jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	n integer;
BEGIN
	IF lease < interval '1 second' OR lease > interval '1 day' THEN
		RAISE EXCEPTION 'lease must be from 1 second to 1 day' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', lease),
			HINT = 'NULL extends the lease by the length it has.';
	END IF;
	IF NOT orchestrator._check_lease(run_id, step, lease_token) THEN
		RETURN false;
	END IF;
	-- In C: never past the end of the attempt (the step's timeout).
	PERFORM orchestrator._extend_lease(run_id, step, lease);
	IF progress IS NOT NULL THEN
		UPDATE orchestrator.workflow_steps s SET progress = _api_heartbeat_step.progress
			WHERE s.run_id = _api_heartbeat_step.run_id AND s.step = _api_heartbeat_step.step
			RETURNING s.attempt INTO n;
		PERFORM orchestrator._emit(run_id, 'step.progress', step,
								   jsonb_build_object('attempt', n, 'progress', progress));
	END IF;
	RETURN true;
END
$$;

-- In C (external.c): _check_lease() and _step_succeeded() on the run's
-- partitions.
CREATE FUNCTION orchestrator._api_complete_step(run_id uuid, step text, lease_token uuid, result jsonb)
RETURNS boolean
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_complete_step';

-- Several completions in one call (C, external.c): complete_step() for each
-- position of the arrays, runs locked in the order of their ids (so that
-- workers completing steps of the same runs cannot deadlock).
CREATE FUNCTION orchestrator._api_complete_steps(run_ids uuid[], steps text[], lease_tokens uuid[], results jsonb[])
RETURNS TABLE (run_id uuid, step text, completed boolean)
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_complete_steps';

CREATE FUNCTION orchestrator._api_fail_step(run_id uuid, step text, lease_token uuid, error jsonb,
									   retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	IF NOT orchestrator._check_lease(run_id, step, lease_token) THEN
		RETURN false;
	END IF;
	PERFORM orchestrator._attempt_failed(run_id, step, coalesce(error, 'null'), coalesce(retryable, true));
	RETURN true;
END
$$;
