/*-------------------------------------------------------------------------
 *
 * lock_space.c
 *	  _xact_lock(): transaction locks of the extension's own, by name.
 *
 * define_workflow() (per workflow name) and maintain() serialise themselves
 * with it.  They used pg_advisory_xact_lock(), whose keys any role can take
 * too: a role holding pg_advisory_lock(hashtext('orchestrator.maintain')) in
 * an idle session made every maintain() skip, and one holding a workflow
 * name's key stalled its owner's define_workflow() (decision 79).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "lock_space.h"

PG_FUNCTION_INFO_V1(orchestrator_xact_lock);

/*
 * orchestrator._xact_lock(space text, key text, wait boolean) returns boolean
 *		A transaction lock on (space, key) in the extension's own lock space:
 *		taken (waiting for it when "wait") and held to the end of the
 *		transaction; false when "wait" is false and another transaction
 *		holds it.
 */
Datum
orchestrator_xact_lock(PG_FUNCTION_ARGS)
{
	text	   *space;
	text	   *key;
	LOCKTAG		tag;
	uint32		h1;
	uint32		h2;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		elog(ERROR, "_xact_lock: null argument");
	space = PG_GETARG_TEXT_PP(0);
	key = PG_GETARG_TEXT_PP(1);
	h1 = DatumGetUInt32(hash_any((unsigned char *) VARDATA_ANY(space), VARSIZE_ANY_EXHDR(space)));
	h2 = DatumGetUInt32(hash_any((unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, h1, h2, LOCK_SPACE_NAMED);
	PG_RETURN_BOOL(LockAcquire(&tag, ExclusiveLock, false, !PG_GETARG_BOOL(2)) != LOCKACQUIRE_NOT_AVAIL);
}
