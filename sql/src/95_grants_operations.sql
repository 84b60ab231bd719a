-- Privileges of the operations and analytics surface (after 90_grants.sql,
-- which revokes everything from PUBLIC).  Maintenance, health and metrics are
-- for orchestrator_admin; the analytics views filter rows by caller like
-- orchestrator.runs, so every orchestrator_user may read them.

GRANT EXECUTE ON FUNCTION
	orchestrator.maintain(integer),
	orchestrator.schedule_maintenance(text),
	orchestrator.unschedule_maintenance(),
	orchestrator.rebuild_stats(date),
	orchestrator.set_queue_limit(text, integer)
TO orchestrator_admin;
-- Admins read the queue limits they set.
GRANT SELECT ON orchestrator.queue_limits TO orchestrator_admin;

GRANT EXECUTE ON FUNCTION orchestrator.health(), orchestrator.metrics() TO orchestrator_admin;

-- Hard limits per owner role (52_quotas.sql): set by admins; every role reads
-- its own with get_owner_limits() (90_grants.sql), admins the table.
GRANT EXECUTE ON FUNCTION orchestrator.set_owner_limits(regrole, jsonb) TO orchestrator_admin;
GRANT SELECT ON orchestrator.owner_limits TO orchestrator_admin;

-- Flow control (54_flow_control.sql): tenant limits set and read by admins;
-- admins read the slots, the queued runs and the rate buckets.
GRANT EXECUTE ON FUNCTION orchestrator.set_tenant_limits(text, integer),
	orchestrator.get_tenant_limits(text) TO orchestrator_admin;
GRANT SELECT ON orchestrator.admission_slots, orchestrator.admission_queue, orchestrator.rate_buckets
TO orchestrator_admin;

GRANT SELECT ON orchestrator.runs_per_day, orchestrator.step_durations, orchestrator.error_rates,
	orchestrator.step_errors, orchestrator.throughput, orchestrator.queue_depth,
	orchestrator.costs_per_day
TO orchestrator_user;
-- Called by the views with the caller's rights; reveals nothing.
GRANT EXECUTE ON FUNCTION orchestrator._tokens(jsonb), orchestrator._tokens_sum(jsonb), orchestrator._stats_live_from() TO orchestrator_user;
