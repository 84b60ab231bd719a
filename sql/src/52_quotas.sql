-- Hard limits per owner role (src/quota.c): the largest input, step result
-- and signal payload, the most events per run, active runs, pending
-- webhook deliveries and live session keys.  A row here, set by an administrator with
-- set_owner_limits(), overrides the defaults (the settings
-- orchestrator.max_*); a NULL column is the default, 0 is no limit.  Going
-- over raises 54000 (program_limit_exceeded) and writes nothing.
--
-- These are per role and refuse; the per-tenant admission limits of
-- flow control make runs wait instead.

CREATE TABLE orchestrator.owner_limits (
	owner                regrole     PRIMARY KEY,
	max_input_bytes      bigint      CHECK (max_input_bytes >= 0),
	max_result_bytes     bigint      CHECK (max_result_bytes >= 0),
	max_signal_bytes     bigint      CHECK (max_signal_bytes >= 0),
	max_events_per_run   bigint      CHECK (max_events_per_run >= 0),
	max_active_runs      bigint      CHECK (max_active_runs >= 0),
	max_pending_webhooks bigint      CHECK (max_pending_webhooks >= 0),
	max_sessions         bigint      CHECK (max_sessions >= 0),
	updated_at           timestamptz NOT NULL DEFAULT now(),
	updated_by           regrole     NOT NULL
);
COMMENT ON TABLE orchestrator.owner_limits IS 'hard limits per owner role (NULL: the orchestrator.max_* default; 0: none), set with set_owner_limits()';

-- Active runs per owner are counted only for an owner with such a limit,
-- through this index.
CREATE INDEX workflow_runs_active_owner ON orchestrator.workflow_runs (owner) WHERE finished_at IS NULL;

CREATE FUNCTION orchestrator._owner_limit(owner regrole, name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'orchestrator_owner_limit'
LANGUAGE C STABLE STRICT PARALLEL UNSAFE;

CREATE FUNCTION orchestrator._check_signal(run_id uuid, owner regrole, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_check_signal'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION orchestrator._owner_limits_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_owner_limits_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The limits of a role as they apply: {"max_input_bytes": n, ...} (0: none).
CREATE FUNCTION orchestrator._effective_owner_limits(role regrole)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_object_agg(k, orchestrator._owner_limit(role, k))
	FROM unnest(ARRAY['max_input_bytes', 'max_result_bytes', 'max_signal_bytes', 'max_events_per_run',
					  'max_active_runs', 'max_pending_webhooks', 'max_sessions']) k
$$;

-- set_owner_limits(role, limits): merge "limits" into the role's row (a key
-- with null goes back to the default); admins only.  Returns the limits as
-- they now apply.
CREATE FUNCTION orchestrator._api_set_owner_limits(role regrole, limits jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY['max_input_bytes', 'max_result_bytes', 'max_signal_bytes', 'max_events_per_run',
						  'max_active_runs', 'max_pending_webhooks', 'max_sessions'];
	bad   text;
	k     text;
	v     jsonb;
BEGIN
	IF NOT orchestrator._is_admin() THEN
		RAISE EXCEPTION 'permission denied to set owner limits'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Owner limits are set by members of orchestrator_admin.',
				  HINT = 'Ask an administrator; orchestrator.get_owner_limits() shows your limits.';
	END IF;
	IF role IS NULL THEN
		RAISE EXCEPTION 'role must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF limits IS NULL OR jsonb_typeof(limits) <> 'object' THEN
		RAISE EXCEPTION 'limits must be a JSON object' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(limits::text, 'NULL')),
			HINT = format('Known limits: %s; a number (0: no limit) or null (the default).', array_to_string(known, ', '));
	END IF;
	SELECT x INTO bad FROM jsonb_object_keys(limits) x WHERE x <> ALL (known) ORDER BY x LIMIT 1;
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'unknown owner limit "%"', bad USING ERRCODE = 'invalid_parameter_value',
			HINT = format('Known limits: %s.', array_to_string(known, ', '));
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(limits) LOOP
		IF jsonb_typeof(v) <> 'null' AND (jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]{1,18}$') THEN
			RAISE EXCEPTION 'owner limit "%" must be a non-negative integer or null', k
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = format('Got %s.', v),
					  HINT = '0 is no limit; null goes back to the default (the setting orchestrator.max_*).';
		END IF;
	END LOOP;

	INSERT INTO orchestrator.owner_limits AS l (owner, updated_by) VALUES (role, orchestrator._caller())
		ON CONFLICT (owner) DO UPDATE SET updated_at = now(), updated_by = excluded.updated_by;
	UPDATE orchestrator.owner_limits l SET
		max_input_bytes      = CASE WHEN limits ? 'max_input_bytes' THEN (limits ->> 'max_input_bytes')::bigint ELSE l.max_input_bytes END,
		max_result_bytes     = CASE WHEN limits ? 'max_result_bytes' THEN (limits ->> 'max_result_bytes')::bigint ELSE l.max_result_bytes END,
		max_signal_bytes     = CASE WHEN limits ? 'max_signal_bytes' THEN (limits ->> 'max_signal_bytes')::bigint ELSE l.max_signal_bytes END,
		max_events_per_run   = CASE WHEN limits ? 'max_events_per_run' THEN (limits ->> 'max_events_per_run')::bigint ELSE l.max_events_per_run END,
		max_active_runs      = CASE WHEN limits ? 'max_active_runs' THEN (limits ->> 'max_active_runs')::bigint ELSE l.max_active_runs END,
		max_pending_webhooks = CASE WHEN limits ? 'max_pending_webhooks' THEN (limits ->> 'max_pending_webhooks')::bigint ELSE l.max_pending_webhooks END,
		max_sessions         = CASE WHEN limits ? 'max_sessions' THEN (limits ->> 'max_sessions')::bigint ELSE l.max_sessions END
	WHERE l.owner = role;
	-- a row of defaults only is no row
	DELETE FROM orchestrator.owner_limits l WHERE l.owner = role
		AND l.max_input_bytes IS NULL AND l.max_result_bytes IS NULL AND l.max_signal_bytes IS NULL
		AND l.max_events_per_run IS NULL AND l.max_active_runs IS NULL AND l.max_pending_webhooks IS NULL
		AND l.max_sessions IS NULL;
	-- every backend forgets the rows it keeps when this commits; this one now
	PERFORM orchestrator._owner_limits_changed();
	RETURN orchestrator._effective_owner_limits(role);
END
$$;

-- get_owner_limits(role): the limits that apply to a role (default: the
-- caller), with where each comes from; a role's own, or any role's for an
-- admin.
CREATE FUNCTION orchestrator._api_get_owner_limits(role regrole)
RETURNS TABLE (name text, value bigint, source text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	who regrole := coalesce(role, orchestrator._caller());
	l   orchestrator.owner_limits;
BEGIN
	IF NOT (orchestrator._acts_as(who) OR orchestrator._is_admin()) THEN
		RAISE EXCEPTION 'permission denied to read the limits of role "%"', who
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'A role reads its own limits; members of orchestrator_admin read every role''s.';
	END IF;
	SELECT * INTO l FROM orchestrator.owner_limits x WHERE x.owner = who;
	RETURN QUERY
	SELECT k.name, orchestrator._owner_limit(who, k.name),
		   CASE WHEN to_jsonb(l) ->> k.name IS NOT NULL THEN 'role' ELSE k.setting END
	FROM (VALUES (1, 'max_input_bytes', 'orchestrator.max_input_size'),
				 (2, 'max_result_bytes', 'orchestrator.max_result_size'),
				 (3, 'max_signal_bytes', 'orchestrator.max_signal_size'),
				 (4, 'max_events_per_run', 'orchestrator.max_events_per_run'),
				 (5, 'max_active_runs', 'orchestrator.max_active_runs_per_owner'),
				 (6, 'max_pending_webhooks', 'orchestrator.max_pending_webhooks'),
				 (7, 'max_sessions', 'orchestrator.max_sessions_per_owner')) k(n, name, setting)
	ORDER BY k.n;
END
$$;
