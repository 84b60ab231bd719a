-- Privileges.  Nothing is granted to PUBLIC.  Internal functions (names
-- starting with "_") are callable only by the extension owner: the API
-- functions are SECURITY DEFINER and call them on the caller's behalf.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orchestrator FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orchestrator FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	orchestrator.uuid_v7(),
	orchestrator.uuid_v7_boundary(timestamptz),
	orchestrator.uuid_v7_time(uuid),
	orchestrator.define_workflow(text, jsonb),
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

-- The views filter rows by caller; they call _may_see and _caller, which
-- only reveal the caller's own identity.
GRANT EXECUTE ON FUNCTION orchestrator._may_see(name), orchestrator._caller() TO orchestrator_user;
GRANT SELECT ON orchestrator.runs, orchestrator.run_steps TO orchestrator_user;
GRANT SELECT ON orchestrator.definitions TO orchestrator_user;
