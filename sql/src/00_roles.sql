-- Roles.  Roles are cluster-wide, so they may exist already (another database
-- has the extension, or a restore): create them only when missing.
-- orchestrator_user: define and start workflows, work external steps, read its
-- own runs.  orchestrator_admin: everything, including all tenants' runs.

DO $roles$
BEGIN
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
