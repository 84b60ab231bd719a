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
	trace_id        text          DEFAULT orchestrator._new_trace_id(),
	trace_parent    text,
	admission       smallint      NOT NULL DEFAULT 0,
	parent_step     text,
	PRIMARY KEY (id)
) PARTITION BY RANGE (id);
COMMENT ON TABLE orchestrator.workflow_runs IS 'one row per workflow run (partitioned by run id = creation day)';
COMMENT ON COLUMN orchestrator.workflow_runs.owner IS 'owner of the workflow: its sql steps run with this role''s rights';
COMMENT ON COLUMN orchestrator.workflow_runs.started_by IS 'the role that started the run';
COMMENT ON COLUMN orchestrator.workflow_runs.trace_id IS 'W3C trace id (32 hex digits) of the run''s trace: the caller''s (option traceparent) or a random one; NULL for runs created before 0.4 (their run id serves)';
COMMENT ON COLUMN orchestrator.workflow_runs.admission IS 'admission slots the run holds while active (bits: 1 global, 2 workflow, 4 tenant; src/admission.c)';
COMMENT ON COLUMN orchestrator.workflow_runs.parent_id IS 'the run whose step of kind workflow started this one (a child run); NULL for runs started otherwise';
COMMENT ON COLUMN orchestrator.workflow_runs.parent_step IS 'the step of the parent run that started this child run';
-- A parent's children (get_workflow), without a scan: only child runs have
-- an entry.
CREATE INDEX workflow_runs_parent ON orchestrator.workflow_runs (parent_id) WHERE parent_id IS NOT NULL;
COMMENT ON COLUMN orchestrator.workflow_runs.trace_parent IS 'the traceparent given to start_workflow (normalised to version 00): the caller''s span is the parent of the run''s span';

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
	progress    jsonb,
	element     integer,
	item        jsonb,
	child_id    uuid,
	PRIMARY KEY (run_id, step)
) PARTITION BY RANGE (run_id);
COMMENT ON COLUMN orchestrator.workflow_steps.element IS 'for an element of a for_each step (named "<step>[<element>]"): its index in the array; NULL for other steps';
COMMENT ON COLUMN orchestrator.workflow_steps.item IS 'for an element of a for_each step: its array element ($.item in its templates)';
COMMENT ON COLUMN orchestrator.workflow_steps.child_id IS 'for a step of kind workflow: the child run of its latest attempt';
COMMENT ON COLUMN orchestrator.workflow_steps.attempt_base IS 'attempts made before the run was last resumed (retry_run): max_attempts counts from here';
COMMENT ON COLUMN orchestrator.workflow_steps.progress IS 'the latest progress an external worker reported (heartbeat_step)';
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
-- Claims read the rows without a lease through work_queue_claim, expired
-- leases through work_queue_leased: a lease moves a row from the first index
-- to the second (two index entries with the primary key's, not three), and
-- claims never step over the live leases of their queue.
-- No vacuum truncates it (vacuum_truncate): a drained queue's empty pages
-- would be cut off under an ACCESS EXCLUSIVE lock that every start, claim and
-- step waits behind, for a table that grows again a moment later.
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
) WITH (fillfactor = 70, vacuum_truncate = false);
CREATE INDEX work_queue_claim ON orchestrator.work_queue (queue, priority DESC, available_at) WHERE lease_token IS NULL;
CREATE INDEX work_queue_leased ON orchestrator.work_queue (available_at) WHERE lease_token IS NOT NULL;

-- Queue limits (set_queue_limit): claim_steps() never hands out more than
-- max_running live leases of the queue at once.  Claims of a limited queue
-- update its row first (claimed_at), so they follow one another and each
-- counts the leases the others committed.
CREATE TABLE orchestrator.queue_limits (
	queue       text        NOT NULL PRIMARY KEY,
	max_running integer     NOT NULL CHECK (max_running >= 0),
	set_by      regrole     NOT NULL,
	set_at      timestamptz NOT NULL DEFAULT now(),
	claimed_at  timestamptz
);
COMMENT ON TABLE orchestrator.queue_limits IS 'the most leased steps of an external queue at once (set_queue_limit)';

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
-- The events are only inserted (fillfactor 100); runs and steps keep
-- orchestrator.partition_fillfactor (75 unless set) of each page for
-- inserts, the rest for their updates' new versions (HOT when they fit).
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
				CASE tbl WHEN 'workflow_events' THEN 100
					ELSE coalesce(nullif(current_setting('orchestrator.partition_fillfactor', true), '')::integer, 75) END);
			created := created + 1;
		END LOOP;
	END LOOP;
	RETURN created;
END
$$;

-- A dump restored afterwards brings partitions of some of these days too:
-- src/restore.c lets its statements meet the ones made here.
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 1, 9);
