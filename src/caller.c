/*-------------------------------------------------------------------------
 *
 * caller.c
 *		Who is calling: the role a run belongs to.
 *
 * The API functions are SECURITY DEFINER, so inside them current_user is the
 * extension owner.  The role that called them is the "outer" user id: the
 * session user, or the role chosen with SET ROLE.  While a dispatcher runs a
 * sql step on behalf of a run's owner, the caller is that owner instead (the
 * dispatcher's own outer user is a superuser, which a step must never
 * inherit, for instance by starting a workflow of its own).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "caller.h"

/* Set by the sql step executor for the duration of a step. */
Oid			orchestrator_step_owner = InvalidOid;

PG_FUNCTION_INFO_V1(orchestrator_caller);

/*
 * orchestrator._caller() returns name
 */
Datum
orchestrator_caller(PG_FUNCTION_ARGS)
{
	Oid			roleid;

	roleid = OidIsValid(orchestrator_step_owner) ? orchestrator_step_owner : GetOuterUserId();
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(roleid, false))));
}
