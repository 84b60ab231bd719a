-- External steps: application workers claim them over SQL with a lease,
-- heartbeat, and complete or fail them, all in C (src/external.c): the
-- arguments checked, the run locked, the lease checked, then the
-- transitions of src/engine.c.  Only the workflow's owner, roles granted
-- "work" on it, and admins claim or report its steps.  A call with a stale
-- lease (expired, superseded, or of a run that has finished) returns false
-- and changes nothing.

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

-- Claim up to max_steps due steps of an external queue with a lease (NULL:
-- orchestrator.default_lease), only of the workflows the caller may work;
-- a limited queue (set_queue_limit) hands out at most its max_running
-- leases at once.
CREATE FUNCTION orchestrator._api_claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
										 lease interval DEFAULT NULL)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz, traceparent text)
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_api_claim_steps';

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

-- Extend a claimed step's lease: by its length, or by a new length from now
-- on (never past the end of the attempt: the step's timeout); progress
-- (when not NULL) is kept on the step and appended as event step.progress.
CREATE FUNCTION orchestrator._api_heartbeat_step(run_id uuid, step text, lease_token uuid,
												 lease interval DEFAULT NULL, progress jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_api_heartbeat_step';

-- The lease checked, then the step's success.
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


-- The lease checked, then a failed attempt: retried after a backoff while
-- attempts remain and retryable, else the step is dead or failed.
CREATE FUNCTION orchestrator._api_fail_step(run_id uuid, step text, lease_token uuid, error jsonb,
									   retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_api_fail_step';
