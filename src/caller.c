/*-------------------------------------------------------------------------
 *
 * caller.c
 *	  Who is calling: the entry gate of the SQL API.
 *
 * The functions users call (orchestrator.start_workflow() and the others)
 * are thin C entry points, SECURITY INVOKER, all bound to orchestrator_api().
 * It records current_user, the role the call acts for, and calls the
 * implementation, orchestrator._api_<name>() with the same arguments, which
 * is SECURITY DEFINER (it owns the tables' rights) and reads the caller with
 * orchestrator._caller().  A SECURITY DEFINER function cannot tell who
 * called it: current_user is its owner inside, and the session's outer user
 * may be someone else entirely (a superuser whose ANALYZE evaluates another
 * role's index expression).  The gate is where current_user is still the
 * caller's.
 *
 * Calls from inside a security-restricted operation (index expressions,
 * ANALYZE, VACUUM, REFRESH MATERIALIZED VIEW: code run with the rights of a
 * table owner on someone else's behalf) are refused, except a sql step's own
 * statement, which the dispatcher runs restricted as the workflow's owner.
 *
 * Outside API calls (the views, the dispatchers) the caller is current_user.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "caller.h"
#include "rights.h"
#include "version.h"

/* Set by the sql step executor for the duration of a step. */
Oid			orchestrator_step_owner = InvalidOid;

/* The caller of the API call in progress, or InvalidOid outside one. */
static Oid	api_caller = InvalidOid;

/* What the gate keeps of an entry point's implementation (in fn_extra). */
typedef struct ApiImpl
{
	Oid			oid;
	bool		strict;
	uint64		generation;		/* of proc_generation when looked up */
	FmgrInfo	flinfo;
} ApiImpl;

/*
 * Which implementation each entry point calls, kept in the backend: the
 * lookup by name costs more than a call of a small function, and fn_extra
 * lives only as long as one execution of the calling statement.  Any
 * change of pg_proc (a function created, replaced or dropped: an upgrade)
 * bumps proc_generation, which empties the map and makes every fn_extra
 * look again.
 */
typedef struct ApiMapEntry
{
	Oid			entry;			/* hash key: the entry point */
	Oid			impl;
	Oid			namespace;		/* of both */
	bool		strict;
} ApiMapEntry;

static HTAB *api_map = NULL;
static uint64 api_map_generation = 0;
static uint64 proc_generation = 1;
static bool proc_callback_registered = false;

PG_FUNCTION_INFO_V1(orchestrator_api);
PG_FUNCTION_INFO_V1(orchestrator_caller_role);
PG_FUNCTION_INFO_V1(orchestrator_caller);
PG_FUNCTION_INFO_V1(orchestrator_acts_as);
PG_FUNCTION_INFO_V1(orchestrator_is_admin);

/*
 * orchestrator_current_caller
 *		The role the current call acts for.
 */
Oid
orchestrator_current_caller(void)
{
	return OidIsValid(api_caller) ? api_caller : GetUserId();
}

/*
 * orchestrator_refuse_restricted
 *		42501 inside a security-restricted operation that is not a sql
 *		step's own statement.
 */
void
orchestrator_refuse_restricted(Oid function)
{
	if (!InSecurityRestrictedOperation())
		return;
	if (OidIsValid(orchestrator_step_owner) && GetUserId() == orchestrator_step_owner)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot call %s() in a security-restricted operation", get_func_name(function)),
			 errdetail("Index expressions, ANALYZE, VACUUM, REFRESH MATERIALIZED VIEW and similar operations run code with another role's rights; orchestrator refuses to act for anyone there."),
			 errhint("Call orchestrator functions from statements of their own, not from index expressions, materialized views or functions that maintenance operations evaluate.")));
}

static void
api_proc_invalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	proc_generation++;
}

/*
 * api_lookup
 *		The implementation of entry point "entry": _api_<name> with the same
 *		argument types, in the same schema.
 */
static Oid
api_lookup(Oid entry, Oid *namespace)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	char	   *schema;
	char	   *name;
	Oid			oid;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(entry));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", entry);
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	*namespace = proc->pronamespace;
	schema = get_namespace_name(proc->pronamespace);
	name = psprintf("_api_%s", NameStr(proc->proname));
	oid = LookupFuncName(list_make2(makeString(schema), makeString(name)),
						 proc->pronargs, proc->proargtypes.values, true);
	if (!OidIsValid(oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function %s.%s has no implementation", schema, NameStr(proc->proname)),
				 errdetail("Function %s.%s with the same arguments does not exist.", schema, name),
				 errhint("The installed orchestrator extension is damaged or of another version: run ALTER EXTENSION orchestrator UPDATE, or create it again.")));
	ReleaseSysCache(tuple);
	return oid;
}

/*
 * api_impl
 *		The implementation of the entry point "flinfo", from fn_extra, the
 *		backend's map or the catalog, in that order.
 */
static ApiImpl *
api_impl(FmgrInfo *flinfo)
{
	ApiImpl    *impl = flinfo->fn_extra;
	ApiMapEntry *known;
	Oid			oid;
	Oid			namespace;
	bool		strict;
	bool		found;
	AclResult	aclresult;

	/* functions are replaced by upgrades: look again after any change */
	if (impl != NULL && impl->generation == proc_generation)
		return impl;

	if (!proc_callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, api_proc_invalidated, (Datum) 0);
		proc_callback_registered = true;
	}
	if (api_map == NULL || api_map_generation != proc_generation)
	{
		HASHCTL		ctl;

		if (api_map != NULL)
			hash_destroy(api_map);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ApiMapEntry);
		api_map = hash_create("orchestrator API entry points", 64, &ctl, HASH_ELEM | HASH_BLOBS);
		api_map_generation = proc_generation;
	}
	known = hash_search(api_map, &flinfo->fn_oid, HASH_FIND, NULL);
	if (known != NULL)
	{
		oid = known->impl;
		namespace = known->namespace;
		strict = known->strict;
	}
	else
	{
		uint64		generation = proc_generation;

		oid = api_lookup(flinfo->fn_oid, &namespace);
		strict = func_strict(oid);
		/* only what no invalidation overtook is kept */
		if (generation == proc_generation && api_map_generation == proc_generation)
		{
			known = hash_search(api_map, &flinfo->fn_oid, HASH_ENTER, &found);
			known->impl = oid;
			known->namespace = namespace;
			known->strict = strict;
		}
	}

	/*
	 * The caller needs USAGE on the schema, as the lookup by name checked
	 * for each statement before the map kept it (a trigger or an OID can
	 * reach an entry point without naming it).
	 */
	aclresult = pg_namespace_aclcheck(namespace, GetUserId(), ACL_USAGE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_SCHEMA, get_namespace_name(namespace));

	if (impl == NULL)
		impl = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(ApiImpl));
	impl->generation = proc_generation;
	impl->oid = oid;
	impl->strict = strict;
	fmgr_info_cxt(oid, &impl->flinfo, flinfo->fn_mcxt);
	flinfo->fn_extra = impl;
	return impl;
}

/*
 * orchestrator_api
 *		The entry gate every public function is bound to: record the caller,
 *		then call the implementation with the same arguments (and, for
 *		functions returning a set, the same materialized result).
 */
Datum
orchestrator_api(PG_FUNCTION_ARGS)
{
	ApiImpl    *impl = api_impl(fcinfo->flinfo);
	Oid			save_caller = api_caller;
	Datum		result;

	LOCAL_FCINFO(call, FUNC_MAX_ARGS);

	orchestrator_refuse_restricted(fcinfo->flinfo->fn_oid);
	/* the functions of another version's schema are not this library's */
	orchestrator_require_current_schema();

	InitFunctionCallInfoData(*call, &impl->flinfo, fcinfo->nargs, fcinfo->fncollation,
							 fcinfo->context, fcinfo->resultinfo);
	for (int i = 0; i < fcinfo->nargs; i++)
	{
		call->args[i] = fcinfo->args[i];
		if (impl->strict && fcinfo->args[i].isnull)
			PG_RETURN_NULL();
	}

	api_caller = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(call);
	}
	PG_FINALLY();
	{
		api_caller = save_caller;
	}
	PG_END_TRY();

	fcinfo->isnull = call->isnull;
	return result;
}

/*
 * orchestrator._caller() returns regrole
 */
Datum
orchestrator_caller_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(orchestrator_current_caller());
}

/*
 * orchestrator._acts_as(role regrole) returns boolean
 *		Has the caller the privileges of "role" (is it that role, a member
 *		that inherits its rights, or a superuser)?  False for a dropped
 *		role, whose OID no role has any more.
 */
Datum
orchestrator_acts_as(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(has_privs_of_role(orchestrator_current_caller(), PG_GETARG_OID(0)));
}

/*
 * orchestrator._is_admin() returns boolean
 *		Is the caller a member of orchestrator_admin (or a superuser)?
 */
Datum
orchestrator_is_admin(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(role_is_admin(orchestrator_current_caller()));
}

/*
 * orchestrator_caller
 *		_caller() of versions 0.1 and 0.2 (returning name), which took the
 *		session's outer user as the caller.  Their SQL functions are
 *		SECURITY DEFINER without the gate, so no caller can be told here:
 *		refuse until the schema is updated.
 */
Datum
orchestrator_caller(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the orchestrator extension must be updated before it can be used"),
			 errdetail("The library is version %s; the installed SQL objects are of an older version.",
					   ORCHESTRATOR_VERSION),
			 errhint("Run ALTER EXTENSION orchestrator UPDATE in this database.")));
	PG_RETURN_NULL();
}
