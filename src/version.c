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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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

/*
 * orchestrator_require_current_schema
 *		55000 unless the installed extension is this library's version
 *		(looked up once per transaction).
 */
void
orchestrator_require_current_schema(void)
{
	static LocalTransactionId checked = InvalidLocalTransactionId;
	char	   *installed;

	if (checked == MyProc->lxid)
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
}
