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
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "caller.h"
#include "leaf.h"
#include "rights.h"
#include "rows.h"

PG_FUNCTION_INFO_V1(orchestrator_may);
PG_FUNCTION_INFO_V1(orchestrator_may_start_as);

/*
 * The rows that give rights: a workflow's row gives its owner's privileges
 * (every privilege), a grant's row its grantee's (one privilege).
 */
typedef struct RightRows
{
	const char *table;
	const char *role_column;
	const char *privilege_column;	/* NULL: every privilege */
} RightRows;

static const RightRows owners = {"workflows", "owner", NULL};
static const RightRows grants = {"workflow_grants", "grantee", "privilege"};

/* The rows' table, opened, and where its columns are. */
typedef struct RightTable
{
	Relation	rel;
	AttrNumber	name_att;
	AttrNumber	role_att;
	AttrNumber	privilege_att;	/* InvalidAttrNumber: every privilege */
} RightTable;

static void
right_table_open(const RightRows *rows, RightTable *t)
{
	Oid			relid = orchestrator_table_oid(rows->table);

	t->rel = table_open(relid, AccessShareLock);
	t->name_att = get_attnum(relid, "name");
	t->role_att = get_attnum(relid, rows->role_column);
	t->privilege_att = rows->privilege_column ? get_attnum(relid, rows->privilege_column) : InvalidAttrNumber;
}

/* Does the row give "role" privilege "privilege"? */
static bool
row_gives(RightTable *t, HeapTuple row, const char *privilege, Oid role)
{
	TupleDesc	desc = RelationGetDescr(t->rel);
	bool		isnull;
	Datum		holder = heap_getattr(row, t->role_att, desc, &isnull);

	if (isnull)
		return false;
	if (t->privilege_att != InvalidAttrNumber)
	{
		Datum		granted = heap_getattr(row, t->privilege_att, desc, &isnull);

		if (isnull || privilege == NULL || strcmp(TextDatumGetCString(granted), privilege) != 0)
			return false;
	}
	return has_privs_of_role(role, DatumGetObjectId(holder));
}

/* Does a row of workflow "name" give "role" privilege "privilege"? */
static bool
rows_give(const RightRows *rows, const char *name, const char *privilege, Oid role)
{
	RightTable	t;
	Datum		key[1] = {CStringGetTextDatum(name)};
	RowsScan   *scan;
	HeapTuple	row;
	bool		may = false;

	right_table_open(rows, &t);
	scan = rows_scan(t.rel, 1, key);
	while (!may && (row = rows_next(scan)) != NULL)
		may = row_gives(&t, row, privilege, role);
	rows_scan_end(scan);
	table_close(t.rel, AccessShareLock);
	return may;
}

/* The names of the workflows whose rows give "role" "privilege", appended. */
static List *
names_given(const RightRows *rows, const char *privilege, Oid role, List *names)
{
	RightTable	t;
	TableScanDesc scan;
	HeapTuple	row;

	right_table_open(rows, &t);
	scan = table_beginscan(t.rel, SnapshotSelf, 0, NULL);
	while ((row = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		name = heap_getattr(row, t.name_att, RelationGetDescr(t.rel), &isnull);

		if (!isnull && row_gives(&t, row, privilege, role))
			names = lappend(names, TextDatumGetCString(name));
	}
	table_endscan(scan);
	table_close(t.rel, AccessShareLock);
	return names;
}

/* Is "role" a member of orchestrator_admin (superusers are)? */
bool
role_is_admin(Oid role)
{
	Oid			admin = get_role_oid("orchestrator_admin", true);

	return OidIsValid(admin) && is_member_of_role(role, admin);
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
	/* a dropped role's OID (a workflow's owner kept as regrole) has none */
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		return false;
	if (role_is_admin(role))
		return true;
	if (name == NULL)
		return false;
	return rows_give(&owners, name, privilege, role) || rows_give(&grants, name, privilege, role);
}

static int
name_cmp(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
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
	List	   *names;
	Datum	   *elems;
	int			n = 0;
	const char *last = NULL;
	ListCell   *lc;

	if (role_is_admin(role))
		return (Datum) 0;
	names = names_given(&owners, "work", role, NIL);
	names = names_given(&grants, "work", role, names);

	/* each name once */
	list_sort(names, name_cmp);
	elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
	{
		if (last == NULL || strcmp(lfirst(lc), last) != 0)
			elems[n++] = CStringGetTextDatum(lfirst(lc));
		last = lfirst(lc);
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
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
