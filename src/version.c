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
 * once it was yes, until something changes the extension's row: every way
 * to create, update, alter or drop an extension (CREATE / ALTER / DROP
 * EXTENSION, DROP SCHEMA ... CASCADE, DROP OWNED, pg_restore) reaches the
 * object access hook with pg_extension's class, and the hook, in the
 * backend that makes the change, queues a relcache invalidation of
 * pg_extension.  At commit it reaches every backend of the database, whose
 * callback forgets the answer (as does a reset of the invalidation queue),
 * and the next call looks again.  pg_extension has no syscache of its own
 * whose callback would tell; and the hook is in every backend, since the
 * library is preloaded.  A superuser's direct UPDATE of pg_extension goes
 * unseen: that is not a supported way to change an extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"

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

static object_access_hook_type prev_object_access = NULL;

/* The hook is installed: the answer can be kept beyond a transaction. */
static bool hook_installed = false;

/* The installed version was this library's, and nothing changed it since. */
static bool schema_current = false;

/*
 * version_object_access
 *		Any change of an extension (of any extension: the hook is not told
 *		its name when it is dropped) makes every backend look again.
 */
static void
version_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (classId == ExtensionRelationId &&
		(access == OAT_POST_CREATE || access == OAT_POST_ALTER || access == OAT_DROP))
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
 *		From _PG_init: chain the object access hook and listen for the
 *		invalidations it sends.
 */
void
orchestrator_version_install_hooks(void)
{
	prev_object_access = object_access_hook;
	object_access_hook = version_object_access;
	CacheRegisterRelcacheCallback(version_invalidated, (Datum) 0);
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
