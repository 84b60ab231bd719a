/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  Wake the dispatchers when a transaction that made work ready commits.
 *
 * The SQL functions that make a step ready call _wake_at_commit(kind).  The
 * kind (sql, timer, http) tells a dispatcher what to look for, so that a
 * sql step made ready does not also cost it an empty HTTP claim.  Waking
 * the dispatchers before the commit would let them look for the work before
 * it is visible, and waking them on abort would be for nothing, so the
 * latches are set from a transaction callback at commit time (after the
 * transaction has become visible to others).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "shmem.h"
#include "relay.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(orchestrator_wake_at_commit);

/* Is our transaction callback registered in this backend? */
static bool wake_callback_registered = false;

/* Kinds of work to wake the dispatchers for when the transaction commits. */
static int	wake_pending = 0;

/*
 * wake_xact_callback
 *		At commit, set the dispatchers' latches if asked to; forget the
 *		request when the transaction ends in any other way.
 *
 * A subtransaction that asked and then rolled back still wakes the
 * dispatchers at top-level commit: a needless wake-up costs one empty
 * dispatch turn, which is cheaper than tracking nesting levels.  A prepared
 * transaction does not wake anybody; the fallback poll finds its work after
 * COMMIT PREPARED.
 */
static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* release this transaction's notifications before the wake-up */
			orchestrator_relay_commit();
			if (wake_pending)
			{
				int			kinds = wake_pending;

				wake_pending = 0;
				orchestrator_wake_dispatchers(kinds);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = 0;
			break;
		default:
			break;
	}
}

/*
 * orchestrator_wake_dispatchers_at_commit
 *		Ask for the dispatchers to be woken when the current transaction
 *		commits.  Cheap enough to call once per step made ready.
 */
void
orchestrator_wake_dispatchers_at_commit(int kinds)
{
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending |= kinds;
}

/*
 * SQL-callable: orchestrator._wake_at_commit(kind text DEFAULT NULL): kind
 * 'sql', 'timer' or 'http'; NULL wakes for every kind.
 */
Datum
orchestrator_wake_at_commit(PG_FUNCTION_ARGS)
{
	int			kinds = WAKE_ALL;

	if (PG_NARGS() > 0 && !PG_ARGISNULL(0))
	{
		char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));

		if (strcmp(kind, "sql") == 0)
			kinds = WAKE_SQL;
		else if (strcmp(kind, "timer") == 0)
			kinds = WAKE_TIMER;
		else if (strcmp(kind, "http") == 0)
			kinds = WAKE_HTTP;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown kind of dispatcher work \"%s\"", kind)));
	}
	orchestrator_wake_dispatchers_at_commit(kinds);
	PG_RETURN_VOID();
}
