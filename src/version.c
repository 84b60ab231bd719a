/*-------------------------------------------------------------------------
 *
 * version.c
 *	  Does the installed extension match this library?
 *
 * The library serves the SQL objects of its own version only.  After the
 * library is replaced (a new package, a restart), the dispatchers wait and
 * the engine's entry points refuse until ALTER EXTENSION orchestrator UPDATE
 * has brought the schema to the same version: old SQL functions would call
 * the new C code with the old tables' meaning (owners by name in 0.2, for
 * one), which is not safe to guess at.
 *
 * The gate asks on every API call, so the answer is kept in the backend
 * once it was yes, until something may have changed the extension's row:
 * after every utility statement that can create, update, alter or drop an
 * extension (CREATE / ALTER EXTENSION, any DROP, DROP OWNED: DROP SCHEMA
 * ... CASCADE drops an extension too; pg_restore creates extensions with
 * CREATE EXTENSION), the utility hook, in the backend that ran it, queues a
 * relcache invalidation of pg_extension.  At commit it reaches every
 * backend of the database, whose callback forgets the answer (as does a
 * reset of the invalidation queue), and the next call looks again.
 * pg_extension has no syscache of its own whose callback would tell; the
 * hook is in every backend, since the library is preloaded.  A
 * superuser's direct UPDATE of pg_extension goes unseen until the next
 * such statement: that is not a supported way to change an extension.
 * (Not the object access hook: installing one changes how the server
 * runs every function call and search path lookup.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"

#include "relcache_watch.h"
#include "version.h"

/*
 * orchestrator_installed_version
 *		The version of the orchestrator extension installed in this
 *		database (palloc'd), or NULL when it is not installed.
 */
char *
orchestrator_installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("orchestrator"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

static ProcessUtility_hook_type prev_process_utility = NULL;

/* The hook is installed: the answer can be kept beyond a transaction. */
static bool hook_installed = false;

/* The installed version was this library's, and nothing changed it since. */
static bool schema_current = false;

/*
 * changes_extensions
 *		Can this utility statement create, update, alter or drop an
 *		extension?  Every DROP can (DROP SCHEMA ... CASCADE, DROP of a
 *		member with CASCADE), as can DROP OWNED.
 */
static bool
changes_extensions(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
		case T_AlterExtensionStmt:
		case T_AlterExtensionContentsStmt:
		case T_DropStmt:
		case T_DropOwnedStmt:
			return true;
		case T_AlterObjectSchemaStmt:
			return ((AlterObjectSchemaStmt *) stmt)->objectType == OBJECT_EXTENSION;
		default:
			return false;
	}
}

/*
 * version_process_utility
 *		After a statement that may have changed an extension, make every
 *		backend of the database look at the installed version again.
 */
static void
version_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params,
						QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	bool		changes = pstmt->utilityStmt != NULL && changes_extensions(pstmt->utilityStmt);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	if (changes)
	{
		schema_current = false;
		CacheInvalidateRelcacheByRelid(ExtensionRelationId);
	}
}

/* A relcache invalidation of pg_extension, or of everything. */
static void
version_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == ExtensionRelationId)
		schema_current = false;
}

/*
 * orchestrator_version_install_hooks
 *		From _PG_init: chain the utility hook and listen for the
 *		invalidations it sends.
 */
void
orchestrator_version_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = version_process_utility;
	orchestrator_watch_relcache(version_invalidated);
	hook_installed = true;
}

/*
 * orchestrator_require_current_schema
 *		55000 unless the installed extension is this library's version
 *		(looked up again only after a change of an extension; without the
 *		hook, once per transaction).
 */
void
orchestrator_require_current_schema(void)
{
	static LocalTransactionId checked = InvalidLocalTransactionId;
	char	   *installed;

	if (schema_current || (!hook_installed && checked == MyProc->lxid))
		return;
	installed = orchestrator_installed_version();
	if (installed == NULL || strcmp(installed, ORCHESTRATOR_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the orchestrator extension must be updated before it can be used"),
				 errdetail("The library is version %s; the installed extension is version %s.",
						   ORCHESTRATOR_VERSION, installed ? installed : "(none)"),
				 errhint("Run ALTER EXTENSION orchestrator UPDATE in this database.")));
	checked = MyProc->lxid;
	schema_current = hook_installed;
}

/*
 * orchestrator_schema_current
 *		Is the installed extension this library's version?  Like
 *		orchestrator_require_current_schema(), without an error: the
 *		dispatchers ask every turn, and an idle turn must not scan the
 *		catalog.  When it is not, *installed is the version installed
 *		(NULL: none).
 */
bool
orchestrator_schema_current(char **installed)
{
	*installed = NULL;
	if (schema_current)
		return true;
	*installed = orchestrator_installed_version();
	if (*installed == NULL || strcmp(*installed, ORCHESTRATOR_VERSION) != 0)
		return false;
	schema_current = hook_installed;
	return true;
}
