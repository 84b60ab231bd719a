-- Privileges of the operations and analytics surface (after 90_grants.sql,
-- which revokes everything from PUBLIC).  Maintenance, health and metrics are
-- for orchestrator_admin; the analytics views filter rows by caller like
-- orchestrator.runs, so every orchestrator_user may read them.

GRANT EXECUTE ON FUNCTION
	orchestrator.maintain(integer),
	orchestrator.schedule_maintenance(text),
	orchestrator.unschedule_maintenance()
TO orchestrator_admin;
