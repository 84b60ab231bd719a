-- Starting runs without a client: on a schedule (pg_cron) and from table
-- triggers.  Both start runs as a role, with that role's rights, checked
-- when the run starts: a schedule as the role that scheduled it (pg_cron
-- runs each job as its username), a trigger as the role whose statement
-- fired it (current_user there).  Neither lends anyone's rights to anyone.

-- A schedule's name: the pg_cron job is named "workflow:<job_name>" and
-- belongs to the scheduling role, so names are per role (pg_cron keys jobs
-- by name and username).  pg_cron's names are of type name (63 bytes).
CREATE FUNCTION orchestrator._check_job_name(job_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF job_name IS NULL OR job_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,53}$' THEN
		RAISE EXCEPTION 'invalid job name %', coalesce(quote_literal(job_name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A job name is 1 to 54 letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_".';
	END IF;
END
$$;

-- 55000 unless pg_cron is installed in this database.
CREATE FUNCTION orchestrator._require_pg_cron()
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF to_regprocedure('cron.schedule_in_database(text, text, text, text, text, boolean)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('cron.database_name is %s.', coalesce(current_setting('cron.database_name', true), 'not set')),
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron.';
	END IF;
END
$$;

-- Start "workflow" with "input" and "options" on a cron schedule, as the
-- calling role.  The pg_cron job runs start_workflow() as that role, so the
-- right to start is checked at every run as well as here; its command fails
-- when the role's OID is not the scheduler's (a role created later under a
-- dropped role's name inherits no schedule).  Calling again
-- with the same job name replaces the schedule and returns the same job id.
CREATE FUNCTION orchestrator._api_schedule_workflow(job_name text, schedule text, workflow text,
													input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	caller  regrole := orchestrator._caller();
	role    pg_catalog.pg_roles;
	bad     text;
	command text;
	job     bigint;
	d       interval;
BEGIN
	PERFORM orchestrator._check_job_name(job_name);
	IF schedule IS NULL OR btrim(schedule) = '' THEN
		RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use a cron expression such as ''0 6 * * *'' (every day at 06:00).';
	END IF;
	IF workflow IS NULL THEN
		RAISE EXCEPTION 'workflow must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF input IS NULL THEN
		RAISE EXCEPTION 'input must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass ''{}'' for a workflow that takes no input.';
	END IF;
	options := coalesce(options, '{}');
	IF jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', options),
			HINT = 'Options of scheduled runs: version, tenant, deadline (an interval), priority.';
	END IF;
	IF options ? 'idempotency_key' THEN
		RAISE EXCEPTION 'option "idempotency_key" cannot be scheduled' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Every run after the first would return the first run.',
			HINT = 'Leave it out: each time the schedule fires starts a run of its own.';
	END IF;
	SELECT k INTO bad FROM jsonb_object_keys(options) k
		WHERE k NOT IN ('version', 'tenant', 'deadline', 'priority') ORDER BY k LIMIT 1;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'unknown option "%"', bad USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Options of scheduled runs: version, tenant, deadline (an interval), priority.';
	END IF;
	IF options ? 'tenant' AND (jsonb_typeof(options -> 'tenant') <> 'string'
							   OR length(options ->> 'tenant') NOT BETWEEN 1 AND 255) THEN
		RAISE EXCEPTION 'option "tenant" must be a string of 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', options -> 'tenant');
	END IF;
	IF options ? 'priority' AND (jsonb_typeof(options -> 'priority') <> 'number'
								 OR (options ->> 'priority') !~ '^-?[0-9]{1,4}$'
								 OR abs((options ->> 'priority')::integer) > 1000) THEN
		RAISE EXCEPTION 'option "priority" must be an integer from -1000 to 1000' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', options -> 'priority');
	END IF;
	IF options ? 'version' AND (jsonb_typeof(options -> 'version') <> 'number'
								OR (options ->> 'version') !~ '^[0-9]{1,9}$') THEN
		RAISE EXCEPTION 'option "version" must be a positive integer' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', options -> 'version');
	END IF;
	IF options ? 'deadline' THEN
		BEGIN
			d := (options ->> 'deadline')::interval;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			d := NULL;
		END;
		IF jsonb_typeof(options -> 'deadline') <> 'string' OR d IS NULL OR d <= interval '0' THEN
			RAISE EXCEPTION 'option "deadline" of a scheduled run must be a positive interval' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'deadline'),
				HINT = 'For example "30 minutes": each run''s deadline is that long after it starts.';
		END IF;
	END IF;

	PERFORM orchestrator._require_pg_cron();
	-- The same checks and errors as start_workflow().
	IF NOT EXISTS (SELECT 1 FROM orchestrator.definitions d WHERE d.name = workflow) THEN
		RAISE EXCEPTION 'workflow "%" is not defined', workflow USING ERRCODE = 'undefined_object',
			HINT = 'Define it first with orchestrator.define_workflow(name, spec).';
	END IF;
	IF options ? 'version' AND NOT EXISTS (SELECT 1 FROM orchestrator.definitions d
										   WHERE d.name = workflow AND d.version = (options ->> 'version')::integer) THEN
		RAISE EXCEPTION 'workflow "%" has no version %', workflow, options ->> 'version' USING ERRCODE = 'undefined_object',
			HINT = 'Omit "version" to start the latest version.';
	END IF;
	IF NOT orchestrator._may(workflow, 'start') THEN
		RAISE EXCEPTION 'permission denied to start workflow "%"', workflow
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Runs of a workflow are started by its owner, by roles it was granted to with privilege "start", and by members of orchestrator_admin; a schedule starts them as the role that scheduled it.',
				  HINT = format('The owner can run: SELECT orchestrator.grant_workflow(%L, %L);', workflow, caller);
	END IF;
	SELECT * INTO role FROM pg_catalog.pg_roles r WHERE r.oid = caller;
	IF NOT role.rolcanlogin THEN
		RAISE EXCEPTION 'role % cannot log in, and pg_cron starts its jobs as the role that scheduled them', caller
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Schedule as a role with LOGIN (pg_cron connects as it), or give this role LOGIN.';
	END IF;

	-- pg_cron knows the user by name: the command checks it is still the
	-- same role (not one created later under a dropped role's name, nor the
	-- role of a cluster the database was restored into) and says so when not.
	command := format('DO %L', format(
		'BEGIN'
		' IF (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER) IS DISTINCT FROM %s THEN'
		'  RAISE EXCEPTION ''schedule "%s" was made by the role of OID %s, not by this role'''
		'   USING ERRCODE = ''insufficient_privilege'','
		'   HINT = ''The role was dropped and created again, or the database restored into another cluster: schedule the workflow again.'';'
		' END IF;'
		' PERFORM orchestrator.start_workflow(%L, %L::pg_catalog.jsonb, %L::pg_catalog.jsonb);'
		' END',
		caller::oid, job_name, caller::oid, workflow, input, options));
	BEGIN
		EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4, $5)' INTO job
			USING 'workflow:' || job_name, schedule, command, current_database(), role.rolname::text;
	EXCEPTION WHEN invalid_parameter_value OR internal_error OR invalid_text_representation OR data_exception THEN
		RAISE EXCEPTION 'invalid schedule %', quote_literal(schedule) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = SQLERRM,
			HINT = 'Use a cron expression of five fields, such as ''0 6 * * *'' (every day at 06:00), or @hourly, @daily.';
	END;
	RETURN job;
END
$$;

-- Remove a schedule of the calling role; false when it has none of that
-- name (another role's schedule of the same name is another schedule).
CREATE FUNCTION orchestrator._api_unschedule_workflow(job_name text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job  bigint;
	done boolean;
BEGIN
	PERFORM orchestrator._check_job_name(job_name);
	IF to_regprocedure('cron.unschedule(bigint)') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT j.jobid FROM cron.job j WHERE j.jobname = $1 AND j.username = $2'
		INTO job USING 'workflow:' || job_name,
					   (SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.oid = orchestrator._caller());
	IF job IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT cron.unschedule($1)' INTO done USING job;
	RETURN done;
END
$$;

-- The trigger function: CREATE TRIGGER ... FOR EACH ROW EXECUTE FUNCTION
-- orchestrator.start_workflow_trigger('<workflow>') starts a run of the
-- workflow per row, with the new row (the old one on DELETE) as input, as
-- the role whose statement fired it, in the statement's transaction.
CREATE FUNCTION orchestrator._api_start_workflow_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	input jsonb;
BEGIN
	IF TG_LEVEL <> 'ROW' THEN
		RAISE EXCEPTION 'start_workflow_trigger() must be fired FOR EACH ROW'
			USING ERRCODE = 'trigger_protocol_violated',
				  DETAIL = format('Trigger %I on %s is FOR EACH STATEMENT.', TG_NAME, TG_RELID::regclass),
				  HINT = 'Create the trigger FOR EACH ROW: it starts a run per row.';
	END IF;
	IF TG_NARGS <> 1 THEN
		RAISE EXCEPTION 'start_workflow_trigger() takes one argument, the workflow''s name'
			USING ERRCODE = 'trigger_protocol_violated',
				  DETAIL = format('Trigger %I on %s passes %s arguments.', TG_NAME, TG_RELID::regclass, TG_NARGS),
				  HINT = 'EXECUTE FUNCTION orchestrator.start_workflow_trigger(''<workflow>'')';
	END IF;
	IF TG_OP = 'DELETE' THEN
		input := to_jsonb(OLD);
	ELSE
		input := to_jsonb(NEW);
	END IF;
	PERFORM orchestrator._api_start_workflow(TG_ARGV[0], input, '{}');
	IF TG_WHEN = 'AFTER' THEN
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END
$$;
