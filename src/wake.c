/*-------------------------------------------------------------------------
 *
 * wake.c
 *	  Wake the dispatchers when a transaction that made work ready commits.
 *
 * The SQL functions that make a step ready call _wake_at_commit().  Waking
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

#include "shmem.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(orchestrator_wake_at_commit);

/* Is our transaction callback registered in this backend? */
static bool wake_callback_registered = false;

/* Should the current transaction wake the dispatchers when it commits? */
static bool wake_pending = false;

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
			if (wake_pending)
			{
				wake_pending = false;
				orchestrator_wake_dispatchers();
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
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
orchestrator_wake_dispatchers_at_commit(void)
{
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;
}

/* SQL-callable: orchestrator._wake_at_commit() */
Datum
orchestrator_wake_at_commit(PG_FUNCTION_ARGS)
{
	orchestrator_wake_dispatchers_at_commit();
	PG_RETURN_VOID();
}
