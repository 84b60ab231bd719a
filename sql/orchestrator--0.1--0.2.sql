-- orchestrator 0.1 -> 0.2
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.2'" to load this file. \quit

-- Only the engine writes the status of runs and steps, and PostgreSQL
-- parses CHECK constraints again for every statement that writes a row: the
-- dispatcher's hot path spent a tenth of its time there.  (Dropping a
-- constraint of the partitioned parent drops it from every partition.)
ALTER TABLE orchestrator.workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE orchestrator.workflow_steps DROP CONSTRAINT workflow_steps_status_check;

-- External claims and completions go through the C engine (external.c).
CREATE FUNCTION orchestrator._claim_external(queue text, worker text, max_steps integer, lease interval)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz)
LANGUAGE C STRICT
AS 'MODULE_PATHNAME', 'orchestrator_claim_external';
REVOKE ALL ON FUNCTION orchestrator._claim_external(text, text, integer, interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION orchestrator.claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
										 lease interval DEFAULT NULL)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
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

	-- The claim itself is in C (external.c, as _claim() and
	-- _step_started() would do it): a step of a run that another
	-- transaction holds is left for the next claim.
	RETURN QUERY SELECT * FROM orchestrator._claim_external(claim_steps.queue, claim_steps.worker, max_steps, lease);
END
$$;

-- In C (external.c): _check_lease() and _step_succeeded() on the run's
-- partitions.
CREATE OR REPLACE FUNCTION orchestrator.complete_step(run_id uuid, step text, lease_token uuid, result jsonb)
RETURNS boolean
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_complete_step';

-- Find the queue row a lease token refers to, locking the run first.  Returns
-- false when the token is stale.
CREATE OR REPLACE FUNCTION orchestrator._check_lease(run_id uuid, step text, lease_token uuid)
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
	-- The lease token is the capability: the worker need not own the run.
	-- A run that no longer exists (retention removed it) is a stale lease.
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _check_lease.run_id FOR UPDATE;
	IF NOT FOUND OR NOT orchestrator._is_active(r.status) THEN
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


-- Several completions in one call (C, external.c): complete_step() for each
-- position of the arrays, runs locked in the order of their ids (so that
-- workers completing steps of the same runs cannot deadlock).
CREATE FUNCTION orchestrator.complete_steps(run_ids uuid[], steps text[], lease_tokens uuid[], results jsonb[])
RETURNS TABLE (run_id uuid, step text, completed boolean)
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_complete_steps';
COMMENT ON FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]) IS
'complete_step() for each position of the arrays, in one call; completed is false where the lease was stale';
REVOKE ALL ON FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]) TO orchestrator_user;

-- Append an event to a run's history and announce it with NOTIFY (delivered
-- at commit); webhook outbox rows commit with it (76_webhooks.sql).  Returns
-- its sequence number: one past the run's last (callers hold the run's row
-- lock; no update of the run row per event).  In C (engine.c), on the
-- partition that holds the run, as the C transitions append theirs.
CREATE OR REPLACE FUNCTION orchestrator._emit(run_id uuid, type text, step text DEFAULT NULL, data jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_emit';


-- sql steps are claimed by the dispatcher in C before _dispatch() runs.
-- One dispatcher pass after the sql steps: timers and expired leases.
-- Returns how many items it processed and when the next timer, retry or
-- lease expiry is due (NULL: nothing is scheduled).
CREATE OR REPLACE FUNCTION orchestrator._dispatch(max_steps integer, OUT processed integer, OUT next_wake timestamptz)
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

-- A step succeeded: result recorded, cost added to the run, step.succeeded,
-- then _step_done().  Callers hold the run's row lock.  In C (engine.c), on
-- the run's partitions: the transitions the C hot path uses.
CREATE OR REPLACE FUNCTION orchestrator._step_succeeded(run_id uuid, step text, result jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_step_succeeded';

