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
