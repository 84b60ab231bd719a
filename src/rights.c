/*-------------------------------------------------------------------------
 *
 * rights.c
 *	  Who may start runs of a workflow or work its external steps.
 *
 * A role may use privilege "start" or "work" on a workflow when it is a
 * member of orchestrator_admin (superusers are), when it has the
 * privileges of the workflow's owner, or when it has those of a role the
 * privilege was granted to (grant_workflow()).  That rule is here only:
 * the SQL functions _may(name, privilege) (for the caller) and
 * _may_start_as(name, role) are this file's, and the engine calls it
 * directly, without a statement.
 *
 * Claims ask the other way round: which workflows may a role work
 * (workable_workflows()), so that they lock no row of another's.
 *
 * The tables are read with the access methods under SnapshotSelf (the
 * latest committed grants: a revocation counts from its commit on), past
 * their row-level security, which computes from this same rule what a role
 * may see.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "caller.h"
#include "leaf.h"
#include "rights.h"
#include "rows.h"

PG_FUNCTION_INFO_V1(orchestrator_may);
PG_FUNCTION_INFO_V1(orchestrator_may_start_as);

/* The place of a column (as rows_get() takes it), read by name. */
static int
column(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	elog(ERROR, "table \"%s\" has no column \"%s\"", RelationGetRelationName(rel), name);
	return -1;					/* keep the compiler quiet */
}

/* Has "role" the privileges of the owner of workflow "name"? */
static bool
acts_as_owner(const char *name, Oid role)
{
	Relation	rel = table_open(orchestrator_table_oid("workflows"), AccessShareLock);
	Datum		key[1] = {CStringGetTextDatum(name)};
	HeapTuple	t;
	bool		may = false;

	t = rows_fetch(rel, 1, key);
	if (t != NULL)
	{
		bool		isnull;
		Datum		owner = rows_get(rel, t, column(rel, "owner"), &isnull);

		may = !isnull && has_privs_of_role(role, DatumGetObjectId(owner));
	}
	table_close(rel, AccessShareLock);
	return may;
}

/* Has "role" the privileges of a role granted "privilege" on "name"? */
static bool
acts_as_grantee(const char *name, const char *privilege, Oid role)
{
	Relation	rel = table_open(orchestrator_table_oid("workflow_grants"), AccessShareLock);
	Datum		key[1] = {CStringGetTextDatum(name)};
	int			grantee_place = column(rel, "grantee");
	int			privilege_place = column(rel, "privilege");
	RowsScan   *scan;
	HeapTuple	t;
	bool		may = false;

	scan = rows_scan(rel, 1, key);
	while (!may && (t = rows_next(scan)) != NULL)
	{
		bool		grantee_null;
		bool		privilege_null;
		Datum		grantee = rows_get(rel, t, grantee_place, &grantee_null);
		Datum		granted = rows_get(rel, t, privilege_place, &privilege_null);

		may = !grantee_null && !privilege_null &&
			strcmp(TextDatumGetCString(granted), privilege) == 0 &&
			has_privs_of_role(role, DatumGetObjectId(grantee));
	}
	rows_scan_end(scan);
	table_close(rel, AccessShareLock);
	return may;
}

/*
 * workflow_right
 *		May "role" use "privilege" ("start" or "work") on workflow "name"?
 *		A NULL name or privilege matches no workflow and no grant; a role
 *		that does not exist (any more) may nothing.
 */
bool
workflow_right(const char *name, const char *privilege, Oid role)
{
	Oid			admin = get_role_oid("orchestrator_admin", true);

	/* a dropped role's OID (a workflow's owner kept as regrole) has none */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		return false;
	if (OidIsValid(admin) && is_member_of_role(role, admin))
		return true;
	if (name == NULL)
		return false;
	if (acts_as_owner(name, role))
		return true;
	return privilege != NULL && acts_as_grantee(name, privilege, role);
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * workable_workflows
 *		The workflows "role" may work, as a text[] (empty: none), or
 *		(Datum) 0 when it may work every workflow (an administrator): for
 *		claims, which lock no row of another workflow.
 */
Datum
workable_workflows(Oid role)
{
	Oid			admin = get_role_oid("orchestrator_admin", true);
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	t;
	int			name_place;
	int			role_place;		/* the owner, then the grantee */
	int			privilege_place;
	char	  **names;
	int			n = 0;
	int			size = 16;
	Datum	   *elems;
	int			nelems = 0;

	if (OidIsValid(admin) && is_member_of_role(role, admin))
		return (Datum) 0;
	names = palloc(sizeof(char *) * size);

	/* the workflows whose owner's privileges it has */
	rel = table_open(orchestrator_table_oid("workflows"), AccessShareLock);
	name_place = column(rel, "name");
	role_place = column(rel, "owner");
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while ((t = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		owner_null;
		bool		name_null;
		Datum		owner = heap_getattr(t, role_place + 1, RelationGetDescr(rel), &owner_null);
		Datum		name = heap_getattr(t, name_place + 1, RelationGetDescr(rel), &name_null);

		if (owner_null || name_null || !has_privs_of_role(role, DatumGetObjectId(owner)))
			continue;
		if (n == size)
			names = repalloc(names, sizeof(char *) * (size *= 2));
		names[n++] = TextDatumGetCString(name);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	/* and those granted "work" to a role whose privileges it has */
	rel = table_open(orchestrator_table_oid("workflow_grants"), AccessShareLock);
	name_place = column(rel, "name");
	role_place = column(rel, "grantee");
	privilege_place = column(rel, "privilege");
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while ((t = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		grantee_null;
		bool		privilege_null;
		bool		name_null;
		Datum		grantee = heap_getattr(t, role_place + 1, desc, &grantee_null);
		Datum		privilege = heap_getattr(t, privilege_place + 1, desc, &privilege_null);
		Datum		name = heap_getattr(t, name_place + 1, desc, &name_null);

		if (grantee_null || privilege_null || name_null ||
			strcmp(TextDatumGetCString(privilege), "work") != 0 ||
			!has_privs_of_role(role, DatumGetObjectId(grantee)))
			continue;
		if (n == size)
			names = repalloc(names, sizeof(char *) * (size *= 2));
		names[n++] = TextDatumGetCString(name);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	/* each name once */
	qsort(names, n, sizeof(char *), name_cmp);
	elems = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
			elems[nelems++] = CStringGetTextDatum(names[i]);
	return PointerGetDatum(construct_array(elems, nelems, TEXTOID, -1, false, TYPALIGN_INT));
}

/* workflow_right() for the role the current call acts for. */
bool
caller_workflow_right(const char *name, const char *privilege)
{
	return workflow_right(name, privilege, orchestrator_current_caller());
}

static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * orchestrator._may(name text, privilege text) returns boolean
 *		May the caller start runs of workflow "name" (privilege 'start') or
 *		work its external steps ('work')?
 */
Datum
orchestrator_may(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(caller_workflow_right(text_arg(fcinfo, 0), text_arg(fcinfo, 1)));
}

/*
 * orchestrator._may_start_as(name text, role regrole) returns boolean
 *		_may(name, 'start') for a given role rather than the caller (a child
 *		run is started by the owner of its parent's workflow, compose.c):
 *		false for a role that does not exist (any more).
 */
Datum
orchestrator_may_start_as(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(workflow_right(text_arg(fcinfo, 0), "start", PG_GETARG_OID(1)));
}
