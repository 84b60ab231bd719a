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
	orchestrator.define_workflow_yaml(text, text),
	orchestrator.grant_workflow(text, regrole, text),
	orchestrator.revoke_workflow(text, regrole, text),
	orchestrator.start_workflow(text, jsonb, jsonb),
	orchestrator.schedule_workflow(text, text, text, jsonb, jsonb),
	orchestrator.unschedule_workflow(text),
	orchestrator.start_workflow_trigger(),
	orchestrator.get_workflow(uuid),
	orchestrator.workflow_result(uuid),
	orchestrator.cancel_workflow(uuid, text),
	orchestrator.retry_run(uuid, text[]),
	orchestrator.signal_workflow(uuid, text, jsonb),
	orchestrator.events(uuid, bigint),
	orchestrator.claim_steps(text, text, integer, interval),
	orchestrator.heartbeat_step(uuid, text, uuid, interval, jsonb),
	orchestrator.complete_step(uuid, text, uuid, jsonb),
	orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]),
	orchestrator.fail_step(uuid, text, uuid, jsonb, boolean),
	orchestrator.session_create(text, jsonb, interval),
	orchestrator.session_set(text, jsonb, interval, bigint, uuid),
	orchestrator.session_get(text),
	orchestrator.session_read(text),
	orchestrator.session_touch(text, interval),
	orchestrator.session_delete(text),
	orchestrator.session_list(text, integer),
	orchestrator.session_lock(text, uuid, interval),
	orchestrator.session_unlock(text, uuid),
	orchestrator.session_channel(),
	orchestrator.events_channel(),
	orchestrator.get_owner_limits(regrole)
TO orchestrator_user;

-- The views and row-level security policies filter rows by caller; these
-- functions only reveal what the caller may know of itself.
GRANT EXECUTE ON FUNCTION
	orchestrator._caller(),
	orchestrator._acts_as(regrole),
	orchestrator._is_admin(),
	orchestrator._may_see(regrole, regrole)
TO orchestrator_user;
GRANT SELECT ON orchestrator.runs, orchestrator.run_steps, orchestrator.sessions TO orchestrator_user;

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
