-- orchestrator 0.2 -> 0.3: ownership and rights.
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.3'" to load this file. \quit

-- Every view is dropped first and created again at the end: the columns
-- they read change type (owners become regrole), and the functions they
-- call change.
DROP VIEW orchestrator.costs_per_day, orchestrator.queue_depth, orchestrator.throughput, orchestrator.step_errors, orchestrator.error_rates, orchestrator.step_durations, orchestrator.runs_per_day, orchestrator._run_stats, orchestrator.webhook_deliveries, orchestrator.circuit_breakers, orchestrator.run_steps, orchestrator.runs;

-- Functions that are gone, or change their arguments, result or language.
DROP FUNCTION orchestrator._caller();
DROP FUNCTION orchestrator._validate_spec(text, jsonb);
DROP FUNCTION orchestrator.define_workflow(text, jsonb);
DROP FUNCTION orchestrator._lock_run(uuid, boolean);
DROP FUNCTION orchestrator._visible_run(uuid);
DROP FUNCTION orchestrator._run_not_found(uuid);
DROP FUNCTION orchestrator._may_see(name);
DROP FUNCTION orchestrator._enqueue(orchestrator.workflow_runs, text, text, timestamptz);
DROP FUNCTION orchestrator.start_workflow(text, jsonb, jsonb);
DROP FUNCTION orchestrator.get_workflow(uuid);
DROP FUNCTION orchestrator.workflow_result(uuid);
DROP FUNCTION orchestrator.cancel_workflow(uuid, text);
DROP FUNCTION orchestrator.signal_workflow(uuid, text, jsonb);
DROP FUNCTION orchestrator.events(uuid, bigint);
DROP FUNCTION orchestrator._claim_external(text, text, integer, interval);
DROP FUNCTION orchestrator.claim_steps(text, text, integer, interval);
DROP FUNCTION orchestrator._check_lease(uuid, text, uuid);
DROP FUNCTION orchestrator.heartbeat_step(uuid, text, uuid);
DROP FUNCTION orchestrator.complete_step(uuid, text, uuid, jsonb);
DROP FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]);
DROP FUNCTION orchestrator.fail_step(uuid, text, uuid, jsonb, boolean);
DROP FUNCTION orchestrator._exec_sql_step(uuid, text);
DROP FUNCTION orchestrator._http_circuit_admit(text, interval);
DROP FUNCTION orchestrator._http_claim(integer, text, boolean);
DROP FUNCTION orchestrator._http_step_record(uuid, text, uuid, integer, jsonb, text, text, text, text, float8);
DROP FUNCTION orchestrator._http_breakers(text[], boolean[], uuid[], text[]);
DROP FUNCTION orchestrator._http_record_items(boolean, text[], uuid[], text[], uuid[], uuid[], integer[], text[], text[], text[], text[], text[], float8[]);
DROP FUNCTION orchestrator.rebuild_stats(date);
DROP FUNCTION orchestrator.maintain(integer);
DROP FUNCTION orchestrator.schedule_maintenance(text);
DROP FUNCTION orchestrator.unschedule_maintenance();
DROP FUNCTION orchestrator.health();
DROP FUNCTION orchestrator.metrics();

-- Workflows and their owners: the role that defined each name first.  A
-- role that no longer exists owns nothing any more ('-', OID 0): its
-- workflows' sql steps fail until an admin redefines them under another name.
CREATE TABLE orchestrator.workflows (
	name       text        NOT NULL PRIMARY KEY,
	owner      regrole     NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orchestrator.workflows IS 'workflow names and their owners (the role that defined each first)';
INSERT INTO orchestrator.workflows (name, owner, created_at)
	SELECT DISTINCT ON (d.name) d.name, coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(d.created_by)), '-'), d.created_at
	FROM orchestrator.definitions d ORDER BY d.name, d.version;

CREATE TABLE orchestrator.workflow_grants (
	name       text        NOT NULL REFERENCES orchestrator.workflows (name),
	grantee    regrole     NOT NULL,
	privilege  text        NOT NULL CHECK (privilege IN ('start', 'work')),
	owner      regrole     NOT NULL,
	granted_by regrole     NOT NULL,
	granted_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, grantee, privilege)
);
COMMENT ON TABLE orchestrator.workflow_grants IS 'privileges on workflows granted to other roles (grant_workflow)';

ALTER TABLE orchestrator.definitions
	ALTER COLUMN created_by DROP DEFAULT,
	ALTER COLUMN created_by TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(created_by)), '-'),
	ADD FOREIGN KEY (name) REFERENCES orchestrator.workflows (name);

-- Runs: owner was the role that started the run (0.2 ran its steps with
-- that role's rights); it is now the workflow's owner, and the starter is
-- started_by.  Runs still going continue with their owner's rights.  This
-- rewrites every run partition.
ALTER TABLE orchestrator.workflow_runs
	ALTER COLUMN owner TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), '-'),
	ADD COLUMN started_by regrole;
UPDATE orchestrator.workflow_runs r
	SET started_by = r.owner, owner = coalesce((SELECT w.owner FROM orchestrator.workflows w WHERE w.name = r.name), '-');
ALTER TABLE orchestrator.workflow_runs ALTER COLUMN started_by SET NOT NULL;
COMMENT ON COLUMN orchestrator.workflow_runs.owner IS 'owner of the workflow: its sql steps run with this role''s rights';
COMMENT ON COLUMN orchestrator.workflow_runs.started_by IS 'the role that started the run';

ALTER TABLE orchestrator.work_queue ADD COLUMN workflow text;
UPDATE orchestrator.work_queue q SET workflow = r.name FROM orchestrator.workflow_runs r WHERE r.id = q.run_id;
DELETE FROM orchestrator.work_queue q WHERE q.workflow IS NULL;
ALTER TABLE orchestrator.work_queue ALTER COLUMN workflow SET NOT NULL;

-- Idempotency keys per starting role.
ALTER TABLE orchestrator.idempotency_keys ADD COLUMN started_by regrole;
UPDATE orchestrator.idempotency_keys k SET started_by = r.started_by FROM orchestrator.workflow_runs r WHERE r.id = k.run_id;
DELETE FROM orchestrator.idempotency_keys k WHERE k.started_by IS NULL;
ALTER TABLE orchestrator.idempotency_keys
	ALTER COLUMN started_by SET NOT NULL,
	DROP CONSTRAINT idempotency_keys_pkey,
	ADD PRIMARY KEY (started_by, name, key);

ALTER TABLE orchestrator.signals
	ALTER COLUMN sent_by DROP DEFAULT,
	ALTER COLUMN sent_by TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(sent_by)), '-');

-- Roll-ups: by the workflow's owner now, as the views filter them.
ALTER TABLE orchestrator.run_stats_daily
	ALTER COLUMN owner TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), '-');
ALTER TABLE orchestrator.step_error_stats_daily
	ALTER COLUMN owner TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), '-');
ALTER TABLE orchestrator.throughput_stats
	ALTER COLUMN owner TYPE regrole USING coalesce(pg_catalog.to_regrole(pg_catalog.quote_ident(owner)), '-');
ALTER TABLE orchestrator.step_duration_stats_daily
	ALTER COLUMN owner TYPE regrole USING pg_catalog.to_regrole(pg_catalog.quote_ident(owner));
UPDATE orchestrator.run_stats_daily s SET owner = w.owner FROM orchestrator.workflows w WHERE w.name = s.workflow;
UPDATE orchestrator.step_error_stats_daily s SET owner = w.owner FROM orchestrator.workflows w WHERE w.name = s.workflow;
UPDATE orchestrator.throughput_stats s SET owner = w.owner FROM orchestrator.workflows w WHERE w.name = s.workflow;
UPDATE orchestrator.step_duration_stats_daily s SET owner = w.owner FROM orchestrator.workflows w
	WHERE w.name = s.workflow AND s.owner IS NOT NULL;

-- pg_dump dumps the rows of the new tables too.
SELECT pg_catalog.pg_extension_config_dump('orchestrator.workflows', '');
SELECT pg_catalog.pg_extension_config_dump('orchestrator.workflow_grants', '');

-- Circuit breakers per workflow owner and host:port.  Their state is
-- transient (a breaker opens again on the next failures): the table is
-- made anew.
ALTER EXTENSION orchestrator DROP TABLE orchestrator.http_circuits;
DROP TABLE orchestrator.http_circuits;
CREATE TABLE orchestrator.http_circuits (
	owner      regrole     NOT NULL,
	host       text        NOT NULL,
	state      text        NOT NULL DEFAULT 'closed',
	failures   integer     NOT NULL DEFAULT 0,
	opened_at  timestamptz,
	retry_at   timestamptz,
	last_error jsonb,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (owner, host),
	CHECK (state IN ('closed', 'open', 'half_open'))
);
COMMENT ON TABLE orchestrator.http_circuits IS 'circuit breakers of http steps per workflow owner and host:port';
SELECT pg_catalog.pg_extension_config_dump('orchestrator.http_circuits', '');
UPDATE orchestrator.work_queue SET worker = NULL, available_at = now() WHERE queue = '@http' AND worker LIKE 'circuit:%';

-- Functions as a fresh install has them (sql/src/*.sql).

CREATE FUNCTION orchestrator._caller()
RETURNS regrole
AS 'MODULE_PATHNAME', 'orchestrator_caller_role'
LANGUAGE C STABLE PARALLEL RESTRICTED;

CREATE FUNCTION orchestrator._acts_as(role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_acts_as'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

CREATE FUNCTION orchestrator._is_admin()
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_is_admin'
LANGUAGE C STABLE PARALLEL RESTRICTED;

CREATE FUNCTION orchestrator._spec_timeout(wf text, what text, value jsonb)
RETURNS interval
LANGUAGE plpgsql
AS $$
DECLARE
	result interval := orchestrator._spec_interval(wf, what, value);
	max    interval := current_setting('orchestrator.max_step_timeout')::interval;
BEGIN
	IF result > max THEN
		PERFORM orchestrator._spec_error(wf, format('%s is %s, longer than orchestrator.max_step_timeout (%s)', what, value, max),
			'Split the work into shorter steps, or ask a superuser to raise orchestrator.max_step_timeout.');
	END IF;
	RETURN result;
END
$$;

CREATE FUNCTION orchestrator._validate_spec(wf text, spec jsonb)
RETURNS SETOF orchestrator.definition_steps
LANGUAGE plpgsql
AS $$
DECLARE
	s        jsonb;
	pos      integer := 0;
	sname    text;
	kind     text;
	what     text;
	names    text[] := '{}';
	deps     text[];
	d        text;
	r        jsonb;
	row      orchestrator.definition_steps;
	rows     orchestrator.definition_steps[] := '{}';
	remaining text[];
	progress boolean;
	n        integer;
	common   text[] := ARRAY['name', 'kind', 'depends_on', 'when', 'retry', 'timeout', 'compensate', 'description'];
BEGIN
	IF wf IS NULL OR wf !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid workflow name %', coalesce(quote_literal(wf), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A workflow name is 1 to 128 letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_".';
	END IF;
	IF spec IS NULL OR jsonb_typeof(spec) <> 'object' THEN
		PERFORM orchestrator._spec_error(wf, 'the spec must be a JSON object with a "steps" array');
	END IF;
	IF octet_length(spec::text) > 1048576 THEN
		PERFORM orchestrator._spec_error(wf, format('the spec is %s bytes; at most 1 MB is allowed', octet_length(spec::text)));
	END IF;
	PERFORM orchestrator._spec_keys(wf, 'the spec', spec, ARRAY['steps', 'result', 'description']);
	IF jsonb_typeof(spec -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(spec -> 'steps') = 0 THEN
		PERFORM orchestrator._spec_error(wf, '"steps" must be a non-empty array');
	END IF;
	IF jsonb_array_length(spec -> 'steps') > 1000 THEN
		PERFORM orchestrator._spec_error(wf, format('%s steps; at most 1000 are allowed', jsonb_array_length(spec -> 'steps')));
	END IF;
	IF spec ? 'result' THEN
		PERFORM orchestrator._spec_templates(wf, 'result', spec -> 'result');
	END IF;

	-- Names first, so that depends_on may name any step.
	FOR s IN SELECT value FROM jsonb_array_elements(spec -> 'steps') LOOP
		pos := pos + 1;
		IF jsonb_typeof(s) <> 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('step %s must be an object, not %s', pos, s));
		END IF;
		sname := s ->> 'name';
		IF jsonb_typeof(s -> 'name') IS DISTINCT FROM 'string' OR sname !~ '^[A-Za-z_][A-Za-z0-9_-]{0,62}$' THEN
			PERFORM orchestrator._spec_error(wf, format('step %s: "name" must be 1 to 63 letters, digits, "_" or "-", starting with a letter or "_", not %s', pos, coalesce(s -> 'name', 'null')));
		END IF;
		IF sname = ANY (names) THEN
			PERFORM orchestrator._spec_error(wf, format('step name "%s" is used twice', sname), 'Give every step a unique name.');
		END IF;
		names := names || sname;
	END LOOP;

	pos := 0;
	FOR s IN SELECT value FROM jsonb_array_elements(spec -> 'steps') LOOP
		sname := s ->> 'name';
		what := format('step "%s"', sname);
		kind := s ->> 'kind';
		IF kind IS NULL OR kind NOT IN ('sql', 'http', 'external', 'sleep', 'wait') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: unknown kind %s', what, coalesce(s -> 'kind', 'null')),
				'The kinds are sql, http, external, sleep and wait.');
		END IF;
		PERFORM orchestrator._spec_keys(wf, what, s, common || CASE kind
			WHEN 'sql' THEN ARRAY['sql', 'args']
			WHEN 'http' THEN ARRAY['request']
			WHEN 'external' THEN ARRAY['queue', 'input']
			WHEN 'sleep' THEN ARRAY['duration', 'until']
			WHEN 'wait' THEN ARRAY['signal'] END);

		deps := '{}';
		IF s ? 'depends_on' THEN
			IF jsonb_typeof(s -> 'depends_on') <> 'array' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "depends_on" must be an array of step names', what));
			END IF;
			FOR r IN SELECT value FROM jsonb_array_elements(s -> 'depends_on') LOOP
				d := r #>> '{}';
				IF jsonb_typeof(r) <> 'string' OR NOT d = ANY (names) THEN
					PERFORM orchestrator._spec_error(wf, format('%s: depends_on names unknown step %s', what, r),
						'depends_on lists names of other steps of the same definition.');
				END IF;
				IF d = sname THEN
					PERFORM orchestrator._spec_error(wf, format('%s depends on itself', what));
				END IF;
				IF d = ANY (deps) THEN
					PERFORM orchestrator._spec_error(wf, format('%s: depends_on lists "%s" twice', what, d));
				END IF;
				deps := deps || d;
			END LOOP;
		END IF;

		row := NULL;
		row.name := wf;
		row.step := sname;
		row.position := pos;
		row.kind := kind;
		row.depends_on := deps;
		row.dependents := '{}';
		row.spec := s;
		IF s ? 'when' THEN
			row.condition := orchestrator._spec_jsonpath(wf, what || '.when', s -> 'when');
		END IF;

		-- Retry policy (sleep and wait steps run once).
		r := coalesce(s -> 'retry', '{}');
		IF jsonb_typeof(r) <> 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "retry" must be an object', what));
		END IF;
		PERFORM orchestrator._spec_keys(wf, what || '.retry', r, ARRAY['max_attempts', 'backoff', 'multiplier', 'max_backoff', 'jitter']);
		IF r ? 'max_attempts' AND (jsonb_typeof(r -> 'max_attempts') <> 'number'
				OR (r ->> 'max_attempts')::numeric NOT BETWEEN 1 AND 100
				OR (r ->> 'max_attempts')::numeric <> trunc((r ->> 'max_attempts')::numeric)) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.max_attempts must be an integer from 1 to 100, not %s', what, r -> 'max_attempts'));
		END IF;
		IF r ? 'multiplier' AND (jsonb_typeof(r -> 'multiplier') <> 'number' OR (r ->> 'multiplier')::numeric NOT BETWEEN 1 AND 10) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.multiplier must be a number from 1 to 10, not %s', what, r -> 'multiplier'));
		END IF;
		IF r ? 'jitter' AND (jsonb_typeof(r -> 'jitter') <> 'number' OR (r ->> 'jitter')::numeric NOT BETWEEN 0 AND 1) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.jitter must be a number from 0 to 1, not %s', what, r -> 'jitter'));
		END IF;
		IF kind IN ('sleep', 'wait') AND s ? 'retry' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: %s steps are not retried; remove "retry"', what, kind));
		END IF;
		row.max_attempts := coalesce((r ->> 'max_attempts')::integer, CASE WHEN kind IN ('sleep', 'wait') THEN 1 ELSE 3 END);
		row.backoff := coalesce(orchestrator._spec_interval(wf, what || '.retry.backoff', r -> 'backoff', true), interval '1 second');
		row.multiplier := coalesce((r ->> 'multiplier')::float8, 2);
		row.max_backoff := coalesce(orchestrator._spec_interval(wf, what || '.retry.max_backoff', r -> 'max_backoff', true), interval '1 minute');
		row.jitter := coalesce((r ->> 'jitter')::float8, 0.2);
		row.timeout := CASE WHEN kind IN ('sleep', 'wait') THEN orchestrator._spec_interval(wf, what || '.timeout', s -> 'timeout')
						   ELSE orchestrator._spec_timeout(wf, what || '.timeout', s -> 'timeout') END;

		CASE kind
		WHEN 'sleep' THEN
			IF (s ? 'duration') = (s ? 'until') THEN
				PERFORM orchestrator._spec_error(wf, format('%s: a sleep step takes exactly one of "duration" or "until"', what));
			END IF;
			IF s ? 'duration' THEN
				PERFORM orchestrator._spec_interval(wf, what || '.duration', s -> 'duration');
			ELSIF jsonb_typeof(s -> 'until') = 'string' THEN
				BEGIN
					PERFORM (s ->> 'until')::timestamptz;
				EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
					PERFORM orchestrator._spec_error(wf, format('%s: "until" is not a timestamp: %s', what, s -> 'until'));
				END;
			ELSIF jsonb_typeof(s -> 'until') = 'object' AND s -> 'until' ? '$path' THEN
				PERFORM orchestrator._spec_templates(wf, what || '.until', s -> 'until');
			ELSE
				PERFORM orchestrator._spec_error(wf, format('%s: "until" must be a timestamp string or a {"$path": ...} template', what));
			END IF;
		WHEN 'wait' THEN
			IF jsonb_typeof(s -> 'signal') IS DISTINCT FROM 'string' OR (s ->> 'signal') !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "signal" must be a name of letters, digits, "_", ".", ":" or "-", not %s', what, coalesce(s -> 'signal', 'null')));
			END IF;
		ELSE
			PERFORM orchestrator._spec_action(wf, what, s, kind);
		END CASE;

		IF s ? 'compensate' THEN
			r := s -> 'compensate';
			IF jsonb_typeof(r) <> 'object' OR coalesce(r ->> 'kind', '') NOT IN ('sql', 'http', 'external') THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "compensate" must be an object of kind sql, http or external', what));
			END IF;
			PERFORM orchestrator._spec_keys(wf, what || '.compensate', r, ARRAY['kind', 'sql', 'args', 'request', 'queue', 'input', 'timeout']);
			PERFORM orchestrator._spec_action(wf, what || '.compensate', r, r ->> 'kind');
		END IF;

		rows := rows || row;
		pos := pos + 1;
	END LOOP;

	-- Dependents, and a cycle check (repeatedly remove steps whose
	-- dependencies are all removed; whatever remains is on a cycle).
	FOR i IN 1 .. array_length(rows, 1) LOOP
		rows[i].dependents := ARRAY(SELECT x.step FROM unnest(rows) x WHERE rows[i].step = ANY (x.depends_on) ORDER BY x.position);
	END LOOP;
	remaining := names;
	LOOP
		progress := false;
		FOR i IN 1 .. array_length(rows, 1) LOOP
			IF rows[i].step = ANY (remaining) AND NOT (rows[i].depends_on && remaining) THEN
				remaining := array_remove(remaining, rows[i].step);
				progress := true;
			END IF;
		END LOOP;
		EXIT WHEN NOT progress OR cardinality(remaining) = 0;
	END LOOP;
	IF cardinality(remaining) > 0 THEN
		PERFORM orchestrator._spec_error(wf, format('the dependencies form a cycle through steps %s', array_to_string(remaining, ', ')),
			'depends_on must describe a directed acyclic graph.');
	END IF;

	-- A step's compensation is a step of its own, "compensate:<step>" (a
	-- name no user step can take), outside the DAG: it runs only when the
	-- run fails after <step> succeeded (see _run_finish).
	n := cardinality(rows);
	FOR i IN 1 .. n LOOP
		CONTINUE WHEN NOT rows[i].spec ? 'compensate';
		r := rows[i].spec -> 'compensate';
		row := NULL;
		row.name := wf;
		row.step := 'compensate:' || rows[i].step;
		row.position := n + rows[i].position;
		row.kind := r ->> 'kind';
		row.depends_on := '{}';
		row.dependents := '{}';
		row.spec := r;
		row.max_attempts := 3;
		row.backoff := interval '1 second';
		row.multiplier := 2;
		row.max_backoff := interval '1 minute';
		row.jitter := 0.2;
		row.timeout := orchestrator._spec_timeout(wf, format('step "%s".compensate.timeout', rows[i].step), r -> 'timeout');
		row.compensates := rows[i].step;
		rows := rows || row;
	END LOOP;

	RETURN QUERY SELECT * FROM unnest(rows);
END
$$;

CREATE FUNCTION orchestrator._api_define_workflow(name text, spec jsonb)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	v      integer;
	owner  regrole;
	caller regrole := orchestrator._caller();
	steps  orchestrator.definition_steps[];
BEGIN
	steps := ARRAY(SELECT x FROM orchestrator._validate_spec(name, spec) x);
	-- Literal URLs of http steps must be allowed hosts (75_http.sql).
	PERFORM orchestrator._http_check_spec(name, steps);

	-- Serialise definitions of the same name so versions are gap-free.
	PERFORM pg_advisory_xact_lock(hashtext('orchestrator.define_workflow'), hashtext(name));
	-- A name belongs to the role that defined it first.  Only that role (or
	-- a role with its privileges) adds versions: a new version decides what
	-- the next runs execute, with the owner's rights.  Checked before
	-- anything else is looked at, so that others learn nothing of its
	-- versions.
	SELECT w.owner INTO owner FROM orchestrator.workflows w WHERE w.name = _api_define_workflow.name;
	IF NOT FOUND THEN
		INSERT INTO orchestrator.workflows (name, owner) VALUES (name, caller);
	ELSIF NOT orchestrator._acts_as(owner) THEN
		RAISE EXCEPTION 'workflow "%" belongs to another role', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only the role that first defined a workflow, and roles with its privileges, can add versions to it.',
				  HINT = 'Choose another name.';
	END IF;
	SELECT d.version INTO v FROM orchestrator.definitions d WHERE d.name = _api_define_workflow.name AND d.spec = _api_define_workflow.spec
		ORDER BY d.version DESC LIMIT 1;
	IF FOUND THEN
		RETURN v;
	END IF;
	SELECT coalesce(max(d.version), 0) + 1 INTO v FROM orchestrator.definitions d WHERE d.name = _api_define_workflow.name;
	INSERT INTO orchestrator.definitions (name, version, spec, created_by) VALUES (name, v, spec, caller);
	INSERT INTO orchestrator.definition_steps
		SELECT x.name, v, x.step, x.position, x.kind, x.depends_on, x.dependents, x.condition, x.spec,
			   x.max_attempts, x.backoff, x.multiplier, x.max_backoff, x.jitter, x.timeout, x.compensates
		FROM unnest(steps) x;
	RETURN v;
END
$$;

CREATE FUNCTION orchestrator._workflow_privilege_target(name text, role regrole, privilege text)
RETURNS regrole
LANGUAGE plpgsql
AS $$
DECLARE
	owner regrole;
BEGIN
	IF name IS NULL OR role IS NULL OR privilege IS NULL THEN
		RAISE EXCEPTION 'name, role and privilege must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF privilege NOT IN ('start', 'work') THEN
		RAISE EXCEPTION 'unknown workflow privilege "%"', privilege USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Workflow privileges are "start" (start runs and see them) and "work" (claim, heartbeat, complete and fail external steps).';
	END IF;
	SELECT w.owner INTO owner FROM orchestrator.workflows w WHERE w.name = _workflow_privilege_target.name FOR UPDATE;
	IF NOT FOUND OR NOT (orchestrator._acts_as(owner) OR orchestrator._is_admin()) THEN
		-- whether it exists is none of the caller's business
		RAISE EXCEPTION 'permission denied to grant privileges on workflow "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only the owner of a workflow (the role that defined it first) and members of orchestrator_admin grant and revoke its privileges.',
				  HINT = 'Check the name; define the workflow first if it does not exist.';
	END IF;
	RETURN owner;
END
$$;

CREATE FUNCTION orchestrator._api_grant_workflow(name text, role regrole, privilege text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	owner regrole := orchestrator._workflow_privilege_target(name, role, privilege);
BEGIN
	INSERT INTO orchestrator.workflow_grants (name, grantee, privilege, owner, granted_by)
		VALUES (name, role, privilege, owner, orchestrator._caller())
		ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION orchestrator._api_revoke_workflow(name text, role regrole, privilege text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	PERFORM orchestrator._workflow_privilege_target(name, role, privilege);
	DELETE FROM orchestrator.workflow_grants g
		WHERE g.name = _api_revoke_workflow.name AND g.grantee = role AND g.privilege = _api_revoke_workflow.privilege;
	RETURN FOUND;
END
$$;

CREATE FUNCTION orchestrator._may(name text, privilege text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT orchestrator._is_admin()
		OR EXISTS (SELECT 1 FROM orchestrator.workflows w WHERE w.name = _may.name AND orchestrator._acts_as(w.owner))
		OR EXISTS (SELECT 1 FROM orchestrator.workflow_grants g
				   WHERE g.name = _may.name AND g.privilege = _may.privilege AND orchestrator._acts_as(g.grantee))
$$;

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

CREATE FUNCTION orchestrator._visible_run(run_id uuid)
RETURNS orchestrator.workflow_runs
LANGUAGE plpgsql
AS $$
DECLARE
	r orchestrator.workflow_runs;
BEGIN
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

CREATE FUNCTION orchestrator._may_see(owner regrole, started_by regrole)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT orchestrator._acts_as(owner) OR orchestrator._acts_as(started_by) OR orchestrator._is_admin()
$$;

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
		PERFORM orchestrator._wake_at_commit();
	ELSIF available_at <= now() THEN
		PERFORM pg_notify('orchestrator_queue', queue);
	END IF;
END
$$;

CREATE FUNCTION orchestrator._api_start_workflow(name text, input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	v        integer;
	idem_key text;
	tenant   text;
	deadline timestamptz;
	prio     integer;
	new_id   uuid := orchestrator.uuid_v7();
	caller   regrole := orchestrator._caller();
	owner    regrole;
	existing uuid;
	r        orchestrator.workflow_runs;
	s        text;
	bad      text;
BEGIN
	options := coalesce(options, '{}');
	IF jsonb_typeof(options) <> 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', options),
			HINT = 'Known options: version, idempotency_key, tenant, deadline, priority.';
	END IF;
	SELECT k INTO bad FROM jsonb_object_keys(options) k
		WHERE k NOT IN ('version', 'idempotency_key', 'tenant', 'deadline', 'priority') ORDER BY k LIMIT 1;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'unknown option "%"', bad USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Known options: version, idempotency_key, tenant, deadline, priority.';
	END IF;
	IF input IS NULL THEN
		RAISE EXCEPTION 'input must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass ''{}'' for a workflow that takes no input.';
	END IF;

	IF options ? 'version' THEN
		IF jsonb_typeof(options -> 'version') <> 'number' OR (options ->> 'version') !~ '^[0-9]{1,9}$' THEN
			RAISE EXCEPTION 'option "version" must be a positive integer' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'version');
		END IF;
		v := (options ->> 'version')::integer;
		PERFORM 1 FROM orchestrator.definitions d WHERE d.name = _api_start_workflow.name AND d.version = v;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'workflow "%" has no version %', name, v USING ERRCODE = 'undefined_object',
				HINT = 'Omit "version" to start the latest version.';
		END IF;
	ELSE
		SELECT max(d.version) INTO v FROM orchestrator.definitions d WHERE d.name = _api_start_workflow.name;
		IF v IS NULL THEN
			RAISE EXCEPTION 'workflow "%" is not defined', name USING ERRCODE = 'undefined_object',
				HINT = 'Define it first with orchestrator.define_workflow(name, spec).';
		END IF;
	END IF;

	-- Its owner, roles granted "start", and admins start runs; the steps
	-- run with the owner's rights whoever starts them.
	SELECT w.owner INTO owner FROM orchestrator.workflows w WHERE w.name = _api_start_workflow.name;
	IF NOT orchestrator._may(name, 'start') THEN
		RAISE EXCEPTION 'permission denied to start workflow "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Runs of a workflow are started by its owner, by roles it was granted to with privilege "start", and by members of orchestrator_admin.',
				  HINT = format('The owner can run: SELECT orchestrator.grant_workflow(%L, %L);', name, caller);
	END IF;

	IF options ? 'idempotency_key' THEN
		IF jsonb_typeof(options -> 'idempotency_key') <> 'string' OR length(options ->> 'idempotency_key') NOT BETWEEN 1 AND 255 THEN
			RAISE EXCEPTION 'option "idempotency_key" must be a string of 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'idempotency_key');
		END IF;
		idem_key := options ->> 'idempotency_key';
	END IF;
	IF options ? 'tenant' THEN
		IF jsonb_typeof(options -> 'tenant') <> 'string' OR length(options ->> 'tenant') NOT BETWEEN 1 AND 255 THEN
			RAISE EXCEPTION 'option "tenant" must be a string of 1 to 255 characters' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'tenant');
		END IF;
		tenant := options ->> 'tenant';
	END IF;
	IF options ? 'priority' THEN
		IF jsonb_typeof(options -> 'priority') <> 'number' OR (options ->> 'priority') !~ '^-?[0-9]{1,4}$'
		   OR abs((options ->> 'priority')::integer) > 1000 THEN
			RAISE EXCEPTION 'option "priority" must be an integer from -1000 to 1000' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'priority');
		END IF;
		prio := (options ->> 'priority')::integer;
	END IF;
	IF options ? 'deadline' THEN
		BEGIN
			IF jsonb_typeof(options -> 'deadline') <> 'string' THEN
				RAISE invalid_datetime_format;
			END IF;
			BEGIN
				deadline := now() + (options ->> 'deadline')::interval;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
				deadline := (options ->> 'deadline')::timestamptz;
			END;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
			RAISE EXCEPTION 'option "deadline" must be an interval or a timestamp' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('Got %s.', options -> 'deadline'),
				HINT = 'For example "30 minutes" or "2030-01-01T00:00:00Z".';
		END;
		IF deadline <= now() THEN
			RAISE EXCEPTION 'option "deadline" is not in the future' USING ERRCODE = 'invalid_parameter_value',
				DETAIL = format('%s is at or before now (%s).', deadline, now());
		END IF;
	END IF;

	IF idem_key IS NOT NULL THEN
		INSERT INTO orchestrator.idempotency_keys (started_by, name, key, run_id)
			VALUES (caller, _api_start_workflow.name, idem_key, new_id)
			ON CONFLICT DO NOTHING;
		IF NOT FOUND THEN
			SELECT k.run_id INTO existing FROM orchestrator.idempotency_keys k
				WHERE k.started_by = caller AND k.name = _api_start_workflow.name AND k.key = idem_key;
			RETURN existing;
		END IF;
	END IF;

	INSERT INTO orchestrator.workflow_runs (id, name, version, tenant, owner, started_by, input, idempotency_key,
											priority, deadline)
		SELECT new_id, _api_start_workflow.name, v, tenant, owner, caller, input, idem_key,
			   coalesce(prio, 0), deadline
		RETURNING * INTO r;
	INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, deps_open)
		SELECT new_id, d.step, d.position, d.kind, cardinality(d.depends_on)
		FROM orchestrator.definition_steps d
		WHERE d.name = _api_start_workflow.name AND d.version = v AND d.compensates IS NULL;
	PERFORM orchestrator._emit(new_id, 'workflow.created', NULL,
		jsonb_strip_nulls(jsonb_build_object('name', name, 'version', v, 'tenant', tenant)));
	IF deadline IS NOT NULL THEN
		PERFORM orchestrator._enqueue(r, '@deadline', '@timer', deadline);
	END IF;
	FOR s IN SELECT d.step FROM orchestrator.definition_steps d
			 WHERE d.name = _api_start_workflow.name AND d.version = v AND cardinality(d.depends_on) = 0
			   AND d.compensates IS NULL
			 ORDER BY d.position LOOP
		SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = new_id;
		EXIT WHEN NOT orchestrator._is_active(r.status);
		PERFORM orchestrator._step_ready(r, s);
	END LOOP;
	RETURN new_id;
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
		'steps', (SELECT jsonb_object_agg(s.step, jsonb_build_object(
					'kind', s.kind, 'status', s.status, 'attempt', s.attempt, 'input', s.input,
					'result', s.result, 'error', s.error, 'started_at', s.started_at,
					'finished_at', s.finished_at))
				  FROM orchestrator.workflow_steps s WHERE s.run_id = r.id));
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
	PERFORM orchestrator._run_finish(r, 'cancelled',
		jsonb_strip_nulls(jsonb_build_object('reason', reason, 'by', orchestrator._caller())));
	RETURN true;
END
$$;

CREATE FUNCTION orchestrator._api_signal_workflow(run_id uuid, signal text, payload jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	r orchestrator.workflow_runs;
	s text;
BEGIN
	IF signal IS NULL OR signal !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid signal name %', coalesce(quote_literal(signal), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A signal name is 1 to 63 letters, digits, "_", ".", ":" or "-".';
	END IF;
	r := orchestrator._lock_run(run_id);
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN false;
	END IF;
	payload := coalesce(payload, 'null');
	INSERT INTO orchestrator.signals (run_id, id, name, payload, sent_by)
		VALUES (r.id, orchestrator.uuid_v7(), signal, payload, orchestrator._caller());
	PERFORM orchestrator._emit(r.id, 'signal.received', NULL, jsonb_build_object('signal', signal, 'payload', payload));
	FOR s IN SELECT x.step FROM orchestrator.workflow_steps x
			 JOIN orchestrator.definition_steps d ON d.name = r.name AND d.version = r.version AND d.step = x.step
			 WHERE x.run_id = r.id AND x.kind = 'wait' AND x.status = 'running' AND d.spec ->> 'signal' = signal
			 ORDER BY x.position LOOP
		-- Completing one wait step can finish the run; then stop.
		EXIT WHEN NOT orchestrator._is_active((SELECT w.status FROM orchestrator.workflow_runs w WHERE w.id = r.id));
		PERFORM orchestrator._step_succeeded(r.id, s, payload);
	END LOOP;
	RETURN true;
END
$$;

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

CREATE FUNCTION orchestrator._claim_external(queue text, worker text, max_steps integer, lease interval,
											 workflows text[])
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_claim_external';

CREATE FUNCTION orchestrator._workable_workflows()
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN orchestrator._is_admin() THEN NULL ELSE ARRAY(
		SELECT w.name FROM orchestrator.workflows w WHERE orchestrator._acts_as(w.owner)
		UNION
		SELECT g.name FROM orchestrator.workflow_grants g
		WHERE g.privilege = 'work' AND orchestrator._acts_as(g.grantee)) END
$$;

CREATE FUNCTION orchestrator._api_claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
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
	-- Only steps of workflows the caller may work; others' rows are not
	-- even locked.
	RETURN QUERY SELECT * FROM orchestrator._claim_external(_api_claim_steps.queue, _api_claim_steps.worker, max_steps, lease,
															  orchestrator._workable_workflows());
END
$$;

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
	IF NOT orchestrator._may(r.name, 'work') THEN
		RAISE EXCEPTION 'permission denied to work steps of workflow "%"', r.name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'External steps are worked by the owner of their workflow, by roles it was granted to with privilege "work", and by members of orchestrator_admin.',
				  HINT = format('The owner can run: SELECT orchestrator.grant_workflow(%L, ''<role>'', ''work'');', r.name);
	END IF;
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

CREATE FUNCTION orchestrator._api_heartbeat_step(run_id uuid, step text, lease_token uuid)
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
	UPDATE orchestrator.work_queue w SET available_at = now() + w.lease
		WHERE w.run_id = _api_heartbeat_step.run_id AND w.step = _api_heartbeat_step.step;
	RETURN true;
END
$$;

CREATE FUNCTION orchestrator._api_complete_step(run_id uuid, step text, lease_token uuid, result jsonb)
RETURNS boolean
LANGUAGE C
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'orchestrator_complete_step';

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

CREATE FUNCTION orchestrator._http_circuit_tag(owner regrole, host text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'circuit:' || owner::oid || ':' || host $$;

CREATE FUNCTION orchestrator._http_circuit_admit(owner regrole, host text, probe_lease interval)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c orchestrator.http_circuits;
BEGIN
	SELECT * INTO c FROM orchestrator.http_circuits h WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host;
	IF NOT FOUND OR c.state = 'closed' THEN
		RETURN NULL;
	END IF;
	IF c.retry_at > now() THEN
		-- open: wait for the cool-down; half open: for the probe (look again soon)
		RETURN CASE WHEN c.state = 'open' THEN c.retry_at
					ELSE least(c.retry_at, now() + interval '1 second') END;
	END IF;
	-- The cool-down is over (or a probe was lost): this request is the probe.
	PERFORM 1 FROM orchestrator.http_circuits h
		WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host
		  AND h.state <> 'closed' AND h.retry_at <= now()
		FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN now() + interval '1 second';
	END IF;
	UPDATE orchestrator.http_circuits h SET state = 'half_open', retry_at = now() + probe_lease, updated_at = now()
		WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host;
	RETURN NULL;
END
$$;

CREATE FUNCTION orchestrator._http_claim(max_items integer, worker text, recover boolean,
	OUT kind text, OUT run_id uuid, OUT step text, OUT id uuid, OUT token uuid, OUT method text,
	OUT url text, OUT headers text[], OUT body text, OUT timeout_ms integer, OUT sign_key bytea)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q      record;
	r      orchestrator.workflow_runs;
	req    jsonb;
	hdrs   jsonb;
	why    text;
	host   text;
	wait   timestamptz;
	tmo    interval;
	margin interval := interval '30 seconds';
	n      integer;
	taken  integer := 0;
	guard  boolean;
	keys   text[];
BEGIN
	IF recover THEN
		UPDATE orchestrator.work_queue w SET available_at = now()
			WHERE w.queue = '@http' AND w.lease_token IS NOT NULL AND w.available_at > now()
			  AND w.worker LIKE 'http:%'
			  AND w.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s
										 WHERE s.pid IS NOT NULL));
	END IF;

	-- Breakers are looked at only while one is not closed (usually never).
	guard := EXISTS (SELECT 1 FROM orchestrator.http_circuits c WHERE c.state <> 'closed');

	-- A lease left by a dispatcher that died or lost track is a lost
	-- attempt (see _claim).
	FOR q IN SELECT * FROM orchestrator._claim('@http', max_items) LOOP
		SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = q.run_id;
		SELECT s.input, ds.timeout INTO req, tmo
			FROM orchestrator.workflow_steps s
			JOIN orchestrator.definition_steps ds ON ds.name = r.name AND ds.version = r.version AND ds.step = s.step
			WHERE s.run_id = q.run_id AND s.step = q.step;
		tmo := coalesce(tmo, current_setting('orchestrator.default_step_timeout')::interval);

		why := CASE WHEN jsonb_typeof(req -> 'url') IS DISTINCT FROM 'string'
					THEN format('invalid: the rendered url is %s, not a string', coalesce(req -> 'url', 'null'))
					ELSE orchestrator._http_check_url(req ->> 'url') END;
		IF why IS NULL AND guard THEN
			host := orchestrator._http_url_host(req ->> 'url');
			wait := orchestrator._http_circuit_admit(r.owner, host, tmo + margin);
			IF wait IS NOT NULL THEN
				-- the host's circuit is open: wait without counting an attempt
				UPDATE orchestrator.work_queue w SET available_at = wait, worker = orchestrator._http_circuit_tag(r.owner, host)
					WHERE w.run_id = q.run_id AND w.step = q.step;
				CONTINUE;
			END IF;
		END IF;

		n := orchestrator._step_started(r, q.step, worker);
		IF why IS NOT NULL THEN
			-- never sent: not retryable
			PERFORM orchestrator._attempt_failed(q.run_id, q.step, jsonb_build_object(
				'message', substr(why, strpos(why, ':') + 2), 'url', req -> 'url'), false);
			CONTINUE;
		END IF;

		token := gen_random_uuid();
		UPDATE orchestrator.work_queue w
			SET lease_token = token, lease = tmo + margin, worker = _http_claim.worker,
				available_at = now() + tmo + margin
			WHERE w.run_id = q.run_id AND w.step = q.step;
		kind := 'step';
		run_id := q.run_id;
		step := q.step;
		id := NULL;
		method := coalesce(req ->> 'method', 'GET');
		url := req ->> 'url';
		hdrs := coalesce(req -> 'headers', '{}');
		IF hdrs = '{}' THEN
			headers := '{}';
			keys := '{}';
		ELSE
			headers := ARRAY(SELECT h.key || ': ' || coalesce(h.value #>> '{}', '') FROM jsonb_each(hdrs) h);
			keys := ARRAY(SELECT lower(k) FROM jsonb_object_keys(hdrs) k);
		END IF;
		-- the same key on every attempt, so receivers can de-duplicate
		IF NOT 'idempotency-key' = ANY (keys) THEN
			headers := headers || ('Idempotency-Key: ' || q.run_id || '/' || q.step);
		END IF;
		-- W3C trace context: the trace is the run, the span this attempt
		IF NOT 'traceparent' = ANY (keys) THEN
			headers := headers || ('traceparent: 00-' || replace(q.run_id::text, '-', '') || '-'
								   || left(md5(q.step || '/' || n), 16) || '-01');
		END IF;
		body := CASE WHEN req ? 'body' AND method NOT IN ('GET', 'HEAD') THEN (req -> 'body')::text END;
		timeout_ms := greatest(1, least(extract(epoch FROM tmo) * 1000, 2147483647))::integer;
		sign_key := NULL;
		RETURN NEXT;
		taken := taken + 1;
	END LOOP;

	IF taken < max_items THEN
		RETURN QUERY SELECT * FROM orchestrator._webhook_claim(max_items - taken, worker, recover);
	END IF;
END
$$;

CREATE FUNCTION orchestrator._http_step_record(run_id uuid, step text, token uuid, status integer,
	headers jsonb, body text, body_kind text, error_kind text, error text, elapsed_ms float8,
	OUT owner regrole, OUT host text, OUT failed boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r    orchestrator.workflow_runs;
	n    integer;
	req  jsonb;
	b    jsonb;
	err  jsonb;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _http_step_record.run_id FOR UPDATE;
	IF NOT FOUND OR NOT orchestrator._is_active(r.status) THEN
		RETURN;
	END IF;
	PERFORM 1 FROM orchestrator.work_queue q
		WHERE q.run_id = _http_step_record.run_id AND q.step = _http_step_record.step
		  AND q.lease_token = _http_step_record.token AND q.available_at > now()
		FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;					-- stale: lease expired or superseded
	END IF;
	SELECT s.attempt, s.input INTO n, req FROM orchestrator.workflow_steps s
		WHERE s.run_id = _http_step_record.run_id AND s.step = _http_step_record.step;
	PERFORM orchestrator._emit(run_id, 'step.http', step, jsonb_strip_nulls(jsonb_build_object(
		'attempt', n, 'status', status, 'elapsed_ms', round(elapsed_ms::numeric, 1),
		'error', error, 'error_kind', error_kind)));

	-- the breaker key, unless a success meets no breaker at all (the usual case)
	IF status IS NULL OR status >= 500 OR EXISTS (SELECT 1 FROM orchestrator.http_circuits) THEN
		host := orchestrator._http_url_host(req ->> 'url');
		owner := r.owner;
	END IF;
	IF status IS NULL THEN
		failed := error_kind IN ('network', 'timeout');
		IF NOT failed THEN
			host := NULL;
		END IF;
		PERFORM orchestrator._attempt_failed(run_id, step, jsonb_strip_nulls(jsonb_build_object(
			'message', error, 'kind', error_kind, 'url', req ->> 'url')), failed);
		RETURN;
	END IF;

	b := CASE body_kind WHEN 'json' THEN body::jsonb ELSE to_jsonb(body) END;
	IF status >= 400 THEN
		err := jsonb_build_object('message', format('HTTP %s from %s', status, req ->> 'url'), 'status', status);
		IF octet_length(body) <= 4096 THEN
			err := err || jsonb_build_object('body', b);
		END IF;
		IF status = 429 OR status >= 500 THEN
			PERFORM orchestrator._attempt_failed(run_id, step, err, true,
				orchestrator._retry_after(headers ->> 'retry-after'));
			failed := status >= 500;
			IF status = 429 THEN
				host := NULL;			-- rate limited, not down
			END IF;
		ELSE
			PERFORM orchestrator._attempt_failed(run_id, step, err, false);
			failed := false;
		END IF;
		RETURN;
	END IF;
	PERFORM orchestrator._step_succeeded(run_id, step, jsonb_build_object(
		'status', status, 'headers', headers, 'body', b)
		|| CASE WHEN body_kind = 'base64' THEN '{"body_encoding": "base64"}'::jsonb ELSE '{}' END);
	failed := false;
END
$$;

CREATE FUNCTION orchestrator._http_breakers(owners regrole[], hosts text[], failed boolean[], run_ids uuid[], steps text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	threshold integer := current_setting('orchestrator.http_breaker_threshold')::integer;
	cooldown  interval := current_setting('orchestrator.http_breaker_cooldown')::interval;
	o regrole;
	h text;
	i integer;
	c orchestrator.http_circuits;
BEGIN
	FOR o, h IN SELECT DISTINCT x.o, x.h FROM unnest(owners, hosts) x(o, h) WHERE x.h IS NOT NULL ORDER BY 1, 2 LOOP
		FOR i IN SELECT k FROM generate_subscripts(hosts, 1) k WHERE hosts[k] = h AND owners[k] = o ORDER BY k LOOP
			IF NOT failed[i] THEN
				-- the common case (closed, no failures) reads and writes nothing more
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h;
				CONTINUE WHEN NOT FOUND OR (c.state = 'closed' AND c.failures = 0);
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h FOR UPDATE;
				UPDATE orchestrator.http_circuits x SET state = 'closed', failures = 0, retry_at = NULL, updated_at = now()
					WHERE x.owner = o AND x.host = h;
				IF c.state <> 'closed' THEN
					PERFORM orchestrator._emit(run_ids[i], 'circuit.closed', steps[i],
						jsonb_build_object('host', h, 'failures', c.failures, 'opened_at', c.opened_at));
					-- steps that waited for this host may go now
					UPDATE orchestrator.work_queue w SET available_at = now(), worker = NULL
						WHERE w.queue = '@http' AND w.lease_token IS NULL AND w.worker = orchestrator._http_circuit_tag(o, h);
					PERFORM orchestrator._wake_at_commit();
				END IF;
			ELSIF threshold > 0 THEN
				INSERT INTO orchestrator.http_circuits AS x (owner, host) VALUES (o, h) ON CONFLICT (owner, host) DO NOTHING;
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h FOR UPDATE;
				IF c.state = 'half_open' OR (c.state = 'closed' AND c.failures + 1 >= threshold) THEN
					UPDATE orchestrator.http_circuits x
						SET state = 'open', failures = c.failures + 1, opened_at = now(),
							retry_at = now() + cooldown, updated_at = now()
						WHERE x.owner = o AND x.host = h;
					PERFORM orchestrator._emit(run_ids[i], 'circuit.opened', steps[i],
						jsonb_build_object('host', h, 'failures', c.failures + 1, 'retry_at', now() + cooldown));
				ELSE
					UPDATE orchestrator.http_circuits x SET failures = c.failures + 1, updated_at = now()
						WHERE x.owner = o AND x.host = h;
				END IF;
			END IF;
		END LOOP;
	END LOOP;
END
$$;

CREATE FUNCTION orchestrator._http_record_items(guarded boolean, kinds text[], run_ids uuid[], steps text[], ids uuid[],
	tokens uuid[], statuses integer[], headers text[], bodies text[], body_kinds text[],
	error_kinds text[], errors text[], elapsed float8[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o      regrole;
	h      text;
	f      boolean;
	owners regrole[] := '{}';
	hosts  text[] := '{}';
	failed boolean[] := '{}';
	b_runs uuid[] := '{}';
	b_steps text[] := '{}';
	msg    text;
	state  text;
BEGIN
	FOR i IN 1 .. coalesce(cardinality(kinds), 0) LOOP
		IF kinds[i] = 'webhook' THEN
			IF NOT guarded THEN
				PERFORM orchestrator._webhook_record(ids[i], tokens[i], statuses[i], headers[i]::jsonb,
					error_kinds[i], errors[i], elapsed[i]);
			ELSE
				BEGIN
					PERFORM orchestrator._webhook_record(ids[i], tokens[i], statuses[i], headers[i]::jsonb,
						error_kinds[i], errors[i], elapsed[i]);
				EXCEPTION WHEN others THEN
					GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
					-- its lease expires and the delivery is tried again
					RAISE WARNING 'orchestrator: recording webhook delivery % failed: %', ids[i], msg;
				END;
			END IF;
			CONTINUE;
		END IF;
		IF NOT guarded THEN
			SELECT x.owner, x.host, x.failed INTO o, h, f FROM orchestrator._http_step_record(run_ids[i], steps[i], tokens[i], statuses[i],
				headers[i]::jsonb, bodies[i], body_kinds[i], error_kinds[i], errors[i], elapsed[i]) x;
		ELSE
			BEGIN
				SELECT x.owner, x.host, x.failed INTO o, h, f FROM orchestrator._http_step_record(run_ids[i], steps[i], tokens[i], statuses[i],
					headers[i]::jsonb, bodies[i], body_kinds[i], error_kinds[i], errors[i], elapsed[i]) x;
			EXCEPTION WHEN others THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
				RAISE WARNING 'orchestrator: recording the response of step "%" of run % failed: %', steps[i], run_ids[i], msg;
				h := NULL;
				BEGIN
					IF EXISTS (SELECT 1 FROM orchestrator.work_queue q
							   WHERE q.run_id = run_ids[i] AND q.step = steps[i] AND q.lease_token = tokens[i]) THEN
						PERFORM orchestrator._attempt_failed(run_ids[i], steps[i],
							jsonb_build_object('message', msg, 'sqlstate', state, 'internal', true), false);
					END IF;
				EXCEPTION WHEN others THEN
					NULL;			-- its lease expires and the attempt is retried
				END;
			END;
		END IF;
		IF h IS NOT NULL THEN
			owners := owners || o;
			hosts := hosts || h;
			failed := failed || f;
			b_runs := b_runs || run_ids[i];
			b_steps := b_steps || steps[i];
		END IF;
	END LOOP;
	IF cardinality(hosts) > 0 THEN
		IF NOT guarded THEN
			PERFORM orchestrator._http_breakers(owners, hosts, failed, b_runs, b_steps);
		ELSE
			BEGIN
				PERFORM orchestrator._http_breakers(owners, hosts, failed, b_runs, b_steps);
			EXCEPTION WHEN others THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
				RAISE WARNING 'orchestrator: updating circuit breakers failed: %', msg;
			END;
		END IF;
	END IF;
END
$$;

CREATE FUNCTION orchestrator._api_rebuild_stats(from_day date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF from_day IS NULL THEN
		DELETE FROM orchestrator.run_stats_watermark;
		DELETE FROM orchestrator.run_stats_daily;
		DELETE FROM orchestrator.step_error_stats_daily;
		DELETE FROM orchestrator.throughput_stats;
		DELETE FROM orchestrator.step_duration_stats_daily;
	ELSE
		UPDATE orchestrator.run_stats_watermark w SET day = least(w.day, from_day - 1);
		DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day >= from_day;
	END IF;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

CREATE FUNCTION orchestrator._api_maintain(max_runs integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
SET jit = off
AS $$
DECLARE
	retention  interval := current_setting('orchestrator.retention')::interval;
	mode       text := current_setting('orchestrator.archive_mode');
	ahead      integer := current_setting('orchestrator.partitions_ahead')::integer;
	cutoff     timestamptz := now() - retention;
	today      date := (now() AT TIME ZONE 'UTC')::date;
	created    integer;
	day        date;
	lo         uuid;
	hi         uuid;
	total      bigint;
	live       bigint;
	unexpired  bigint;
	last_done  timestamptz;
	retire     jsonb := '[]';
	kept       jsonb := '[]';
	retired    jsonb := '[]';
	skipped    jsonb := '[]';
	retire_days date[] := '{}';
	deleted    bigint := 0;
	batch      record;
	more       boolean;
	item       jsonb;
	tbl        text;
	part       text;
	watermark  date;
	open_runs  boolean;
	touched    date[] := '{}';
	rolled     date[] := '{}';
	rerolled   date[] := '{}';
BEGIN
	IF max_runs IS NULL OR max_runs < 1 THEN
		RAISE EXCEPTION 'max_runs must be a positive integer' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(max_runs::text, 'NULL')),
			HINT = 'It bounds how many expired runs one call deletes row by row; the default is 10000.';
	END IF;
	-- One maintain() at a time; a concurrent call reports and returns.
	IF NOT pg_try_advisory_xact_lock(hashtext('orchestrator.maintain')) THEN
		RETURN jsonb_build_object('skipped', true, 'reason', 'another maintain() is running');
	END IF;

	created := orchestrator._create_partitions(today, ahead + 1);

	-- Partitions of days that ended before the cutoff: retire a day whole when
	-- every run in it finished before the cutoff; otherwise keep it (its live
	-- runs stay reachable) and delete its expired runs row by row below.
	FOR day IN SELECT to_date(substr(c.relname, length('workflow_runs_p') + 1), 'YYYYMMDD')
			   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
			   WHERE i.inhparent = 'orchestrator.workflow_runs'::regclass
				 AND c.relname ~ '^workflow_runs_p[0-9]{8}$'
			   ORDER BY 1 LOOP
		EXIT WHEN (day + 1)::timestamp AT TIME ZONE 'UTC' > least(cutoff, now() - interval '1 minute');
		part := format('orchestrator.workflow_runs_p%s', to_char(day, 'YYYYMMDD'));
		EXECUTE format('SELECT count(*), count(*) FILTER (WHERE finished_at IS NULL),
							   count(*) FILTER (WHERE finished_at >= $1), max(finished_at) FROM %s', part)
			INTO total, live, unexpired, last_done USING cutoff;
		IF live = 0 AND unexpired = 0 THEN
			retire := retire || jsonb_build_object('day', day, 'runs', total, 'last_finished_at', last_done);
			retire_days := retire_days || day;
		ELSE
			kept := kept || jsonb_build_object('day', day, 'runs', total, 'unfinished_runs', live,
											   'unexpired_runs', unexpired);
		END IF;
	END LOOP;

	-- Row by row: expired runs outside the partitions retired whole, oldest
	-- completion first, at most max_runs per call.
	FOR batch IN
		SELECT d.day, array_agg(d.id) AS ids
		FROM (SELECT w.id, (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date AS day
			  FROM orchestrator.workflow_runs w
			  WHERE w.finished_at < cutoff
				AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days)
			  ORDER BY w.finished_at, w.id
			  LIMIT max_runs) d
		GROUP BY d.day ORDER BY d.day
	LOOP
		deleted := deleted + orchestrator._delete_runs(batch.day, batch.ids);
		touched := touched || batch.day;
	END LOOP;
	more := EXISTS (
		SELECT 1 FROM orchestrator.workflow_runs w WHERE w.finished_at < cutoff
		  AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days));

	-- Roll-ups: days already rolled up that lost runs above are aggregated
	-- again; then up to 7 closed days after the watermark are added, oldest
	-- first, stopping at the first day that holds an unfinished run, and at
	-- days that ended less than an hour ago (a transaction that made its run
	-- id before midnight may not have committed yet).
	SELECT w.day INTO watermark FROM orchestrator.run_stats_watermark w FOR UPDATE;
	FOREACH day IN ARRAY touched LOOP
		IF day <= watermark THEN
			PERFORM orchestrator._roll_up_day(day);
			rerolled := rerolled || day;
		END IF;
	END LOOP;
	IF watermark IS NULL THEN
		SELECT min(to_date(substr(c.relname, length('workflow_runs_p') + 1), 'YYYYMMDD')) - 1 INTO watermark
		FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'orchestrator.workflow_runs'::regclass AND c.relname ~ '^workflow_runs_p[0-9]{8}$';
		watermark := coalesce(watermark, today - 1);
	END IF;
	FOR i IN 1 .. 7 LOOP
		day := watermark + 1;
		EXIT WHEN (day + 1)::timestamp AT TIME ZONE 'UTC' > now() - interval '1 hour';
		part := format('orchestrator.workflow_runs_p%s', to_char(day, 'YYYYMMDD'));
		IF to_regclass(part) IS NOT NULL THEN
			EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE finished_at IS NULL)', part) INTO open_runs;
			EXIT WHEN open_runs;
			PERFORM orchestrator._roll_up_day(day);
			rolled := rolled || day;
		END IF;
		watermark := day;
	END LOOP;
	INSERT INTO orchestrator.run_stats_watermark (day) VALUES (watermark)
		ON CONFLICT (singleton) DO UPDATE SET day = excluded.day;

	-- Whole partitions last, so the exclusive locks they take on the parent
	-- tables are held only until the commit that follows.  A day whose
	-- partitions cannot be locked in time is left for the next call.
	IF mode = 'detach' AND cardinality(retire_days) > 0 AND to_regnamespace('orchestrator_archive') IS NULL THEN
		CREATE SCHEMA orchestrator_archive;
		COMMENT ON SCHEMA orchestrator_archive IS 'history partitions detached by orchestrator.maintain()';
		REVOKE ALL ON SCHEMA orchestrator_archive FROM PUBLIC;
		GRANT USAGE ON SCHEMA orchestrator_archive TO orchestrator_admin;
	END IF;
	FOR item IN SELECT x FROM jsonb_array_elements(retire) x ORDER BY x ->> 'last_finished_at' NULLS FIRST, x ->> 'day' LOOP
		day := (item ->> 'day')::date;
		lo := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
		hi := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
		BEGIN
			LOCK TABLE orchestrator.workflow_runs, orchestrator.workflow_steps, orchestrator.workflow_events
				IN ACCESS EXCLUSIVE MODE;
			DELETE FROM orchestrator.signals s WHERE s.run_id >= lo AND s.run_id < hi;
			DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id >= lo AND k.run_id < hi;
			DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id >= lo AND o.run_id < hi;
			DELETE FROM orchestrator.run_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_error_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.throughput_stats x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_duration_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			FOREACH tbl IN ARRAY ARRAY['workflow_events', 'workflow_steps', 'workflow_runs'] LOOP
				part := format('%s_p%s', tbl, to_char(day, 'YYYYMMDD'));
				CONTINUE WHEN to_regclass(format('orchestrator.%I', part)) IS NULL;
				IF mode = 'detach' THEN
					EXECUTE format('ALTER TABLE orchestrator.%I DETACH PARTITION orchestrator.%I', tbl, part);
					EXECUTE format('ALTER TABLE orchestrator.%I SET SCHEMA orchestrator_archive', part);
					EXECUTE format('GRANT SELECT ON orchestrator_archive.%I TO orchestrator_admin', part);
				ELSE
					EXECUTE format('DROP TABLE orchestrator.%I', part);
				END IF;
			END LOOP;
			retired := retired || (item || jsonb_build_object('action', CASE mode WHEN 'detach' THEN 'detached' ELSE 'dropped' END));
		EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
			skipped := skipped || jsonb_build_object('day', day, 'reason', SQLERRM);
		END;
	END LOOP;

	RETURN jsonb_build_object(
		'retention', retention,
		'archive_mode', mode,
		'cutoff', cutoff,
		'partitions_created', created,
		'partitions_ahead', orchestrator._partitions_ahead(),
		'partitions_retired', retired,
		'partitions_kept', kept,
		'partitions_skipped', skipped,
		'runs_deleted', deleted,
		'more', more,
		'stats_days_rolled_up', to_jsonb(rolled),
		'stats_days_rebuilt', to_jsonb(rerolled),
		'stats_watermark', watermark);
END
$$;

CREATE FUNCTION orchestrator._api_schedule_maintenance(schedule text DEFAULT '*/10 * * * *')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint;
BEGIN
	IF schedule IS NULL OR btrim(schedule) = '' THEN
		RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use a cron expression such as ''*/10 * * * *''.';
	END IF;
	IF to_regprocedure('cron.schedule(text, text, text)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('cron.database_name is %s.', coalesce(current_setting('cron.database_name', true), 'not set')),
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron; '
						 'or schedule "SELECT orchestrator.maintain()" with cron.schedule_in_database() from the pg_cron database.';
	END IF;
	BEGIN
		EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
			USING 'orchestrator-maintenance:' || current_database(), schedule, 'SELECT orchestrator.maintain()';
	EXCEPTION WHEN invalid_parameter_value OR internal_error OR invalid_text_representation OR data_exception THEN
		RAISE EXCEPTION 'invalid schedule %', quote_literal(schedule) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = SQLERRM,
			HINT = 'Use a cron expression of five fields, such as ''*/10 * * * *'' (every ten minutes).';
	END;
	RETURN job;
END
$$;

CREATE FUNCTION orchestrator._api_unschedule_maintenance()
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_job boolean;
BEGIN
	IF to_regprocedure('cron.unschedule(name)') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND username = current_user)'
		INTO found_job USING 'orchestrator-maintenance:' || current_database();
	IF NOT found_job THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT cron.unschedule($1::name)' INTO found_job USING 'orchestrator-maintenance:' || current_database();
	RETURN found_job;
END
$$;

CREATE FUNCTION orchestrator._api_health()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
	configured integer := current_setting('orchestrator.workers')::integer;
	alive      integer;
	last_turn  timestamptz;
	queues     jsonb;
	depth      bigint;
	oldest     double precision;
	ahead      integer := orchestrator._partitions_ahead();
	active     bigint;
	breakers   jsonb;
	problems   text[] := '{}';
BEGIN
	SELECT count(*), max(w.last_active) INTO alive, last_turn
	FROM orchestrator._worker_status() w
	WHERE w.pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.pid);
	SELECT coalesce(jsonb_agg(jsonb_build_object('queue', s.queue, 'ready', s.ready, 'scheduled', s.scheduled,
					'running', s.running, 'oldest_ready_age_seconds', round(s.oldest_ready_age_seconds::numeric, 3))
				ORDER BY s.queue), '[]'),
		   coalesce(sum(s.ready), 0), coalesce(max(s.oldest_ready_age_seconds), 0)
	INTO queues, depth, oldest
	FROM orchestrator._queue_stats() s;
	SELECT count(*) INTO active FROM orchestrator.workflow_runs r WHERE r.finished_at IS NULL;
	SELECT coalesce(jsonb_agg(jsonb_build_object('owner', c.owner, 'host', c.host, 'state', c.state, 'failures', c.failures,
				'opened_at', c.opened_at, 'retry_at', c.retry_at) ORDER BY c.host, c.owner::text), '[]')
	INTO breakers
	FROM orchestrator.http_circuits c WHERE c.state <> 'closed';

	IF alive < configured THEN
		problems := problems || format('%s of %s dispatchers running', alive, configured);
	END IF;
	IF ahead < 1 THEN
		problems := problems || 'no partition for tomorrow: run orchestrator.maintain()';
	END IF;
	RETURN jsonb_build_object(
		'status', CASE WHEN cardinality(problems) = 0 THEN 'ok' ELSE 'degraded' END,
		'problems', to_jsonb(problems),
		'workers', jsonb_build_object('configured', configured, 'alive', alive, 'last_active', last_turn),
		'active_runs', active,
		'queue_depth', depth,
		'oldest_ready_age_seconds', round(oldest::numeric, 3),
		'queues', queues,
		'partitions_ahead', ahead,
		-- Open and half-open per-host breakers of http steps and webhooks.
		'open_circuit_breakers', breakers);
END
$$;

CREATE FUNCTION orchestrator._api_metrics()
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
	out text := '';
	h   jsonb := orchestrator._api_health();
	q   record;
	w   record;
	r   record;
BEGIN
	out := out || E'# HELP orchestrator_up 1 when health() reports no problem.\n# TYPE orchestrator_up gauge\n'
		|| format(E'orchestrator_up %s\n', CASE h ->> 'status' WHEN 'ok' THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_workers_configured Dispatchers configured (orchestrator.workers).\n# TYPE orchestrator_workers_configured gauge\n'
		|| format(E'orchestrator_workers_configured %s\n', h -> 'workers' ->> 'configured');
	out := out || E'# HELP orchestrator_workers_alive Dispatchers running.\n# TYPE orchestrator_workers_alive gauge\n'
		|| format(E'orchestrator_workers_alive %s\n', h -> 'workers' ->> 'alive');
	out := out || E'# HELP orchestrator_worker_steps_total Steps handled by a dispatcher since it started.\n# TYPE orchestrator_worker_steps_total counter\n';
	FOR w IN SELECT s.slot, s.steps_processed FROM orchestrator._worker_status() s ORDER BY s.slot LOOP
		out := out || format(E'orchestrator_worker_steps_total{slot="%s"} %s\n', w.slot, w.steps_processed);
	END LOOP;
	out := out || E'# HELP orchestrator_active_runs Runs not finished (pending, running).\n# TYPE orchestrator_active_runs gauge\n'
		|| format(E'orchestrator_active_runs %s\n', h ->> 'active_runs');
	out := out || E'# HELP orchestrator_queue_ready Steps ready to be claimed, per queue.\n# TYPE orchestrator_queue_ready gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_ready{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.ready);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_scheduled Steps waiting for a retry or timer, per queue.\n# TYPE orchestrator_queue_scheduled gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_scheduled{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.scheduled);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_running Steps claimed under a lease, per queue.\n# TYPE orchestrator_queue_running gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_running{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.running);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_oldest_ready_age_seconds Age of the oldest ready step, per queue.\n# TYPE orchestrator_queue_oldest_ready_age_seconds gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_oldest_ready_age_seconds{queue="%s"} %s\n',
			orchestrator._prom_label(q.queue), round(q.oldest_ready_age_seconds::numeric, 3));
	END LOOP;
	out := out || E'# HELP orchestrator_runs_finished_5m Runs finished in the last 5 minutes, per workflow and status.\n# TYPE orchestrator_runs_finished_5m gauge\n';
	FOR r IN SELECT x.name, x.status, count(*) AS n FROM orchestrator.workflow_runs x
			 WHERE x.finished_at >= now() - interval '5 minutes'
			 GROUP BY x.name, x.status ORDER BY x.name, x.status LOOP
		out := out || format(E'orchestrator_runs_finished_5m{workflow="%s",status="%s"} %s\n',
			orchestrator._prom_label(r.name), orchestrator._prom_label(r.status), r.n);
	END LOOP;
	out := out || E'# HELP orchestrator_http_circuit_open 1 for a workflow owner and host whose circuit breaker is open or half open.\n# TYPE orchestrator_http_circuit_open gauge\n';
	FOR r IN SELECT c.owner::text AS owner, c.host, c.state FROM orchestrator.http_circuits c
			 WHERE c.state <> 'closed' ORDER BY c.host, 1 LOOP
		out := out || format(E'orchestrator_http_circuit_open{owner="%s",host="%s",state="%s"} 1\n',
			orchestrator._prom_label(r.owner), orchestrator._prom_label(r.host), r.state);
	END LOOP;
	out := out || E'# HELP orchestrator_webhook_deliveries_pending Webhook deliveries not yet delivered or dead.\n# TYPE orchestrator_webhook_deliveries_pending gauge\n'
		|| format(E'orchestrator_webhook_deliveries_pending %s\n',
			(SELECT count(*) FROM orchestrator.webhook_outbox o WHERE o.status IN ('pending', 'delivering')));
	out := out || E'# HELP orchestrator_partitions_ahead Days after today with history partitions.\n# TYPE orchestrator_partitions_ahead gauge\n'
		|| format(E'orchestrator_partitions_ahead %s\n', h ->> 'partitions_ahead');
	RETURN out;
END
$$;

CREATE FUNCTION orchestrator.define_workflow(name text, spec jsonb)
RETURNS integer
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.define_workflow(text, jsonb) IS
'validate and store a new version of a workflow definition; an identical spec returns the existing version';

CREATE FUNCTION orchestrator.grant_workflow(name text, role regrole, privilege text DEFAULT 'start')
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.grant_workflow(text, regrole, text) IS
'let a role start runs of a workflow (privilege start) or work its external steps (work); by its owner or an admin';

CREATE FUNCTION orchestrator.revoke_workflow(name text, role regrole, privilege text DEFAULT 'start')
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.revoke_workflow(text, regrole, text) IS
'take back a privilege granted with grant_workflow; false when it was not granted';

CREATE FUNCTION orchestrator.start_workflow(name text, input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.start_workflow(text, jsonb, jsonb) IS
'start a run of the latest (or the given) version of a workflow; returns the run id';

CREATE FUNCTION orchestrator.get_workflow(run_id uuid)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.get_workflow(uuid) IS
'a run and its steps as one JSON document';

CREATE FUNCTION orchestrator.workflow_result(run_id uuid)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.workflow_result(uuid) IS
'the result of a succeeded run, else NULL';

CREATE FUNCTION orchestrator.cancel_workflow(run_id uuid, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.cancel_workflow(uuid, text) IS
'cancel a pending or running run; false when it had already finished';

CREATE FUNCTION orchestrator.signal_workflow(run_id uuid, signal text, payload jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.signal_workflow(uuid, text, jsonb) IS
'send a named signal to a run: completes its wait steps on that signal, now or when they start; false when the run has finished';

CREATE FUNCTION orchestrator.events(run_id uuid, after_seq bigint DEFAULT 0)
RETURNS TABLE (seq bigint, at timestamptz, type text, step text, data jsonb)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.events(uuid, bigint) IS
'a run''s events after sequence number after_seq, in order: how a client catches up after a disconnect';

CREATE FUNCTION orchestrator.claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
										 lease interval DEFAULT NULL)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.claim_steps(text, text, integer, interval) IS
'claim up to max_steps ready steps of a queue (highest priority, then oldest) with a lease; deadline is when the lease or the run''s deadline expires';

CREATE FUNCTION orchestrator.heartbeat_step(run_id uuid, step text, lease_token uuid)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.heartbeat_step(uuid, text, uuid) IS
'extend a claimed step''s lease by its length; false when the lease is lost or the run has finished: stop working';

CREATE FUNCTION orchestrator.complete_step(run_id uuid, step text, lease_token uuid, result jsonb)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.complete_step(uuid, text, uuid, jsonb) IS
'record the result of a claimed step; false (and nothing changed) when the lease is stale';

CREATE FUNCTION orchestrator.complete_steps(run_ids uuid[], steps text[], lease_tokens uuid[], results jsonb[])
RETURNS TABLE (run_id uuid, step text, completed boolean)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]) IS
'complete_step() for each position of the arrays, in one call; completed is false where the lease was stale';

CREATE FUNCTION orchestrator.fail_step(run_id uuid, step text, lease_token uuid, error jsonb,
									   retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.fail_step(uuid, text, uuid, jsonb, boolean) IS
'report a failed attempt of a claimed step: retried with backoff while attempts remain and retryable, else the step is dead (or failed) and the run fails';

CREATE FUNCTION orchestrator.rebuild_stats(from_day date DEFAULT NULL)
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.rebuild_stats(date) IS
'forget the daily roll-ups from a day on (all when NULL); maintain() aggregates those days again';

CREATE FUNCTION orchestrator.maintain(max_runs integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.maintain(integer) IS
'create partitions ahead, retire runs that finished longer than orchestrator.retention ago (whole days detached or dropped, the rest row by row, oldest completion first); returns a report';

CREATE FUNCTION orchestrator.schedule_maintenance(schedule text DEFAULT '*/10 * * * *')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.schedule_maintenance(text) IS
'schedule orchestrator.maintain() with pg_cron; returns the pg_cron job id';

CREATE FUNCTION orchestrator.unschedule_maintenance()
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.unschedule_maintenance() IS
'remove the pg_cron job of schedule_maintenance(); false when there was none';

CREATE FUNCTION orchestrator.health()
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.health() IS
'workers alive, queue depth and oldest ready age per queue, active runs, partitions ahead, open circuit breakers';

CREATE FUNCTION orchestrator.metrics()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.metrics() IS
'health and queue metrics in the Prometheus text exposition format (version 0.0.4)';

-- Views as a fresh install has them.

CREATE VIEW orchestrator.runs WITH (security_barrier) AS
	SELECT r.id, r.name, r.version, r.status, r.tenant, r.owner, r.started_by, r.idempotency_key, r.priority,
		   r.deadline, r.parent_id, r.created_at, r.started_at, r.finished_at, r.cost, r.input,
		   r.result, r.error
	FROM orchestrator.workflow_runs r
	WHERE orchestrator._may_see(r.owner, r.started_by);

CREATE VIEW orchestrator.run_steps WITH (security_barrier) AS
	SELECT s.run_id, r.name AS workflow, r.version, r.tenant, s.step, s.position, s.kind, s.status,
		   s.attempt, s.input, s.result, s.error, s.worker, s.ready_at, s.started_at, s.finished_at,
		   s.finished_at - s.started_at AS duration
	FROM orchestrator.workflow_steps s
	JOIN orchestrator.workflow_runs r ON r.id = s.run_id
	WHERE orchestrator._may_see(r.owner, r.started_by);

CREATE VIEW orchestrator.circuit_breakers WITH (security_barrier) AS
	SELECT c.owner, c.host, c.state, c.failures, c.opened_at,
		   CASE WHEN c.state <> 'closed' THEN c.retry_at END AS retry_at,
		   c.last_error, c.updated_at
	FROM orchestrator.http_circuits c
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(c.owner);
COMMENT ON VIEW orchestrator.circuit_breakers IS
'circuit breaker state per workflow owner and host:port (hosts that never failed are closed and not listed)';

CREATE VIEW orchestrator.webhook_deliveries AS
	SELECT o.id, o.webhook_id, w.url, o.run_id, o.seq, o.type, o.status, o.attempt AS attempts,
		   CASE WHEN o.status IN ('pending', 'delivering') THEN o.available_at END AS next_attempt_at,
		   o.last_status, o.last_error, o.last_attempt_at, o.created_at, o.delivered_at, o.payload
	FROM orchestrator.webhook_outbox o
	LEFT JOIN orchestrator.webhooks w ON w.id = o.webhook_id;
COMMENT ON VIEW orchestrator.webhook_deliveries IS 'webhook deliveries: one row per event and subscription';

CREATE VIEW orchestrator._run_stats AS
	SELECT s.day::timestamp AT TIME ZONE 'UTC' AS day, s.owner, s.workflow, s.tenant, s.status,
		   s.runs, s.finished, s.seconds, s.cost
	FROM orchestrator.run_stats_daily s
	UNION ALL
	SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant, r.status,
		   1::bigint, (r.finished_at IS NOT NULL)::integer::bigint,
		   coalesce(extract(epoch FROM r.finished_at - r.created_at), 0)::double precision, r.cost
	FROM orchestrator.workflow_runs r
	WHERE r.id >= (SELECT orchestrator._stats_live_from());

CREATE VIEW orchestrator.runs_per_day WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant, x.status,
		   sum(x.runs)::bigint AS runs,
		   sum(x.cost)::numeric(20,4) AS cost,
		   (sum(x.seconds) / nullif(sum(x.finished), 0))::double precision AS avg_seconds
	FROM orchestrator._run_stats x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.runs_per_day IS 'runs per UTC day of creation, workflow, tenant and status';

CREATE VIEW orchestrator.step_durations WITH (security_barrier) AS
	SELECT d.partition_day::timestamp AT TIME ZONE 'UTC' AS day, d.workflow, d.step, d.kind, d.samples,
		   d.p50, d.p95, d.p99, d.max
	FROM orchestrator.step_duration_stats_daily d
	WHERE CASE WHEN (SELECT orchestrator._is_admin()) THEN d.owner IS NULL
			   ELSE orchestrator._acts_as(d.owner) END
	UNION ALL
	SELECT date_trunc('day', orchestrator.uuid_v7_time(r.id) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
		   r.name, s.step, s.kind,
		   count(*),
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   max(extract(epoch FROM s.finished_at - s.started_at))::double precision
	FROM orchestrator.workflow_runs r
	JOIN orchestrator.workflow_steps s ON s.run_id = r.id
	WHERE ((SELECT orchestrator._is_admin()) OR orchestrator._acts_as(r.owner))
	  AND s.status = 'succeeded' AND s.started_at IS NOT NULL
	  AND r.id >= (SELECT orchestrator._stats_live_from())
	  AND s.run_id >= (SELECT orchestrator._stats_live_from())
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.step_durations IS 'p50, p95, p99 and max duration in seconds of succeeded steps, per UTC day of the run id, workflow and step';

CREATE VIEW orchestrator.error_rates WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant,
		   sum(x.finished)::bigint AS finished,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'succeeded'), 0)::bigint AS succeeded,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'failed'), 0)::bigint AS failed,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'cancelled'), 0)::bigint AS cancelled,
		   round(coalesce(sum(x.runs) FILTER (WHERE x.status = 'failed'), 0) / sum(x.finished), 4) AS error_rate
	FROM orchestrator._run_stats x
	WHERE ((SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner))
	  AND x.finished > 0
	GROUP BY 1, 2, 3;
COMMENT ON VIEW orchestrator.error_rates IS 'finished, succeeded, failed and cancelled runs and the failed share, per UTC day, workflow and tenant';

CREATE VIEW orchestrator.step_errors WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant, x.step, x.message, x.sqlstate,
		   sum(x.occurrences)::bigint AS occurrences,
		   max(x.last_seen) AS last_seen
	FROM (SELECT e.day::timestamp AT TIME ZONE 'UTC' AS day, e.owner, e.workflow, e.tenant, e.step, e.message,
				 e.sqlstate, e.occurrences, e.last_seen
		  FROM orchestrator.step_error_stats_daily e
		  UNION ALL
		  SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant, s.step,
				 coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)'), s.error ->> 'sqlstate',
				 1::bigint, s.finished_at
		  FROM orchestrator.workflow_runs r
		  JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		  WHERE s.status IN ('failed', 'dead')
			AND r.id >= (SELECT orchestrator._stats_live_from())
			AND s.run_id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4, 5, 6;
COMMENT ON VIEW orchestrator.step_errors IS 'errors of failed and dead steps by message, per UTC day, workflow, tenant and step: sort by occurrences for the most common';

CREATE VIEW orchestrator.throughput WITH (security_barrier) AS
	SELECT x.minute, x.workflow, x.tenant, x.status, sum(x.runs)::bigint AS runs
	FROM (SELECT t.minute, t.owner, t.workflow, t.tenant, t.status, t.runs
		  FROM orchestrator.throughput_stats t
		  UNION ALL
		  SELECT date_trunc('minute', r.finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant,
				 r.status, 1::bigint
		  FROM orchestrator.workflow_runs r
		  WHERE r.finished_at IS NOT NULL AND r.id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.throughput IS 'runs finished per UTC minute, workflow, tenant and final status';

CREATE VIEW orchestrator.queue_depth WITH (security_barrier) AS
	SELECT q.queue,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()) AS ready,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at > now()) AS scheduled,
		   count(*) FILTER (WHERE q.lease_token IS NOT NULL) AS running,
		   coalesce(extract(epoch FROM now() - min(q.available_at)
				FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()))::double precision, 0) AS oldest_ready_age_seconds
	FROM orchestrator.work_queue q
	-- Administrators see every queue row without a look at the runs; others
	-- count the rows of their own runs (one probe of the run's partition each).
	WHERE (SELECT orchestrator._is_admin())
	   OR EXISTS (SELECT 1 FROM orchestrator.workflow_runs r WHERE r.id = q.run_id AND orchestrator._may_see(r.owner, r.started_by))
	GROUP BY q.queue;
COMMENT ON VIEW orchestrator.queue_depth IS 'steps ready, scheduled and running per queue, and the age in seconds of the oldest ready one';

CREATE VIEW orchestrator.costs_per_day WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant,
		   sum(x.runs)::bigint AS runs,
		   sum(x.cost)::numeric(20,4) AS cost,
		   sum(x.tokens) AS tokens
	FROM (SELECT s.day::timestamp AT TIME ZONE 'UTC' AS day, s.owner, s.workflow, s.tenant, s.runs, s.cost, s.tokens
		  FROM orchestrator.run_stats_daily s
		  UNION ALL
		  SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant,
				 1::bigint, r.cost, coalesce(t.tokens, 0)
		  FROM orchestrator.workflow_runs r
		  LEFT JOIN LATERAL (SELECT sum(orchestrator._tokens(s.result)) AS tokens
							 FROM orchestrator.workflow_steps s
							 WHERE s.run_id = r.id AND s.result ? 'tokens') t ON true
		  WHERE r.id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3;
COMMENT ON VIEW orchestrator.costs_per_day IS 'runs, cost (4 decimal places) and tokens per UTC day of creation, workflow and tenant';

-- Privileges and row-level security as a fresh install has them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orchestrator FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orchestrator.uuid_v7(),
	orchestrator.uuid_v7_boundary(timestamptz),
	orchestrator.uuid_v7_time(uuid),
	orchestrator.define_workflow(text, jsonb),
	orchestrator.grant_workflow(text, regrole, text),
	orchestrator.revoke_workflow(text, regrole, text),
	orchestrator.start_workflow(text, jsonb, jsonb),
	orchestrator.get_workflow(uuid),
	orchestrator.workflow_result(uuid),
	orchestrator.cancel_workflow(uuid, text),
	orchestrator.signal_workflow(uuid, text, jsonb),
	orchestrator.events(uuid, bigint),
	orchestrator.claim_steps(text, text, integer, interval),
	orchestrator.heartbeat_step(uuid, text, uuid),
	orchestrator.complete_step(uuid, text, uuid, jsonb),
	orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]),
	orchestrator.fail_step(uuid, text, uuid, jsonb, boolean)
TO orchestrator_user;
GRANT EXECUTE ON FUNCTION
	orchestrator._caller(),
	orchestrator._acts_as(regrole),
	orchestrator._is_admin(),
	orchestrator._may_see(regrole, regrole)
TO orchestrator_user;
GRANT SELECT ON orchestrator.runs, orchestrator.run_steps TO orchestrator_user;
GRANT SELECT ON orchestrator.workflows, orchestrator.workflow_grants, orchestrator.definitions TO orchestrator_user;
ALTER TABLE orchestrator.workflow_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflow_grants_visible ON orchestrator.workflow_grants FOR SELECT
	USING (orchestrator._acts_as(grantee) OR orchestrator._acts_as(owner) OR orchestrator._is_admin());
ALTER TABLE orchestrator.workflows ENABLE ROW LEVEL SECURITY;
CREATE POLICY workflows_visible ON orchestrator.workflows FOR SELECT
	USING (orchestrator._acts_as(owner) OR orchestrator._is_admin()
		   OR EXISTS (SELECT 1 FROM orchestrator.workflow_grants g
					  WHERE g.name = workflows.name AND orchestrator._acts_as(g.grantee)));
ALTER TABLE orchestrator.definitions ENABLE ROW LEVEL SECURITY;
CREATE POLICY definitions_visible ON orchestrator.definitions FOR SELECT
	USING (EXISTS (SELECT 1 FROM orchestrator.workflows w WHERE w.name = definitions.name));
GRANT EXECUTE ON FUNCTION
	orchestrator.maintain(integer),
	orchestrator.schedule_maintenance(text),
	orchestrator.unschedule_maintenance(),
	orchestrator.rebuild_stats(date)
TO orchestrator_admin;
GRANT EXECUTE ON FUNCTION orchestrator.health(), orchestrator.metrics() TO orchestrator_admin;
GRANT SELECT ON orchestrator.runs_per_day, orchestrator.step_durations, orchestrator.error_rates,
	orchestrator.step_errors, orchestrator.throughput, orchestrator.queue_depth,
	orchestrator.costs_per_day
TO orchestrator_user;
GRANT EXECUTE ON FUNCTION orchestrator._tokens(jsonb), orchestrator._stats_live_from() TO orchestrator_user;
GRANT EXECUTE ON FUNCTION
	orchestrator.create_webhook(text, text[], text),
	orchestrator.drop_webhook(uuid)
TO orchestrator_admin;
GRANT SELECT ON orchestrator.webhooks, orchestrator.webhook_deliveries TO orchestrator_admin;
GRANT SELECT ON orchestrator.circuit_breakers TO orchestrator_user;
