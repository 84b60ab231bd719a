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
