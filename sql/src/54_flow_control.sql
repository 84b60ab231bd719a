-- Flow control (issue 12): admission limits on active runs, rate limits on
-- steps.  The transitions are in C (src/admission.c, src/rate_limit.c),
-- hooked into the state machine (src/engine.c); here are their tables, the
-- internal functions the PL/pgSQL API calls, and set_tenant_limits /
-- get_tenant_limits.
--
-- Active runs (pending, running, compensating) hold a slot of each scope
-- with a limit: the setting orchestrator.max_active_runs (all runs), a
-- workflow's "max_active_runs" (its latest version's, counting runs of every
-- version), a tenant's set_tenant_limits().  A run over a limit is created
-- "queued" and admitted, best priority then oldest first, when a slot
-- frees.

-- One row per scope with a limit: the limit (NULL for global: the setting)
-- and the slots held.  The row is locked by every start and end of a run in
-- its scope, so that they follow one another (docs/architecture.md).
CREATE TABLE orchestrator.admission_slots (
	scope      text    NOT NULL CHECK (scope IN ('global', 'workflow', 'tenant')),
	key        text    NOT NULL,
	max_active integer CHECK (max_active > 0),
	active     integer NOT NULL DEFAULT 0 CHECK (active >= 0),
	PRIMARY KEY (scope, key)
) WITH (fillfactor = 50);
COMMENT ON TABLE orchestrator.admission_slots IS 'admission limits and the slots held, per scope (global, workflow, tenant)';

-- Queued runs, in the order they are admitted.
CREATE TABLE orchestrator.admission_queue (
	run_id    uuid        NOT NULL PRIMARY KEY,
	priority  integer     NOT NULL,
	queued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	workflow  text        NOT NULL,
	tenant    text
);
CREATE INDEX admission_queue_order ON orchestrator.admission_queue (priority DESC, queued_at, run_id);
CREATE INDEX admission_queue_workflow ON orchestrator.admission_queue (workflow);
CREATE INDEX admission_queue_tenant ON orchestrator.admission_queue (tenant) WHERE tenant IS NOT NULL;
COMMENT ON TABLE orchestrator.admission_queue IS 'runs waiting for an admission slot (status queued)';

-- Token buckets of rate-limited steps, per owner role and key: tokens left
-- (below zero: promised to scheduled steps) when last counted.
CREATE TABLE orchestrator.rate_buckets (
	owner      regrole     NOT NULL,
	key        text        NOT NULL,
	tokens     float8      NOT NULL,
	counted_at timestamptz NOT NULL,
	PRIMARY KEY (owner, key)
) WITH (fillfactor = 50);
COMMENT ON TABLE orchestrator.rate_buckets IS 'token buckets of step rate limits, per owner role and key';

CREATE FUNCTION orchestrator._admission_configure(scope text, key text, max_active integer)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_admission_configure'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION orchestrator._admission_sweep()
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_admission_sweep'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- set_tenant_limits(tenant, max_active_runs): at most that many active runs
-- started with option "tenant" = tenant (NULL or 0: no limit, the row goes);
-- admins only, as set_owner_limits.
CREATE FUNCTION orchestrator._api_set_tenant_limits(tenant text, max_active_runs integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT orchestrator._is_admin() THEN
		RAISE EXCEPTION 'permission denied to set tenant limits'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Tenant limits are set by members of orchestrator_admin.',
				  HINT = 'Ask an administrator.';
	END IF;
	IF tenant IS NULL OR length(tenant) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'tenant must be a string of 1 to 255 characters'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Got %s.', coalesce(quote_literal(tenant), 'NULL')),
				  HINT = 'It is the "tenant" option given to start_workflow().';
	END IF;
	IF max_active_runs < 0 THEN
		RAISE EXCEPTION 'max_active_runs must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Got %s.', max_active_runs),
				  HINT = '0 or NULL removes the limit.';
	END IF;
	PERFORM orchestrator._admission_configure('tenant', tenant, nullif(max_active_runs, 0));
END
$$;

-- get_tenant_limits(tenant): the tenants with a limit (or the one named),
-- with their active and queued runs; admins only.
CREATE FUNCTION orchestrator._api_get_tenant_limits(tenant text DEFAULT NULL)
RETURNS TABLE (name text, max_active_runs integer, active integer, queued bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT orchestrator._is_admin() THEN
		RAISE EXCEPTION 'permission denied to read tenant limits'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Tenant limits are read by members of orchestrator_admin.';
	END IF;
	RETURN QUERY
	SELECT s.key, s.max_active, s.active,
		   (SELECT count(*) FROM orchestrator.admission_queue q WHERE q.tenant = s.key)
	FROM orchestrator.admission_slots s
	WHERE s.scope = 'tenant' AND (_api_get_tenant_limits.tenant IS NULL OR s.key = _api_get_tenant_limits.tenant)
	ORDER BY s.key;
END
$$;
