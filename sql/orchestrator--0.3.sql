-- orchestrator 0.3 as released (generated from sql/src/*.sql at 0.3; kept for upgrade tests).
\echo Use "CREATE EXTENSION orchestrator" to load this file. \quit
-- Roles.  Roles are cluster-wide, so they may exist already (another database
-- has the extension, or a restore): create them only when missing.
-- orchestrator_user: define and start workflows, work external steps, read its
-- own runs.  orchestrator_admin: everything, including all tenants' runs.
--
-- A role that exists already is taken over only if nobody but superusers
-- can hand it out or log in as it: otherwise whoever created it beforehand
-- (a role with CREATEROLE, say) would decide who administers orchestrator.

DO $roles$
DECLARE
	r      record;
	admins text;
BEGIN
	FOR r IN SELECT a.oid, a.rolname, a.rolcanlogin, a.rolsuper, a.rolcreaterole, a.rolcreatedb,
					a.rolreplication, a.rolbypassrls
			 FROM pg_catalog.pg_roles a WHERE a.rolname IN ('orchestrator_user', 'orchestrator_admin') LOOP
		IF r.rolcanlogin OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls THEN
			RAISE EXCEPTION 'role "%" exists already with attributes orchestrator does not give it', r.rolname
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'orchestrator''s roles are NOLOGIN roles without SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS.',
					  HINT = format('Check who created role %I and why; drop it (or remove those attributes) and create the extension again.', r.rolname);
		END IF;
		SELECT string_agg(m.member::regrole::text, ', ' ORDER BY m.member::regrole::text) INTO admins
			FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles x ON x.oid = m.member
			WHERE m.roleid = r.oid AND m.admin_option AND NOT x.rolsuper;
		IF admins IS NOT NULL THEN
			RAISE EXCEPTION 'role "%" exists already and is administered by %', r.rolname, admins
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Roles holding ADMIN OPTION on it could grant it to anyone.',
					  HINT = format('Revoke the admin option (REVOKE ADMIN OPTION FOR %I FROM ...) or drop the role, and create the extension again.', r.rolname);
		END IF;
		-- Members are expected when another database has the extension;
		-- name them, so that the operator can check.
		SELECT string_agg(m.member::regrole::text, ', ' ORDER BY m.member::regrole::text) INTO admins
			FROM pg_catalog.pg_auth_members m
			WHERE m.roleid = r.oid AND m.member::regrole::text <> 'orchestrator_admin';
		IF admins IS NOT NULL THEN
			RAISE WARNING 'role "%" exists already; its members keep it: %', r.rolname, admins
				USING HINT = 'Check that each of them should administer or use orchestrator in this database.';
		END IF;
	END LOOP;

	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_user') THEN
		CREATE ROLE orchestrator_user NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'orchestrator_admin') THEN
		CREATE ROLE orchestrator_admin NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('orchestrator_admin', 'orchestrator_user', 'MEMBER') THEN
		GRANT orchestrator_user TO orchestrator_admin;
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA orchestrator TO orchestrator_user;
-- Functions implemented in C (src/).  The ones whose names start with an
-- underscore are internal: the engine and the background worker call them,
-- ordinary roles cannot.

CREATE FUNCTION orchestrator.uuid_v7()
RETURNS uuid
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7() IS
'a new time-ordered UUID (RFC 9562 version 7), monotonic within a session';

CREATE FUNCTION orchestrator.uuid_v7_boundary(ts timestamptz)
RETURNS uuid
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7_boundary'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7_boundary(timestamptz) IS
'the smallest version 7 UUID of the millisecond of ts: the partition bound for that time';

CREATE FUNCTION orchestrator.uuid_v7_time(id uuid)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7_time'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7_time(uuid) IS
'the creation time (millisecond precision) carried by a version 7 UUID';

-- Arrange for the dispatchers' latches to be set when the current transaction
-- commits (nothing happens if it aborts), for work of a kind: 'sql', 'timer'
-- or 'http' (NULL: any).
CREATE FUNCTION orchestrator._wake_at_commit(kind text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_wake_at_commit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Number of statements in a SQL string; raises the parser's syntax error.
CREATE FUNCTION orchestrator._sql_statement_count(sql text)
RETURNS integer
AS 'MODULE_PATHNAME', 'orchestrator_sql_statement_count'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Run one statement of a sql step as role "owner" (never as the caller), in a
-- security-restricted context, with jsonb parameters $1..$n and a statement
-- timeout; returns the first row as a jsonb object, or NULL when none.
CREATE FUNCTION orchestrator._run_sql_step(owner oid, sql text, args jsonb[], timeout_ms integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orchestrator_run_sql_step'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The dispatchers as shared memory sees them (for health()): consecutive
-- failed turns and the last error stay with the slot when its process is
-- replaced; run_id, step and step_since name the sql step it handles now.
CREATE FUNCTION orchestrator._worker_status(
	OUT slot integer, OUT pid integer, OUT started_at timestamptz,
	OUT last_active timestamptz, OUT steps_processed bigint,
	OUT consecutive_failures integer, OUT last_error text, OUT last_error_at timestamptz,
	OUT run_id uuid, OUT step text, OUT step_since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'orchestrator_worker_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Notify a channel ("orchestrator" or "orchestrator_queue") when the current
-- transaction commits, through the relay worker (src/relay.c).
CREATE FUNCTION orchestrator._notify(channel text, payload text)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_notify_sql'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- The relay as shared memory sees it (for health() and metrics()).
CREATE FUNCTION orchestrator._relay_status(
	OUT pid integer, OUT queued bigint, OUT sent bigint, OUT dropped bigint, OUT direct bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'orchestrator_relay_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Write a new run (start_workflow(), after its checks): the run and its steps
-- on the partitions that hold it, workflow.created, the first steps made
-- ready (src/start.c, src/engine.c).
CREATE FUNCTION orchestrator._start_run(id uuid, name text, version integer, tenant text,
	owner regrole, started_by regrole, input jsonb, idempotency_key text, priority integer,
	deadline timestamptz)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_start_run'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- Who is calling (see src/caller.c).  Inside an API call: the role that
-- called the entry point (current_user there); elsewhere current_user.

CREATE FUNCTION orchestrator._caller()
RETURNS regrole
AS 'MODULE_PATHNAME', 'orchestrator_caller_role'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Has the caller the privileges of this role (it, a member inheriting its
-- rights, a superuser)?  False for a dropped role.
CREATE FUNCTION orchestrator._acts_as(role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_acts_as'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;

-- Is the caller a member of orchestrator_admin (or a superuser)?
CREATE FUNCTION orchestrator._is_admin()
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_is_admin'
LANGUAGE C STABLE PARALLEL RESTRICTED;
-- Tables.
--
-- The status columns of runs and steps have no CHECK constraint: only the
-- engine writes them (nobody else may write these tables), and PostgreSQL
-- parses a table's CHECK constraints again for every statement that writes
-- it, which cost a tenth of the dispatcher's time.  The values are listed in
-- docs/sql-reference.md.
--
-- Definitions are small and unpartitioned.  Run history (runs, steps, events)
-- is range-partitioned on the run id, a UUIDv7 whose leading 48 bits are the
-- creation time in ms: a lookup by run id prunes to one daily partition, and
-- retention drops whole partitions.  Every per-run table carries run_id so a
-- run's rows stay together (and shard together).  Work that is ready or
-- running lives in the small, unpartitioned work_queue.

-- Workflows by name, and who owns each: the role that defined it first.  A
-- run's sql steps and compensations execute with its owner's rights (as a
-- SECURITY DEFINER function does), whoever starts it.  Roles are kept as
-- OIDs (regrole): a role created later with a dropped role's name inherits
-- nothing, and a dump names roles, so a restore maps them to the target
-- cluster's roles.
CREATE TABLE orchestrator.workflows (
	name       text        NOT NULL PRIMARY KEY,
	owner      regrole     NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orchestrator.workflows IS 'workflow names and their owners (the role that defined each first)';

-- What other roles may do with a workflow: "start" (start runs, see the
-- runs it started) or "work" (claim, heartbeat, complete and fail its
-- external steps).  owner repeats the workflow's owner, so that the
-- row-level security policy of this table need not read workflows (whose
-- policy reads this table).
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

CREATE TABLE orchestrator.definitions (
	name        text        NOT NULL REFERENCES orchestrator.workflows (name),
	version     integer     NOT NULL,
	spec        jsonb       NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	created_by  regrole     NOT NULL,
	PRIMARY KEY (name, version)
);
COMMENT ON TABLE orchestrator.definitions IS 'workflow definitions, one row per version';

-- One row per step of each definition version: the parsed, validated form of
-- the spec that the engine reads.  A step's compensate action is a row of its
-- own, "compensate:<step>", with compensates = <step>.
CREATE TABLE orchestrator.definition_steps (
	name         text     NOT NULL,
	version      integer  NOT NULL,
	step         text     NOT NULL,
	position     integer  NOT NULL,
	kind         text     NOT NULL,
	depends_on   text[]   NOT NULL,
	dependents   text[]   NOT NULL,
	condition    jsonpath,
	spec         jsonb    NOT NULL,
	max_attempts integer  NOT NULL,
	backoff      interval NOT NULL,
	multiplier   float8   NOT NULL,
	max_backoff  interval NOT NULL,
	jitter       float8   NOT NULL,
	timeout      interval,
	compensates  text,
	PRIMARY KEY (name, version, step),
	FOREIGN KEY (name, version) REFERENCES orchestrator.definitions (name, version)
);

CREATE TABLE orchestrator.workflow_runs (
	id              uuid          NOT NULL,
	name            text          NOT NULL,
	version         integer       NOT NULL,
	status          text          NOT NULL DEFAULT 'pending',
	tenant          text,
	owner           regrole       NOT NULL,
	input           jsonb         NOT NULL,
	result          jsonb,
	error           jsonb,
	idempotency_key text,
	priority        integer       NOT NULL DEFAULT 0,
	deadline        timestamptz,
	parent_id       uuid,
	created_at      timestamptz   NOT NULL DEFAULT now(),
	started_at      timestamptz,
	finished_at     timestamptz,
	cost            numeric(20,4) NOT NULL DEFAULT 0,
	started_by      regrole       NOT NULL,
	PRIMARY KEY (id)
) PARTITION BY RANGE (id);
COMMENT ON TABLE orchestrator.workflow_runs IS 'one row per workflow run (partitioned by run id = creation day)';
COMMENT ON COLUMN orchestrator.workflow_runs.owner IS 'owner of the workflow: its sql steps run with this role''s rights';
COMMENT ON COLUMN orchestrator.workflow_runs.started_by IS 'the role that started the run';

CREATE TABLE orchestrator.workflow_steps (
	run_id      uuid          NOT NULL,
	step        text          NOT NULL,
	position    integer       NOT NULL,
	kind        text          NOT NULL,
	status      text          NOT NULL DEFAULT 'waiting',
	attempt     integer       NOT NULL DEFAULT 0,
	deps_open   integer       NOT NULL,
	input       jsonb,
	result      jsonb,
	error       jsonb,
	worker      text,
	ready_at    timestamptz,
	started_at  timestamptz,
	finished_at timestamptz,
	attempt_base integer      NOT NULL DEFAULT 0,
	PRIMARY KEY (run_id, step)
) PARTITION BY RANGE (run_id);
COMMENT ON COLUMN orchestrator.workflow_steps.attempt_base IS 'attempts made before the run was last resumed (retry_run): max_attempts counts from here';
COMMENT ON TABLE orchestrator.workflow_steps IS 'one row per step of each run (partitioned like workflow_runs)';

CREATE TABLE orchestrator.workflow_events (
	run_id uuid        NOT NULL,
	seq    bigint      NOT NULL,
	at     timestamptz NOT NULL,
	type   text        NOT NULL,
	step   text,
	data   jsonb       NOT NULL DEFAULT '{}',
	PRIMARY KEY (run_id, seq)
) PARTITION BY RANGE (run_id);
COMMENT ON TABLE orchestrator.workflow_events IS 'append-only history of every run and step state change';

-- Ready and running work.  queue is an external queue name, or one of the
-- internal queues the dispatchers serve: '@sql' (sql steps) and '@timer'
-- (sleeps, wait timeouts, run deadlines).  available_at is when the row may be
-- claimed: now for ready work, a retry's due time, a timer's due time, or the
-- expiry of the lease an external worker holds (lease_token set).  workflow
-- (the run's) lets claim_steps() skip, without locking them, the rows of
-- workflows the claiming role may not work.
CREATE TABLE orchestrator.work_queue (
	run_id       uuid        NOT NULL,
	step         text        NOT NULL,
	queue        text        NOT NULL,
	priority     integer     NOT NULL DEFAULT 0,
	available_at timestamptz NOT NULL,
	lease_token  uuid,
	lease        interval,
	worker       text,
	workflow     text        NOT NULL,
	PRIMARY KEY (run_id, step)
) WITH (fillfactor = 70);
CREATE INDEX work_queue_claim ON orchestrator.work_queue (queue, priority DESC, available_at);
CREATE INDEX work_queue_leased ON orchestrator.work_queue (available_at) WHERE lease_token IS NOT NULL;

-- A second start by the same role with the same key and workflow name
-- returns the first run.  Keys of different roles never meet: one role
-- cannot take another's key, or learn its run id.
CREATE TABLE orchestrator.idempotency_keys (
	name       text        NOT NULL,
	key        text        NOT NULL,
	run_id     uuid        NOT NULL,
	at         timestamptz NOT NULL DEFAULT now(),
	started_by regrole     NOT NULL,
	PRIMARY KEY (started_by, name, key)
);

CREATE TABLE orchestrator.signals (
	run_id  uuid        NOT NULL,
	id      uuid        NOT NULL,
	name    text        NOT NULL,
	payload jsonb       NOT NULL,
	sent_at timestamptz NOT NULL DEFAULT now(),
	sent_by regrole     NOT NULL,
	PRIMARY KEY (run_id, id)
);
CREATE INDEX signals_by_name ON orchestrator.signals (run_id, name, id);

-- Partitions: one per UTC day for each history table, bounded by the UUIDv7
-- boundaries of midnight.  Created ahead by _create_partitions (at install,
-- and by the dispatchers and maintain() afterwards).
CREATE FUNCTION orchestrator._create_partitions(first_day date, days integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	created integer := 0;
	day     date;
	tbl     text;
	part    text;
BEGIN
	FOR i IN 0 .. days - 1 LOOP
		day := first_day + i;
		FOREACH tbl IN ARRAY ARRAY['workflow_runs', 'workflow_steps', 'workflow_events'] LOOP
			part := format('%s_p%s', tbl, to_char(day, 'YYYYMMDD'));
			CONTINUE WHEN to_regclass(format('orchestrator.%I', part)) IS NOT NULL;
			EXECUTE format(
				'CREATE TABLE orchestrator.%I PARTITION OF orchestrator.%I FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = %s)',
				part, tbl,
				orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC'),
				orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC'),
				CASE tbl WHEN 'workflow_events' THEN 100 ELSE 75 END);
			created := created + 1;
		END LOOP;
	END LOOP;
	RETURN created;
END
$$;

-- A dump restored afterwards brings partitions of some of these days too:
-- src/restore.c lets its statements meet the ones made here.
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 1, 9);
-- Workflow definitions: validation and versioning.
--
-- Every check raises invalid_parameter_value (22023) with the definition name
-- in errmsg, the offending step and field in errdetail, and what to do in
-- errhint; define_workflow writes nothing unless the whole spec is valid.

-- Raise a spec error.  Internal.
CREATE FUNCTION orchestrator._spec_error(wf text, detail text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	-- Details are sentences: capitalised, with a final period.
	RAISE EXCEPTION 'invalid workflow definition "%"', wf
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = upper(left(detail, 1)) || substr(detail, 2) || '.',
			  HINT = coalesce(hint, 'See docs/sql-reference.md for the definition format.');
END
$$;

-- A JSON value must be a string holding a valid, positive interval.
CREATE FUNCTION orchestrator._spec_interval(wf text, what text, value jsonb, allow_zero boolean DEFAULT false)
RETURNS interval
LANGUAGE plpgsql
AS $$
DECLARE
	result interval;
BEGIN
	IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(value) <> 'string' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be an interval string such as "10 seconds", not %s', what, value));
	END IF;
	BEGIN
		result := (value #>> '{}')::interval;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
		PERFORM orchestrator._spec_error(wf, format('%s is not a valid interval: %s', what, value));
	END;
	IF result < interval '0' OR (result = interval '0' AND NOT allow_zero) THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be positive, not %s', what, value));
	END IF;
	IF result > interval '366 days' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be at most 366 days, not %s', what, value));
	END IF;
	RETURN result;
END
$$;

-- The timeout of an attempt that holds a dispatcher or a worker (sql, http,
-- external, compensations): at most orchestrator.max_step_timeout.  sleep
-- and wait steps hold nothing while they wait; their timeout is not bounded.
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

-- A JSON path must parse.
CREATE FUNCTION orchestrator._spec_jsonpath(wf text, what text, value jsonb)
RETURNS jsonpath
LANGUAGE plpgsql
AS $$
BEGIN
	IF jsonb_typeof(value) <> 'string' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be a SQL/JSON path string, not %s', what, value));
	END IF;
	RETURN (value #>> '{}')::jsonpath;
EXCEPTION WHEN syntax_error OR invalid_text_representation OR invalid_parameter_value THEN
	PERFORM orchestrator._spec_error(wf, format('%s is not a valid SQL/JSON path: %s (%s)', what, value, SQLERRM),
		'Write paths over the run context, for example "$.input.query" or "$.steps.fetch.result.status == 200".');
	RETURN NULL;
END
$$;

-- Check every {"$path": ...} template inside a value.
CREATE FUNCTION orchestrator._spec_templates(wf text, what text, value jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	CASE jsonb_typeof(value)
	WHEN 'object' THEN
		IF value ? '$path' THEN
			IF (SELECT count(*) FROM jsonb_object_keys(value)) <> 1 THEN
				PERFORM orchestrator._spec_error(wf, format('%s: a template object must hold only "$path", not %s', what, value));
			END IF;
			PERFORM orchestrator._spec_jsonpath(wf, what || '.$path', value -> '$path');
		ELSE
			FOR k, v IN SELECT * FROM jsonb_each(value) LOOP
				PERFORM orchestrator._spec_templates(wf, what || '.' || k, v);
			END LOOP;
		END IF;
	WHEN 'array' THEN
		FOR v IN SELECT * FROM jsonb_array_elements(value) LOOP
			PERFORM orchestrator._spec_templates(wf, what || '[]', v);
		END LOOP;
	ELSE
		NULL;
	END CASE;
END
$$;

-- Only the listed keys may appear in an object (catches typos).
CREATE FUNCTION orchestrator._spec_keys(wf text, what text, value jsonb, allowed text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	bad text;
BEGIN
	SELECT k INTO bad FROM jsonb_object_keys(value) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
	IF bad IS NOT NULL THEN
		PERFORM orchestrator._spec_error(wf, format('%s has unknown field "%s"', what, bad),
			format('Allowed fields: %s.', array_to_string(allowed, ', ')));
	END IF;
END
$$;

-- Validate the kind-specific part of a step (or of a compensate action).
CREATE FUNCTION orchestrator._spec_action(wf text, what text, s jsonb, kind text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	req jsonb;
	url jsonb;
	n   integer;
	v   jsonb;
BEGIN
	CASE kind
	WHEN 'sql' THEN
		IF jsonb_typeof(s -> 'sql') IS DISTINCT FROM 'string' OR btrim(s ->> 'sql') = '' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" must be a non-empty string', what));
		END IF;
		BEGIN
			n := orchestrator._sql_statement_count(s ->> 'sql');
		EXCEPTION WHEN syntax_error THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" does not parse: %s', what, SQLERRM));
		END;
		IF n <> 1 THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" must hold exactly one statement, not %s', what, n),
				'Split the work into several sql steps, or wrap it in a function.');
		END IF;
		IF s ? 'args' THEN
			IF jsonb_typeof(s -> 'args') <> 'array' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "args" must be an array', what));
			END IF;
			IF jsonb_array_length(s -> 'args') > 100 THEN
				PERFORM orchestrator._spec_error(wf, format('%s: at most 100 args', what));
			END IF;
			PERFORM orchestrator._spec_templates(wf, what || '.args', s -> 'args');
		END IF;
	WHEN 'http' THEN
		req := s -> 'request';
		IF jsonb_typeof(req) IS DISTINCT FROM 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "request" must be an object with at least "url"', what));
		END IF;
		PERFORM orchestrator._spec_keys(wf, what || '.request', req, ARRAY['method', 'url', 'headers', 'body']);
		IF coalesce(req ->> 'method', 'GET') NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: unsupported HTTP method %s', what, req -> 'method'),
				'Use GET, POST, PUT, PATCH, DELETE or HEAD.');
		END IF;
		url := req -> 'url';
		IF jsonb_typeof(url) = 'string' THEN
			IF url #>> '{}' !~* '^https?://[^/\s]+' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: url must be an http:// or https:// URL, not %s', what, url));
			END IF;
		ELSIF NOT (jsonb_typeof(url) = 'object' AND url ? '$path') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "request.url" must be a string or a {"$path": ...} template', what));
		END IF;
		IF req ? 'headers' THEN
			IF jsonb_typeof(req -> 'headers') <> 'object' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "request.headers" must be an object', what));
			END IF;
			FOR v IN SELECT value FROM jsonb_each(req -> 'headers') LOOP
				IF jsonb_typeof(v) <> 'string' AND NOT (jsonb_typeof(v) = 'object' AND v ? '$path') THEN
					PERFORM orchestrator._spec_error(wf, format('%s: header values must be strings or templates, not %s', what, v));
				END IF;
			END LOOP;
		END IF;
		PERFORM orchestrator._spec_templates(wf, what || '.request', req);
	WHEN 'external' THEN
		IF jsonb_typeof(s -> 'queue') IS DISTINCT FROM 'string'
		   OR (s ->> 'queue') !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "queue" must be a name of letters, digits, "_", ".", ":" or "-" (at most 63), not %s', what, coalesce(s -> 'queue', 'null')));
		END IF;
		IF s ? 'input' THEN
			PERFORM orchestrator._spec_templates(wf, what || '.input', s -> 'input');
		END IF;
	END CASE;
END
$$;

-- Validate a whole spec; returns the parsed steps in spec order.
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

-- Grant or revoke a privilege on a workflow: "start" (start runs of it and
-- see them) or "work" (its external steps).  Its owner, roles with the
-- owner's privileges, and members of orchestrator_admin may.
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

-- May the caller start runs of workflow "name" (privilege 'start') or
-- work its external steps ('work')?  Its owner, roles granted that
-- privilege (or members of such roles), and members of orchestrator_admin.
-- PL/pgSQL, without a SET clause, so that its plans are kept: a SQL function
-- that cannot be inlined (this one has subqueries) is parsed again on every
-- call.  It runs inside the API's implementations, whose search_path is
-- pinned; its names are qualified anyway.
CREATE FUNCTION orchestrator._may(name text, privilege text)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	RETURN orchestrator._is_admin()
		OR EXISTS (SELECT 1 FROM orchestrator.workflows w WHERE w.name = _may.name AND orchestrator._acts_as(w.owner))
		OR EXISTS (SELECT 1 FROM orchestrator.workflow_grants g
				   WHERE g.name = _may.name AND g.privilege = _may.privilege AND orchestrator._acts_as(g.grantee));
END
$$;
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
-- Runs: start, read, cancel, signal; the relational views.

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
	IF owner IS DISTINCT FROM caller AND NOT orchestrator._may(name, 'start') THEN
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

	-- The run, its steps and its first transitions, on its partitions (C).
	PERFORM orchestrator._start_run(new_id, _api_start_workflow.name, v, tenant, owner, caller, input,
									idem_key, coalesce(prio, 0), deadline);
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
	SELECT coalesce(array_agg(x.step ORDER BY x.position), '{}') INTO redo
		FROM orchestrator.workflow_steps x
		WHERE x.run_id = r.id AND x.status NOT IN ('succeeded', 'skipped');
	IF steps IS NOT NULL THEN
		SELECT n INTO bad FROM unnest(steps) n
			WHERE n IS NULL OR NOT EXISTS (SELECT 1 FROM orchestrator.workflow_steps x
										   WHERE x.run_id = r.id AND x.step = n)
			LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'workflow run % has no step %', r.id, coalesce(quote_literal(bad), 'NULL')
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Its steps are: %s.', (SELECT string_agg(x.step, ', ' ORDER BY x.position)
						  FROM orchestrator.workflow_steps x WHERE x.run_id = r.id)),
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
			WHERE x.run_id = r.id AND x.status IN ('failed', 'dead') AND x.step <> ALL (steps)
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
	IF r.deadline IS NOT NULL THEN
		PERFORM orchestrator._enqueue(r, '@deadline', '@timer', r.deadline);
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
			PERFORM orchestrator._step_ready(r, s);
		END IF;
	END LOOP;
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

-- The relational face, for psql and Grafana.  Each role sees the runs it
-- started and the runs of the workflows it owns; members of
-- orchestrator_admin see all.  owner and started_by are regrole: role names.
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

-- Handle a queue row whose lease has expired: the attempt is lost, so it is
-- retried after a backoff, or the step is dead when attempts are used up.
CREATE FUNCTION orchestrator._lease_expired(run_id uuid, step text, worker text)
RETURNS void
LANGUAGE sql
AS $$
	SELECT orchestrator._attempt_failed(run_id, step,
		jsonb_build_object('message', 'lease expired', 'worker', worker), true)
$$;

-- workflows: the names whose steps may be claimed (NULL: any).
CREATE FUNCTION orchestrator._claim_external(queue text, worker text, max_steps integer, lease interval,
											 workflows text[])
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz)
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
-- What the background dispatchers do in PL/pgSQL: the sql steps that the C
-- batch (sql_steps.c) hands over, timers, and expired leases of external
-- steps.  A sql step's statement, its result, its successors and its events
-- commit together, so its effect happens exactly once.

-- Run one sql step as the owner of its workflow.
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

-- An attempt of a sql step that was lost outside its statement's own error
-- handling: the dispatcher's transaction failed while handling the step (an
-- error of the engine's own work, "internal"), or the dispatcher process died
-- while the step ran (it crashed or was killed, or the watchdog ended a step
-- that ignored its timeout).  Nothing of the attempt committed; it is counted
-- now, and retried or dead-lettered like any failed attempt.  "attempt" is
-- the attempt that was lost: a step that has moved on since (recorded by
-- another dispatcher, read back twice) is left alone.  Returns 'recorded',
-- 'stale' (nothing to do) or 'busy' (the run is locked: try again later).
CREATE FUNCTION orchestrator._sql_attempt_lost(run_id uuid, step text, attempt integer, error jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r  orchestrator.workflow_runs;
	st text;
	n  integer;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _sql_attempt_lost.run_id FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN CASE WHEN EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = _sql_attempt_lost.run_id)
			THEN 'busy' ELSE 'stale' END;
	END IF;
	IF NOT orchestrator._is_active(r.status) THEN
		RETURN 'stale';
	END IF;
	SELECT s.status, s.attempt INTO st, n FROM orchestrator.workflow_steps s
		WHERE s.run_id = r.id AND s.step = _sql_attempt_lost.step;
	IF st IS DISTINCT FROM 'ready' OR n <> attempt - 1
	   OR NOT EXISTS (SELECT 1 FROM orchestrator.work_queue q
					  WHERE q.run_id = r.id AND q.step = _sql_attempt_lost.step
						AND q.queue = '@sql' AND q.lease_token IS NULL) THEN
		RETURN 'stale';
	END IF;
	PERFORM orchestrator._step_started(r, step, 'dispatcher');
	PERFORM orchestrator._attempt_failed(r.id, step, error, true);
	RETURN 'recorded';
END
$$;

-- A timer is due: a sleep ends, a wait times out, or a run's deadline passes.
CREATE FUNCTION orchestrator._fire_timer(run_id uuid, step text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	r orchestrator.workflow_runs;
	kind text;
BEGIN
	SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = _fire_timer.run_id;
	IF step = '@deadline' THEN
		DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id AND q.step = '@deadline';
		-- A saga already under way is let finish.
		IF r.status IN ('pending', 'running') THEN
			PERFORM orchestrator._run_finish(r, 'failed',
				jsonb_build_object('message', 'deadline exceeded', 'deadline', r.deadline));
		END IF;
		RETURN;
	END IF;
	SELECT s.kind INTO kind FROM orchestrator.workflow_steps s
		WHERE s.run_id = r.id AND s.step = _fire_timer.step AND s.status = 'running';
	IF kind = 'sleep' THEN
		PERFORM orchestrator._step_succeeded(r.id, step, jsonb_build_object('slept_until', now()));
	ELSIF kind = 'wait' THEN
		PERFORM orchestrator._attempt_failed(r.id, step, jsonb_build_object(
			'message', 'timed out waiting for signal',
			'signal', (orchestrator._def_step(r, step)).spec ->> 'signal'), false);
	ELSE
		DELETE FROM orchestrator.work_queue q WHERE q.run_id = r.id AND q.step = _fire_timer.step;
	END IF;
END
$$;

-- One dispatcher pass after the sql steps: timers and expired leases.
-- Returns how many items it processed and when the next timer, retry or
-- lease expiry is due (NULL: nothing is scheduled).
CREATE FUNCTION orchestrator._dispatch(max_steps integer, OUT processed integer, OUT next_wake timestamptz)
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
-- HTTP steps: claimed by the dispatchers with a lease, sent with libcurl
-- outside any transaction (src/http.c), recorded in batches.  A per-host
-- circuit breaker keeps steps from hammering a host that keeps failing.

-- URL checks, done by libcurl's own URL parser (src/http_util.c).
-- NULL when the URL may be used, else 'invalid: ...' or 'refused: ...'.
CREATE FUNCTION orchestrator._http_check_url(url text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_check_url_sql'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- What a dispatcher decides for a URL whose host resolved to address (the
-- URL check, then the connect-time check): NULL when it would connect, else
-- 'invalid: ...' or 'refused: ...'.  For tests.
CREATE FUNCTION orchestrator._http_check_connect(url text, address inet)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_check_connect'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- "host:port" of an http(s) URL (the circuit breaker key), NULL when invalid.
CREATE FUNCTION orchestrator._http_url_host(url text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_url_host'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION orchestrator._random_bytes(n integer)
RETURNS bytea
AS 'MODULE_PATHNAME', 'orchestrator_random_bytes'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- The Standard Webhooks signature 'v1,<base64 HMAC-SHA256(key, id.ts.body)>'
-- with a webhook's sealed secret (webhook_secrets), opened in C only.
CREATE FUNCTION orchestrator._webhook_sign(sealed_secret text, msg_id text, ts bigint, body text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_sign'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- Raise a clear error for a URL that cannot be used: 22023 when it is not
-- an http(s) URL, 42501 when its host and port are not allowed.
CREATE FUNCTION orchestrator._http_require_url(url text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	why     text := orchestrator._http_check_url(url);
	allowed text := current_setting('orchestrator.http_allowed_hosts');
BEGIN
	IF why IS NULL THEN
		RETURN;
	ELSIF left(why, 8) = 'refused:' THEN
		RAISE EXCEPTION '% may not connect to %', what, url
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = upper(substr(why, 10, 1)) || substr(why, 11) || '.',
				  HINT = CASE WHEN btrim(allowed) = ''
							  THEN 'orchestrator.http_allowed_hosts is empty, so no host is allowed; a superuser can list hosts, addresses and ports in it (postgresql.conf, then reload).'
							  ELSE format('orchestrator.http_allowed_hosts is "%s"; a superuser can add entries such as "api.example.com", "api.example.com:8443" or "10.0.0.0/8:*" (postgresql.conf, then reload).',
										  allowed) END;
	ELSE
		RAISE EXCEPTION '% has an invalid URL %', what, url
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = upper(substr(why, 10, 1)) || substr(why, 11) || '.',
				  HINT = 'Use an absolute http:// or https:// URL.';
	END IF;
END
$$;

-- define_workflow: literal URLs of http steps (and http compensations) must
-- be valid and allowed, and header names HTTP tokens other than Host,
-- Content-Length and Transfer-Encoding (curl derives those from the URL and
-- the body; a user's own could reach another virtual host than the checked
-- one, or smuggle requests).  Templated URLs and headers are checked when
-- they are sent (src/http.c).
CREATE FUNCTION orchestrator._http_check_spec(wf text, steps orchestrator.definition_steps[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s   orchestrator.definition_steps;
	req jsonb;
	k   text;
BEGIN
	FOREACH s IN ARRAY steps LOOP
		FOREACH req IN ARRAY ARRAY[CASE WHEN s.kind = 'http' THEN s.spec -> 'request' END,
								   CASE WHEN s.spec -> 'compensate' ->> 'kind' = 'http'
										THEN s.spec -> 'compensate' -> 'request' END] LOOP
			IF jsonb_typeof(req -> 'headers') = 'object' AND NOT req -> 'headers' ? '$path' THEN
				FOR k IN SELECT jsonb_object_keys(req -> 'headers') LOOP
					IF k !~ '^[-!#$%&''*+.^_`|~0-9A-Za-z]+$' THEN
						PERFORM orchestrator._spec_error(wf,
							format('step "%s": request header name %s is not an HTTP token', s.step, to_jsonb(k)),
							'Header names are made of letters, digits and !#$%&''*+-.^_`|~ only.');
					ELSIF lower(k) IN ('host', 'content-length', 'transfer-encoding') THEN
						PERFORM orchestrator._spec_error(wf,
							format('step "%s": request header "%s" may not be set', s.step, k),
							'Host, Content-Length and Transfer-Encoding are derived from the URL and the body; remove the header (to reach another host, change the URL).');
					END IF;
				END LOOP;
			END IF;
			IF jsonb_typeof(req -> 'url') = 'string' THEN
				PERFORM orchestrator._http_require_url(req ->> 'url',
					format('step "%s" of workflow "%s"', s.step, wf));
			END IF;
		END LOOP;
	END LOOP;
END
$$;

-- Circuit breakers, one row per workflow owner and host:port that has
-- failed.  closed: requests flow, failures counts consecutive failures;
-- open: requests wait until retry_at; half_open: one probe request is in
-- flight until retry_at.  Per owner, so that one role's failing requests
-- (or a role provoking failures on purpose) never hold back another's.
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

-- Each role sees the breakers of its own workflows; admins all.
CREATE VIEW orchestrator.circuit_breakers WITH (security_barrier) AS
	SELECT c.owner, c.host, c.state, c.failures, c.opened_at,
		   CASE WHEN c.state <> 'closed' THEN c.retry_at END AS retry_at,
		   c.last_error, c.updated_at
	FROM orchestrator.http_circuits c
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(c.owner);
COMMENT ON VIEW orchestrator.circuit_breakers IS
'circuit breaker state per workflow owner and host:port (hosts that never failed are closed and not listed)';

-- The worker tag of a queue row waiting for a breaker to close.
CREATE FUNCTION orchestrator._http_circuit_tag(owner regrole, host text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'circuit:' || owner::oid || ':' || host $$;

-- Does the step's host:port let a request through now?  Returns NULL when it
-- does (and marks a probe when the cool-down is over), else the time to look
-- again.  Never waits for a lock: claimers must not block.
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

-- Claim due HTTP work for a dispatcher: '@http' steps (attempt counted,
-- lease = timeout + 30 s, holder "http:<pid>"), then webhook deliveries.
-- With recover, leases held by dispatchers that no longer run (the server
-- restarted, a dispatcher died) expire at once.  The caller commits before
-- sending anything.
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

		hdrs := coalesce(nullif(req -> 'headers', 'null'), '{}');
		why := CASE WHEN jsonb_typeof(req -> 'url') IS DISTINCT FROM 'string'
					THEN format('invalid: the rendered url is %s, not a string', coalesce(req -> 'url', 'null'))
					WHEN jsonb_typeof(hdrs) <> 'object'
					THEN format('invalid: the rendered headers are %s, not an object', left(hdrs::text, 200))
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
				'message', substr(why, strpos(why, ':') + 2), 'kind', left(why, strpos(why, ':') - 1),
				'url', req -> 'url'), false);
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

-- When the dispatcher should next look for HTTP work (retries, breaker
-- waits, webhook deliveries); NULL when none is scheduled.
CREATE FUNCTION orchestrator._http_next_wake()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT min(t) FROM (
		SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@http'
		UNION ALL
		SELECT min(o.available_at) FROM orchestrator.webhook_outbox o WHERE o.status IN ('pending', 'delivering')
	) due(t)
$$;

-- Seconds or an HTTP date in a Retry-After header, as a delay (NULL: none).
CREATE FUNCTION orchestrator._retry_after(value text)
RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	ELSIF value ~ '^\s*[0-9]{1,9}\s*$' THEN
		RETURN least(make_interval(secs => btrim(value)::integer), interval '1 day');
	END IF;
	RETURN least(greatest(value::timestamptz - now(), interval '0'), interval '1 day');
EXCEPTION WHEN others THEN
	RETURN NULL;
END
$$;

-- Record one finished attempt of an http step.  Returns the host and
-- whether it counts as a failure of the host (NULL host: no effect on the
-- circuit breaker, or a stale completion that was dropped).
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

-- Apply the outcomes of a batch to the circuit breakers, host by host (in
-- host order, after all runs of the batch are locked, so recorders cannot
-- deadlock).  Open and close are events of the run whose request decided.
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
					PERFORM orchestrator._wake_at_commit('http');
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

-- Record a batch of finished HTTP requests (steps and webhook deliveries) in
-- one transaction.  The batch is tried in one subtransaction; only when that
-- fails is it redone item by item, each guarded by its own subtransaction (an
-- error recording one fails that step, not retried, and leaves the others).
-- One subtransaction per item always would overflow the backend's subxid
-- cache with large batches, which slows every snapshot in the server.
CREATE FUNCTION orchestrator._http_record(kinds text[], run_ids uuid[], steps text[], ids uuid[],
	tokens uuid[], statuses integer[], headers text[], bodies text[], body_kinds text[],
	error_kinds text[], errors text[], elapsed float8[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	BEGIN
		PERFORM orchestrator._http_record_items(false, kinds, run_ids, steps, ids, tokens, statuses,
			headers, bodies, body_kinds, error_kinds, errors, elapsed);
	EXCEPTION WHEN others THEN
		PERFORM orchestrator._http_record_items(true, kinds, run_ids, steps, ids, tokens, statuses,
			headers, bodies, body_kinds, error_kinds, errors, elapsed);
	END;
	RETURN coalesce(cardinality(kinds), 0);
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
-- Webhooks: subscriptions to run events, an outbox written in the same
-- transaction as each matching event, and deliveries sent by the dispatchers
-- with the HTTP machinery of http steps, signed per Standard Webhooks,
-- retried on orchestrator.webhook_retry_schedule, dead after the last try.

CREATE TABLE orchestrator.webhooks (
	id         uuid        PRIMARY KEY DEFAULT orchestrator.uuid_v7(),
	url        text        NOT NULL,
	events     text[]      NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by regrole     NOT NULL
);
COMMENT ON TABLE orchestrator.webhooks IS 'webhook subscriptions (their secrets are write-only: sealed in webhook_secrets)';

-- Signing secrets are write-only: sealed (AES-256-GCM, src/secrets.c) with
-- the key in the file orchestrator.secret_key_file, which is outside the
-- database and its dumps, and readable by no role but the extension's owner.
-- Only C opens them, to sign a delivery.
CREATE TABLE orchestrator.webhook_secrets (
	webhook_id    uuid        PRIMARY KEY REFERENCES orchestrator.webhooks (id) ON DELETE CASCADE,
	sealed_secret text        NOT NULL CHECK (sealed_secret LIKE 'v1:%'),
	created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orchestrator.webhook_secrets IS
'the signing secret of each webhook, sealed with the key in orchestrator.secret_key_file';

CREATE TABLE orchestrator.webhook_outbox (
	id              uuid        PRIMARY KEY,
	webhook_id      uuid        NOT NULL,
	run_id          uuid        NOT NULL,
	seq             bigint      NOT NULL,
	type            text        NOT NULL,
	payload         jsonb       NOT NULL,
	status          text        NOT NULL DEFAULT 'pending',
	attempt         integer     NOT NULL DEFAULT 0,
	available_at    timestamptz NOT NULL,
	lease_token     uuid,
	worker          text,
	last_status     integer,
	last_error      text,
	last_attempt_at timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now(),
	delivered_at    timestamptz,
	CHECK (status IN ('pending', 'delivering', 'delivered', 'dead', 'cancelled'))
);
COMMENT ON TABLE orchestrator.webhook_outbox IS 'one row per event and matching webhook: the delivery and its state';
CREATE INDEX webhook_outbox_due ON orchestrator.webhook_outbox (available_at)
	WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_outbox_webhook ON orchestrator.webhook_outbox (webhook_id, id);

CREATE VIEW orchestrator.webhook_deliveries AS
	SELECT o.id, o.webhook_id, w.url, o.run_id, o.seq, o.type, o.status, o.attempt AS attempts,
		   CASE WHEN o.status IN ('pending', 'delivering') THEN o.available_at END AS next_attempt_at,
		   o.last_status, o.last_error, o.last_attempt_at, o.created_at, o.delivered_at, o.payload
	FROM orchestrator.webhook_outbox o
	LEFT JOIN orchestrator.webhooks w ON w.id = o.webhook_id;
COMMENT ON VIEW orchestrator.webhook_deliveries IS 'webhook deliveries: one row per event and subscription';

-- Does an event type match a subscription pattern ('*', 'step.*', exact)?
-- PL/pgSQL so that its plan is kept: called for every event and
-- subscription, and a SQL function with a subquery is parsed on every call.
CREATE FUNCTION orchestrator._webhook_matches(patterns text[], type text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	RETURN EXISTS (SELECT 1 FROM unnest(patterns) p
				   WHERE p = '*' OR p = type OR (right(p, 2) = '.*' AND starts_with(type, left(p, -1))));
END
$$;

-- Called by _emit for every event while any webhook exists: one outbox row
-- per matching subscription, in the event's transaction.
CREATE FUNCTION orchestrator._webhook_outbox(run_id uuid, seq bigint, type text, step text, data jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO orchestrator.webhook_outbox (id, webhook_id, run_id, seq, type, payload, available_at)
		SELECT orchestrator.uuid_v7(), w.id, _webhook_outbox.run_id, _webhook_outbox.seq, _webhook_outbox.type,
			   jsonb_build_object('type', _webhook_outbox.type, 'timestamp', clock_timestamp(),
				   'data', jsonb_build_object('run_id', _webhook_outbox.run_id,
						'workflow', (SELECT r.name FROM orchestrator.workflow_runs r WHERE r.id = _webhook_outbox.run_id),
						'seq', _webhook_outbox.seq, 'step', _webhook_outbox.step) || coalesce(data, '{}')),
			   now()
		FROM orchestrator.webhooks w
		WHERE orchestrator._webhook_matches(w.events, _webhook_outbox.type);
	IF FOUND THEN
		PERFORM orchestrator._wake_at_commit('http');
	END IF;
END
$$;

-- "whsec_" + base64 of 16 to 64 bytes, sealed (src/secrets.c).  The secret
-- is never echoed in an error.  With create_key, a missing key file is
-- created; without, it is an error (secrets sealed with a key that is not
-- here yet would never open again).
CREATE FUNCTION orchestrator._webhook_secret_seal(secret text, create_key boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_secret_seal'
LANGUAGE C VOLATILE STRICT;

-- The secret is write-only: a generated one is returned once, here, and
-- nothing reads a secret back.  An error inside does not log the statement
-- (log_min_error_statement), which may hold the secret.
CREATE FUNCTION orchestrator._api_create_webhook(url text, events text[] DEFAULT '{*}', secret text DEFAULT NULL,
	OUT id uuid, OUT generated_secret text)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	bad    text;
	sealed text;
BEGIN
	IF url IS NULL THEN
		RAISE EXCEPTION 'url must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM orchestrator._http_require_url(url, 'the webhook');
	IF events IS NULL OR cardinality(events) = 0 THEN
		RAISE EXCEPTION 'events must list at least one event type' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''{*}'' for every event, or types such as ''{workflow.failed, step.*}''.';
	END IF;
	-- Event types are "<family>.<what>" of the families orchestrator emits;
	-- a pattern that can match none of them is a mistake, not a subscription.
	SELECT e INTO bad FROM unnest(events) e
		WHERE e IS NULL OR e !~ '^(\*|(workflow|step|signal|circuit)(\.[a-z_]+)*(\.\*)?)$' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid event type pattern %', coalesce(quote_literal(bad), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Event types start with workflow., step., signal. or circuit.',
				  HINT = 'Use "*", an event type such as "workflow.failed", or a prefix such as "step.*".';
	END IF;
	IF secret IS NULL THEN
		generated_secret := 'whsec_' || encode(orchestrator._random_bytes(24), 'base64');
	END IF;
	-- A new key file only while no secret here needs the one that is missing
	-- (a restore without it): rotate_webhook_secret() decides to drop that key.
	sealed := orchestrator._webhook_secret_seal(coalesce(secret, generated_secret),
		NOT EXISTS (SELECT 1 FROM orchestrator.webhook_secrets));
	INSERT INTO orchestrator.webhooks AS w (url, events, created_by)
		VALUES (url, events, orchestrator._caller())
		RETURNING w.id INTO id;
	INSERT INTO orchestrator.webhook_secrets (webhook_id, sealed_secret) VALUES (id, sealed);
END
$$;

-- Replace a webhook's secret (a NULL one generates a secret, returned once).
-- Deliveries are signed with the new secret from their next attempt.  May
-- create a new key file: the way out when the old key is lost.
CREATE FUNCTION orchestrator._api_rotate_webhook_secret(id uuid, secret text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	generated text;
BEGIN
	PERFORM 1 FROM orchestrator.webhooks w WHERE w.id = _api_rotate_webhook_secret.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook % does not exist', coalesce(id::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF secret IS NULL THEN
		generated := 'whsec_' || encode(orchestrator._random_bytes(24), 'base64');
	END IF;
	INSERT INTO orchestrator.webhook_secrets AS s (webhook_id, sealed_secret)
		VALUES (_api_rotate_webhook_secret.id, orchestrator._webhook_secret_seal(coalesce(secret, generated), true))
		ON CONFLICT (webhook_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, created_at = now();
	RETURN generated;
END
$$;

CREATE FUNCTION orchestrator._api_drop_webhook(id uuid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orchestrator.webhooks w WHERE w.id = _api_drop_webhook.id;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	UPDATE orchestrator.webhook_outbox o SET status = 'cancelled', lease_token = NULL
		WHERE o.webhook_id = _api_drop_webhook.id AND o.status IN ('pending', 'delivering');
	RETURN true;
END
$$;

-- Redrive dead deliveries (of one webhook, created at or after "since"):
-- pending again, due now, with the retry schedule from its start (attempt
-- 0; last_status and last_error tell what happened before).  Deliveries of
-- webhooks dropped since stay dead.
CREATE FUNCTION orchestrator._api_retry_webhook_deliveries(webhook_id uuid DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF webhook_id IS NOT NULL
	   AND NOT EXISTS (SELECT 1 FROM orchestrator.webhooks w WHERE w.id = _api_retry_webhook_deliveries.webhook_id) THEN
		RAISE EXCEPTION 'webhook % does not exist', webhook_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See orchestrator.webhooks; pass NULL to redrive the dead deliveries of every webhook.';
	END IF;
	UPDATE orchestrator.webhook_outbox o
		SET status = 'pending', attempt = 0, available_at = now(), lease_token = NULL, worker = NULL
		WHERE o.status = 'dead'
		  AND (_api_retry_webhook_deliveries.webhook_id IS NULL OR o.webhook_id = _api_retry_webhook_deliveries.webhook_id)
		  AND (since IS NULL OR o.created_at >= since)
		  AND EXISTS (SELECT 1 FROM orchestrator.webhooks w WHERE w.id = o.webhook_id);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM orchestrator._wake_at_commit('http');
	END IF;
	RETURN n;
END
$$;

-- A delivery attempt failed: try again per the schedule, or it is dead.
CREATE FUNCTION orchestrator._webhook_failed(id uuid, status integer, error text, retry_after interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	schedule interval[] := string_to_array(current_setting('orchestrator.webhook_retry_schedule'), ',')::interval[];
	n integer;
BEGIN
	SELECT o.attempt INTO n FROM orchestrator.webhook_outbox o WHERE o.id = _webhook_failed.id;
	UPDATE orchestrator.webhook_outbox o
		SET status = CASE WHEN n <= cardinality(schedule) THEN 'pending' ELSE 'dead' END,
			available_at = CASE WHEN n <= cardinality(schedule)
								THEN now() + greatest(schedule[n], coalesce(retry_after, interval '0'))
								ELSE o.available_at END,
			lease_token = NULL, worker = NULL, last_status = _webhook_failed.status,
			last_error = _webhook_failed.error
		WHERE o.id = _webhook_failed.id;
END
$$;

-- Claim due deliveries (called by _http_claim after http steps).  sign_key
-- is the webhook's sealed secret (its text as bytes): the dispatcher opens
-- and uses it in C (src/http.c, sign_delivery), so no plain secret is ever
-- a SQL value.
CREATE FUNCTION orchestrator._webhook_claim(max_items integer, worker text, recover boolean,
	OUT kind text, OUT run_id uuid, OUT step text, OUT id uuid, OUT token uuid, OUT method text,
	OUT url text, OUT headers text[], OUT body text, OUT timeout_ms integer, OUT sign_key bytea)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o   record;
	w   orchestrator.webhooks;
	why text;
	tmo interval := current_setting('orchestrator.default_step_timeout')::interval;
BEGIN
	IF recover THEN
		UPDATE orchestrator.webhook_outbox x SET available_at = now()
			WHERE x.status = 'delivering' AND x.available_at > now()
			  AND x.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s
										 WHERE s.pid IS NOT NULL));
	END IF;
	FOR o IN SELECT x.id, x.webhook_id, x.run_id, x.status, x.payload
			 FROM orchestrator.webhook_outbox x
			 WHERE x.status IN ('pending', 'delivering') AND x.available_at <= now()
			 ORDER BY x.available_at
			 LIMIT max_items
			 FOR UPDATE SKIP LOCKED LOOP
		IF o.status = 'delivering' THEN
			PERFORM orchestrator._webhook_failed(o.id, NULL, 'lease expired (the dispatcher stopped)', NULL);
			CONTINUE;
		END IF;
		SELECT * INTO w FROM orchestrator.webhooks x WHERE x.id = o.webhook_id;
		IF NOT FOUND THEN
			UPDATE orchestrator.webhook_outbox x SET status = 'cancelled' WHERE x.id = o.id;
			CONTINUE;
		END IF;
		why := orchestrator._http_check_url(w.url);
		IF why IS NOT NULL THEN
			UPDATE orchestrator.webhook_outbox x SET status = 'dead', last_error = why, attempt = x.attempt + 1,
				last_attempt_at = now() WHERE x.id = o.id;
			CONTINUE;
		END IF;
		UPDATE orchestrator.webhook_outbox x
			SET status = 'delivering', attempt = x.attempt + 1, lease_token = gen_random_uuid(),
				worker = _webhook_claim.worker, available_at = now() + tmo + interval '30 seconds',
				last_attempt_at = now()
			WHERE x.id = o.id
			RETURNING x.lease_token INTO token;
		kind := 'webhook';
		run_id := o.run_id;
		step := NULL;
		id := o.id;
		method := 'POST';
		url := w.url;
		headers := '{}';
		body := o.payload::text;
		timeout_ms := greatest(1, least(extract(epoch FROM tmo) * 1000, 2147483647))::integer;
		sign_key := (SELECT convert_to(s.sealed_secret, 'UTF8') FROM orchestrator.webhook_secrets s
					 WHERE s.webhook_id = w.id);
		RETURN NEXT;
	END LOOP;
END
$$;

-- Record one delivery attempt (called by _http_record).  Stale leases are
-- ignored; 2xx is delivered; anything else is retried per the schedule.
CREATE FUNCTION orchestrator._webhook_record(id uuid, token uuid, status integer, headers jsonb,
	error_kind text, error text, elapsed_ms float8)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM 1 FROM orchestrator.webhook_outbox o
		WHERE o.id = _webhook_record.id AND o.lease_token = _webhook_record.token AND o.status = 'delivering'
		FOR UPDATE;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF status BETWEEN 200 AND 299 THEN
		UPDATE orchestrator.webhook_outbox o
			SET status = 'delivered', delivered_at = now(), last_status = _webhook_record.status,
				last_error = NULL, lease_token = NULL, worker = NULL
			WHERE o.id = _webhook_record.id;
	ELSE
		PERFORM orchestrator._webhook_failed(id, status,
			coalesce(error, format('HTTP %s', status)),
			orchestrator._retry_after(headers ->> 'retry-after'));
	END IF;
END
$$;
-- Maintenance: partitions ahead, retention by completion time, archival,
-- scheduling with pg_cron, and what pg_dump keeps.
--
-- History partitions are ordinary tables, not extension members: pg_dump
-- dumps them (definition and rows) like any table, and a restore recreates
-- them.  The partitions the install script created are released from the
-- extension here.  A plain pg_restore or psql of a dump works: its
-- statements for partitions and partition indexes that exist already are
-- skipped (src/restore.c; docs/operations.md).

DO $release$
DECLARE
	part regclass;
BEGIN
	FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
				WHERE i.inhparent IN ('orchestrator.workflow_runs'::regclass,
									  'orchestrator.workflow_steps'::regclass,
									  'orchestrator.workflow_events'::regclass)
				ORDER BY 1 LOOP
		EXECUTE format('ALTER EXTENSION orchestrator DROP TABLE %s', part);
	END LOOP;
END
$release$;

-- Indexes for retention (finished_at) and for the analytics views (day of
-- creation, minute of completion, in UTC so that they are immutable).  Each
-- partition gets its own copy.
CREATE INDEX workflow_runs_finished_at ON orchestrator.workflow_runs (finished_at) INCLUDE (id);
CREATE INDEX workflow_runs_created_day ON orchestrator.workflow_runs
	((date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'));
CREATE INDEX workflow_runs_finished_minute ON orchestrator.workflow_runs
	((date_trunc('minute', finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'))
	WHERE finished_at IS NOT NULL;
-- Retention removes the idempotency keys and webhook deliveries of the runs
-- it removes.
CREATE INDEX idempotency_keys_run ON orchestrator.idempotency_keys (run_id);
CREATE INDEX webhook_outbox_run ON orchestrator.webhook_outbox (run_id);

-- Daily roll-ups for the analytics views (85_analytics.sql).  Once every
-- run of a day's partition has finished, the partition never changes again
-- (until retention removes it), so maintain() aggregates it once into
-- run_stats_daily, by the UTC day of creation, owner, workflow, tenant and
-- status.  The watermark is the last day rolled up: the views read the
-- roll-ups for partitions up to it and aggregate the runs of later
-- partitions live.  A day with an unfinished run holds the watermark back.
CREATE TABLE orchestrator.run_stats_daily (
	partition_day date        NOT NULL,
	day      date             NOT NULL,
	owner    regrole          NOT NULL,
	workflow text             NOT NULL,
	tenant   text,
	status   text             NOT NULL,
	runs     bigint           NOT NULL,
	finished bigint           NOT NULL,
	seconds  double precision NOT NULL,
	cost     numeric(20,4)    NOT NULL,
	tokens   numeric          NOT NULL
);
COMMENT ON TABLE orchestrator.run_stats_daily IS
'runs of closed partitions aggregated by UTC day of creation, owner, workflow, tenant and status (maintain() fills it)';
CREATE INDEX run_stats_daily_partition ON orchestrator.run_stats_daily (partition_day);

-- Errors of failed and dead steps, and runs finished per minute, of the
-- same closed partitions (for step_errors and throughput).
CREATE TABLE orchestrator.step_error_stats_daily (
	partition_day date        NOT NULL,
	day         date          NOT NULL,
	owner       regrole       NOT NULL,
	workflow    text          NOT NULL,
	tenant      text,
	step        text          NOT NULL,
	message     text          NOT NULL,
	sqlstate    text,
	occurrences bigint        NOT NULL,
	last_seen   timestamptz
);
CREATE INDEX step_error_stats_daily_partition ON orchestrator.step_error_stats_daily (partition_day);
CREATE TABLE orchestrator.throughput_stats (
	partition_day date        NOT NULL,
	minute      timestamptz   NOT NULL,
	owner       regrole       NOT NULL,
	workflow    text          NOT NULL,
	tenant      text,
	status      text          NOT NULL,
	runs        bigint        NOT NULL
);
CREATE INDEX throughput_stats_partition ON orchestrator.throughput_stats (partition_day);
CREATE INDEX throughput_stats_minute ON orchestrator.throughput_stats (minute);

-- Step duration percentiles of closed partitions, per partition day,
-- workflow and step: once per owner (what that role sees) and once over all
-- owners (owner NULL: what administrators see), since percentiles do not
-- add up.  owner is the workflow's owner; the roll-ups are what owners and
-- administrators see (a role that only starts another's workflow sees its
-- runs in orchestrator.runs, not in the aggregates).
CREATE TABLE orchestrator.step_duration_stats_daily (
	partition_day date        NOT NULL,
	owner       regrole,
	workflow    text          NOT NULL,
	step        text          NOT NULL,
	kind        text          NOT NULL,
	samples     bigint        NOT NULL,
	p50         double precision,
	p95         double precision,
	p99         double precision,
	max         double precision
);
CREATE INDEX step_duration_stats_daily_partition ON orchestrator.step_duration_stats_daily (partition_day);

CREATE TABLE orchestrator.run_stats_watermark (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	day       date    NOT NULL
);
COMMENT ON TABLE orchestrator.run_stats_watermark IS
'the last partition day aggregated into run_stats_daily (no row: none yet)';

-- The first run id the views aggregate live: the start of the day after the
-- watermark (all ids when there is none).  SECURITY DEFINER: the views call
-- it with the caller's rights, and it reveals only that boundary.
CREATE FUNCTION orchestrator._stats_live_from()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce((SELECT orchestrator.uuid_v7_boundary((w.day + 1)::timestamp AT TIME ZONE 'UTC')
					 FROM orchestrator.run_stats_watermark w),
					'00000000-0000-0000-0000-000000000000'::uuid)
$$;

-- Aggregate one partition day (by its id range) into run_stats_daily,
-- step_error_stats_daily, throughput_stats and step_duration_stats_daily,
-- replacing what was there for that day.
CREATE FUNCTION orchestrator._roll_up_day(day date)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo uuid := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
	hi uuid := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
	n  bigint;
BEGIN
	DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	EXECUTE format($q$
		INSERT INTO orchestrator.run_stats_daily (partition_day, day, owner, workflow, tenant, status, runs, finished, seconds, cost, tokens)
		SELECT %3$L::date, (r.created_at AT TIME ZONE 'UTC')::date, r.owner, r.name, r.tenant, r.status, count(*),
			   count(r.finished_at), coalesce(sum(extract(epoch FROM r.finished_at - r.created_at)), 0),
			   sum(r.cost), coalesce(sum(t.tokens), 0)
		FROM orchestrator.workflow_runs r
		LEFT JOIN (SELECT s.run_id, sum(orchestrator._tokens(s.result)) AS tokens
				   FROM orchestrator.workflow_steps s
				   WHERE s.run_id >= %1$L AND s.run_id < %2$L AND s.result ? 'tokens'
				   GROUP BY s.run_id) t ON t.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L
		GROUP BY 2, 3, 4, 5, 6$q$, lo, hi, day);
	GET DIAGNOSTICS n = ROW_COUNT;
	EXECUTE format($q$
		INSERT INTO orchestrator.step_error_stats_daily (partition_day, day, owner, workflow, tenant, step, message,
														  sqlstate, occurrences, last_seen)
		SELECT %3$L::date, (r.created_at AT TIME ZONE 'UTC')::date, r.owner, r.name, r.tenant, s.step,
			   coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)'), s.error ->> 'sqlstate',
			   count(*), max(s.finished_at)
		FROM orchestrator.workflow_runs r
		JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
		  AND s.status IN ('failed', 'dead')
		GROUP BY 2, 3, 4, 5, 6, 7, 8$q$, lo, hi, day);
	EXECUTE format($q$
		INSERT INTO orchestrator.throughput_stats (partition_day, minute, owner, workflow, tenant, status, runs)
		SELECT %3$L::date, date_trunc('minute', r.finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
			   r.owner, r.name, r.tenant, r.status, count(*)
		FROM orchestrator.workflow_runs r
		WHERE r.id >= %1$L AND r.id < %2$L AND r.finished_at IS NOT NULL
		GROUP BY 2, 3, 4, 5, 6$q$, lo, hi, day);
	EXECUTE format($q$
		INSERT INTO orchestrator.step_duration_stats_daily (partition_day, owner, workflow, step, kind, samples, p50, p95, p99, max)
		SELECT %3$L::date, r.owner, r.name, s.step, s.kind, count(*),
			   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   max(extract(epoch FROM s.finished_at - s.started_at))::double precision
		FROM orchestrator.workflow_runs r
		JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
		  AND s.status = 'succeeded' AND s.started_at IS NOT NULL
		GROUP BY GROUPING SETS ((r.owner, r.name, s.step, s.kind), (r.name, s.step, s.kind))$q$, lo, hi, day);
	RETURN n;
END
$$;

-- Forget the roll-ups from a day on, so that maintain() aggregates those
-- days again (after loading or changing history in the past).
CREATE FUNCTION orchestrator._api_rebuild_stats(from_day date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- the number of watermark rows changed (not of the roll-up rows removed)
	IF from_day IS NULL THEN
		DELETE FROM orchestrator.run_stats_watermark;
		GET DIAGNOSTICS n = ROW_COUNT;
		DELETE FROM orchestrator.run_stats_daily;
		DELETE FROM orchestrator.step_error_stats_daily;
		DELETE FROM orchestrator.throughput_stats;
		DELETE FROM orchestrator.step_duration_stats_daily;
	ELSE
		UPDATE orchestrator.run_stats_watermark w SET day = least(w.day, from_day - 1)
			WHERE w.day >= from_day;
		GET DIAGNOSTICS n = ROW_COUNT;
		DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day >= from_day;
	END IF;
	RETURN n;
END
$$;

-- Days (UTC) after today for which every history table has a partition.
CREATE FUNCTION orchestrator._partitions_ahead()
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	today date := (now() AT TIME ZONE 'UTC')::date;
	n     integer := 0;
BEGIN
	LOOP
		EXIT WHEN n >= 1000
			OR to_regclass(format('orchestrator.workflow_runs_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL
			OR to_regclass(format('orchestrator.workflow_steps_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL
			OR to_regclass(format('orchestrator.workflow_events_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

-- Remove the given runs (all created on one UTC day) with their steps,
-- events, signals, idempotency keys and webhook deliveries.  The day's bounds are spelled out so
-- that each statement touches one partition.
CREATE FUNCTION orchestrator._delete_runs(day date, ids uuid[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo uuid := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
	hi uuid := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
	n  bigint;
BEGIN
	EXECUTE format('DELETE FROM orchestrator.workflow_events WHERE run_id >= %L AND run_id < %L AND run_id = ANY ($1)', lo, hi) USING ids;
	EXECUTE format('DELETE FROM orchestrator.workflow_steps WHERE run_id >= %L AND run_id < %L AND run_id = ANY ($1)', lo, hi) USING ids;
	DELETE FROM orchestrator.signals s WHERE s.run_id = ANY (ids);
	DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id = ANY (ids);
	DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id = ANY (ids);
	EXECUTE format('DELETE FROM orchestrator.workflow_runs WHERE id >= %L AND id < %L AND id = ANY ($1)', lo, hi) USING ids;
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

-- Schedule maintain() with pg_cron (one job per database, by name: calling
-- again changes the schedule and returns the same job id).
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

-- pg_dump: the rows of the extension's own tables (definitions, the work
-- queue, signals, ...) are dumped with the data; the partitions of the
-- history tables are ordinary tables and dumped anyway.
DO $dump$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
			 JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
				  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
			 JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'orchestrator'
			 WHERE c.relkind = 'r'
			 ORDER BY 1 LOOP
		PERFORM pg_catalog.pg_extension_config_dump(t, '');
	END LOOP;
END
$dump$;
-- Health and metrics for operators: health() as JSON for a probe or a
-- human, metrics() in the Prometheus text exposition format for
-- postgres_exporter (custom query) or a scrape proxy.

-- Per queue: ready now, scheduled later (retries, timers), running under a
-- lease, and the age of the oldest ready item.
CREATE FUNCTION orchestrator._queue_stats(
	OUT queue text, OUT ready bigint, OUT scheduled bigint, OUT running bigint,
	OUT oldest_ready_age_seconds double precision)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.queue,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()),
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at > now()),
		   count(*) FILTER (WHERE q.lease_token IS NOT NULL),
		   coalesce(extract(epoch FROM now() - min(q.available_at)
				FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()))::double precision, 0)
	FROM orchestrator.work_queue q
	GROUP BY q.queue
$$;

-- health(): "live" when a dispatcher is running; "ready" when the
-- dispatchers keep up: none of their work (queues @sql, @timer, @http) has
-- been ready for longer than orchestrator.health_max_ready_age (a step a
-- dispatcher is running right now is not waiting), no dispatcher has
-- failed its last 3 turns or more, and work is not ready with no dispatcher
-- running.  Every problem is listed in "problems"; "status" is 'ok' without any.
CREATE FUNCTION orchestrator._api_health()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
	configured integer := current_setting('orchestrator.workers')::integer;
	max_age    interval := current_setting('orchestrator.health_max_ready_age')::interval;
	alive      integer;
	last_turn  timestamptz;
	failing    integer;
	dispatchers jsonb;
	queues     jsonb;
	depth      bigint;
	oldest     double precision;
	own_ready  bigint;
	own_oldest double precision;
	ahead      integer := orchestrator._partitions_ahead();
	active     bigint;
	breakers   jsonb;
	problems   text[] := '{}';
	not_ready  boolean := false;
	f          record;
BEGIN
	SELECT count(*), max(w.last_active), count(*) FILTER (WHERE w.consecutive_failures >= 3),
		   coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('slot', w.slot, 'pid', w.pid,
				'started_at', w.started_at, 'last_active', w.last_active, 'steps_processed', w.steps_processed,
				'consecutive_failures', w.consecutive_failures, 'last_error', w.last_error,
				'last_error_at', w.last_error_at, 'run_id', w.run_id, 'step', w.step, 'step_since', w.step_since))
				ORDER BY w.slot), '[]')
	INTO alive, last_turn, failing, dispatchers
	FROM orchestrator._worker_status() w
	WHERE w.pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.pid);
	SELECT coalesce(jsonb_agg(jsonb_build_object('queue', s.queue, 'ready', s.ready, 'scheduled', s.scheduled,
					'running', s.running, 'oldest_ready_age_seconds', round(s.oldest_ready_age_seconds::numeric, 3))
				ORDER BY s.queue), '[]'),
		   coalesce(sum(s.ready), 0), coalesce(max(s.oldest_ready_age_seconds), 0)
	INTO queues, depth, oldest
	FROM orchestrator._queue_stats() s;
	-- The dispatchers' own work that waits: ready, not leased, and not the
	-- step a dispatcher is running.
	WITH busy AS MATERIALIZED (
		SELECT b.run_id, b.step FROM orchestrator._worker_status() b WHERE b.run_id IS NOT NULL)
	SELECT count(*), coalesce(extract(epoch FROM now() - min(q.available_at))::double precision, 0)
	INTO own_ready, own_oldest
	FROM orchestrator.work_queue q
	WHERE left(q.queue, 1) = '@' AND q.lease_token IS NULL AND q.available_at <= now()
	  AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.run_id = q.run_id AND b.step = q.step);
	SELECT count(*) INTO active FROM orchestrator.workflow_runs r WHERE r.finished_at IS NULL;
	SELECT coalesce(jsonb_agg(jsonb_build_object('owner', c.owner, 'host', c.host, 'state', c.state, 'failures', c.failures,
				'opened_at', c.opened_at, 'retry_at', c.retry_at) ORDER BY c.host, c.owner::text), '[]')
	INTO breakers
	FROM orchestrator.http_circuits c WHERE c.state <> 'closed';

	IF alive < configured THEN
		problems := problems || format('%s of %s dispatchers running', alive, configured);
	END IF;
	-- The usual reason for none: they serve another database, or one that
	-- does not exist (then they exit at once and are started again).
	IF current_setting('orchestrator.database') <> current_database() THEN
		problems := problems || CASE
			WHEN NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = current_setting('orchestrator.database'))
			THEN format('orchestrator.database is "%s", which does not exist: the dispatchers cannot start; set it to "%s"',
						current_setting('orchestrator.database'), current_database())
			ELSE format('orchestrator.database is "%s": no dispatcher serves this database ("%s")',
						current_setting('orchestrator.database'), current_database()) END;
		not_ready := true;
	END IF;
	IF alive = 0 AND own_ready > 0 THEN
		problems := problems || format('no dispatcher is running and %s sql, timer or http items are ready', own_ready);
		not_ready := true;
	END IF;
	IF own_ready > 0 AND own_oldest > extract(epoch FROM max_age) THEN
		problems := problems || format('dispatcher work has been ready for %s s, longer than orchestrator.health_max_ready_age (%s)',
			round(own_oldest::numeric, 1), max_age);
		not_ready := true;
	END IF;
	FOR f IN SELECT x ->> 'slot' AS slot, x ->> 'consecutive_failures' AS n, x ->> 'last_error' AS error
			 FROM jsonb_array_elements(dispatchers) x
			 WHERE (x ->> 'consecutive_failures')::integer >= 3 LOOP
		problems := problems || format('dispatcher %s failed its last %s turns: %s', f.slot, f.n, f.error);
		not_ready := true;
	END LOOP;
	IF ahead < 1 THEN
		problems := problems || 'no partition for tomorrow: run orchestrator.maintain()';
	END IF;
	RETURN jsonb_build_object(
		'status', CASE WHEN cardinality(problems) = 0 THEN 'ok' ELSE 'degraded' END,
		'live', alive > 0,
		'ready', NOT not_ready,
		'problems', to_jsonb(problems),
		'workers', jsonb_build_object('configured', configured, 'alive', alive, 'failing', failing,
			'last_active', last_turn),
		'dispatchers', dispatchers,
		'active_runs', active,
		'queue_depth', depth,
		'oldest_ready_age_seconds', round(oldest::numeric, 3),
		'dispatcher_ready', own_ready,
		'dispatcher_oldest_ready_age_seconds', round(own_oldest::numeric, 3),
		'queues', queues,
		'partitions_ahead', ahead,
		-- Open and half-open per-host breakers of http steps and webhooks.
		'open_circuit_breakers', breakers);
END
$$;

-- A Prometheus label value: backslash, double quote and newline escaped.
CREATE FUNCTION orchestrator._prom_label(v text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT replace(replace(replace(coalesce(v, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n') $$;

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
	out := out || E'# HELP orchestrator_live 1 when a dispatcher is running (health() "live").\n# TYPE orchestrator_live gauge\n'
		|| format(E'orchestrator_live %s\n', CASE WHEN (h ->> 'live')::boolean THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_ready 1 when the dispatchers keep up with their work (health() "ready").\n# TYPE orchestrator_ready gauge\n'
		|| format(E'orchestrator_ready %s\n', CASE WHEN (h ->> 'ready')::boolean THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_workers_configured Dispatchers configured (orchestrator.workers).\n# TYPE orchestrator_workers_configured gauge\n'
		|| format(E'orchestrator_workers_configured %s\n', h -> 'workers' ->> 'configured');
	out := out || E'# HELP orchestrator_workers_alive Dispatchers running.\n# TYPE orchestrator_workers_alive gauge\n'
		|| format(E'orchestrator_workers_alive %s\n', h -> 'workers' ->> 'alive');
	out := out || E'# HELP orchestrator_worker_steps_total Steps handled by a dispatcher since it started.\n# TYPE orchestrator_worker_steps_total counter\n';
	FOR w IN SELECT s.slot, s.steps_processed FROM orchestrator._worker_status() s ORDER BY s.slot LOOP
		out := out || format(E'orchestrator_worker_steps_total{slot="%s"} %s\n', w.slot, w.steps_processed);
	END LOOP;
	out := out || E'# HELP orchestrator_worker_consecutive_failures Failed turns of a dispatcher since its last good one.\n# TYPE orchestrator_worker_consecutive_failures gauge\n';
	FOR w IN SELECT s.slot, s.consecutive_failures FROM orchestrator._worker_status() s ORDER BY s.slot LOOP
		out := out || format(E'orchestrator_worker_consecutive_failures{slot="%s"} %s\n', w.slot, w.consecutive_failures);
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
-- Analytics views for psql and Grafana.
--
-- Each view is security_barrier and shows only the runs of the workflows the
-- caller owns (members of orchestrator_admin see all).  The admin check is
-- an uncorrelated subquery, evaluated once per query rather than per row;
-- the per-row test is _acts_as(owner).  (The role that starts another's
-- workflow sees those runs in orchestrator.runs, not in these aggregates.)  Days and minutes are UTC and are
-- returned as timestamptz, so Grafana's $__timeFilter(day) works on them.
-- A filter on "day" (or "minute") is pushed into the view and answered from
-- the expression indexes on workflow_runs (see 80_maintenance.sql); a day is
-- the day the run was created.
--
-- runs_per_day, error_rates, costs_per_day, step_errors and throughput read
-- the daily roll-ups that maintain() keeps for closed partitions
-- (run_stats_daily, step_error_stats_daily, throughput_stats, up to the
-- watermark) and aggregate only later partitions live (ids from
-- _stats_live_from(), pruned at run time): exactly the same numbers as a
-- live aggregation, without reading months of runs.  step_durations reads
-- percentiles rolled up per partition day (see there).

-- Runs per definition, tenant, status and day.
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

-- Step duration percentiles (seconds, started to finished, succeeded
-- attempts) per definition, step and day.  Percentiles do not add up, so the
-- roll-ups hold them per owner and over all owners, and the view picks the
-- rows the caller may see: all owners for administrators, its own otherwise.
-- Here "day" is the UTC day of the run id (its creation, to the
-- millisecond), which is also the partition: roll-ups and the live part never
-- share a day.
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

-- Error rates of finished runs per definition, tenant and day.
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

-- The errors of failed and dead steps, by message: roll-ups up to the
-- watermark, live after it.
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

-- Runs finished per minute: roll-ups up to the watermark, live after it.
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

-- Queue depth now: ready, scheduled (retry or timer due later), running
-- (leased), and the age of the oldest ready step, per queue.
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

-- Tokens reported by a step result: a number, or an object with "total",
-- or an object whose numeric fields are summed ({"input": 10, "output": 5}).
CREATE FUNCTION orchestrator._tokens(result jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE jsonb_typeof(result -> 'tokens')
		WHEN 'number' THEN (result ->> 'tokens')::numeric
		WHEN 'object' THEN CASE jsonb_typeof(result -> 'tokens' -> 'total')
			WHEN 'number' THEN (result -> 'tokens' ->> 'total')::numeric
			ELSE (SELECT sum((e.value #>> '{}')::numeric) FROM jsonb_each(result -> 'tokens') e
				  WHERE jsonb_typeof(e.value) = 'number') END
		END
$$;

-- Cost (numeric, 4 decimal places, summed exactly) and tokens per
-- definition, tenant and day.  Cost is what the steps reported in "cost"
-- (accumulated on the run); tokens are summed from the steps' results.
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
-- The public API: one entry point per function, bound to the gate in
-- src/caller.c.  The gate records the caller (current_user at the call),
-- refuses calls from security-restricted operations, and runs
-- orchestrator._api_<name>() with the same arguments: the implementation,
-- SECURITY DEFINER, which acts for that caller.  No implementation is
-- granted to anyone; an entry point is the only way in.

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

CREATE FUNCTION orchestrator.retry_run(run_id uuid, steps text[] DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.retry_run(uuid, text[]) IS
'resume a failed or cancelled run: its failed and cancelled steps run again, succeeded steps keep their results; false when the run is not failed or cancelled';

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

CREATE FUNCTION orchestrator.create_webhook(url text, events text[] DEFAULT '{*}', secret text DEFAULT NULL,
	OUT id uuid, OUT generated_secret text)
RETURNS record
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.create_webhook(text, text[], text) IS
'subscribe a URL to run events (patterns such as ''*'', ''workflow.failed'', ''step.*''); a NULL secret generates one, returned once';

CREATE FUNCTION orchestrator.rotate_webhook_secret(id uuid, secret text DEFAULT NULL)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.rotate_webhook_secret(uuid, text) IS
'replace the signing secret of a webhook; a NULL secret generates one, returned once';

CREATE FUNCTION orchestrator.drop_webhook(id uuid)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.drop_webhook(uuid) IS
'remove a webhook subscription; its pending deliveries are cancelled';

CREATE FUNCTION orchestrator.retry_webhook_deliveries(webhook_id uuid DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.retry_webhook_deliveries(uuid, timestamptz) IS
'queue dead webhook deliveries again (of one webhook, created at or after since); returns how many';
-- Privileges.  Nothing is granted to PUBLIC.  The public functions are the
-- entry points of 88_api.sql; their implementations (_api_*) and every other
-- internal function (names starting with "_") are callable only by the
-- extension owner: the implementations are SECURITY DEFINER and act for the
-- caller the entry point recorded.

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
	orchestrator.retry_run(uuid, text[]),
	orchestrator.signal_workflow(uuid, text, jsonb),
	orchestrator.events(uuid, bigint),
	orchestrator.claim_steps(text, text, integer, interval),
	orchestrator.heartbeat_step(uuid, text, uuid),
	orchestrator.complete_step(uuid, text, uuid, jsonb),
	orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]),
	orchestrator.fail_step(uuid, text, uuid, jsonb, boolean)
TO orchestrator_user;

-- The views and row-level security policies filter rows by caller; these
-- functions only reveal what the caller may know of itself.
GRANT EXECUTE ON FUNCTION
	orchestrator._caller(),
	orchestrator._acts_as(regrole),
	orchestrator._is_admin(),
	orchestrator._may_see(regrole, regrole)
TO orchestrator_user;
GRANT SELECT ON orchestrator.runs, orchestrator.run_steps TO orchestrator_user;

-- Workflows, their grants and their definitions are readable as tables,
-- each row by the roles that own the workflow or were granted it, and by
-- admins (row-level security; the extension's own functions run as the
-- tables' owner and are not filtered).
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
-- Privileges of the operations and analytics surface (after 90_grants.sql,
-- which revokes everything from PUBLIC).  Maintenance, health and metrics are
-- for orchestrator_admin; the analytics views filter rows by caller like
-- orchestrator.runs, so every orchestrator_user may read them.

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
-- Called by the views with the caller's rights; reveals nothing.
GRANT EXECUTE ON FUNCTION orchestrator._tokens(jsonb), orchestrator._stats_live_from() TO orchestrator_user;
-- Privileges of HTTP steps and webhooks (after 90_grants.sql, which revokes
-- everything from PUBLIC).  Webhooks and their deliveries are for
-- orchestrator_admin; their secrets (webhook_secrets) for no role: they are
-- write-only.  Each user sees the circuit breakers of its own workflows.

GRANT EXECUTE ON FUNCTION
	orchestrator.create_webhook(text, text[], text),
	orchestrator.rotate_webhook_secret(uuid, text),
	orchestrator.drop_webhook(uuid),
	orchestrator.retry_webhook_deliveries(uuid, timestamptz)
TO orchestrator_admin;
GRANT SELECT ON orchestrator.webhooks, orchestrator.webhook_deliveries TO orchestrator_admin;
GRANT SELECT ON orchestrator.circuit_breakers TO orchestrator_user;
