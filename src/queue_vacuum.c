/*-------------------------------------------------------------------------
 *
 * queue_vacuum.c
 *	  The first dispatcher vacuums work_queue itself while steps flow.
 *
 * Every step is a work_queue row inserted when it becomes ready and deleted
 * when it is done: under load, tens of thousands of rows a minute.  Their
 * index entries stay until a vacuum removes them, and a claim ("the first
 * due rows of a queue, in index order") walks over all of them, since they
 * lie at the start of the range it reads; autovacuum visits a database at
 * most once per autovacuum_naptime (a minute by default).  Measured under
 * the realistic load (4 clients starting runs, 2 dispatchers), a VACUUM of
 * the queue every 2 s took a step's dispatcher CPU from 156-164 us to
 * 124-139 us.  The queue holds only live work, so its vacuum is short; it
 * runs with SKIP_LOCKED (an autovacuum of it already under way is left to
 * finish) and between turns, in transactions of its own.
 *
 * It never truncates the table (nor does autovacuum: vacuum_truncate is off
 * on work_queue).  A queue drained to empty leaves empty pages at its end,
 * and cutting them off takes an ACCESS EXCLUSIVE lock that every start,
 * claim and step waits behind, for a table that grows again a moment later.
 * An autovacuum of the queue already under way is seen before VACUUM is
 * called: SKIP_LOCKED would log a WARNING every time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "queue_vacuum.h"
#include "shmem.h"

/* vacuum when this many queue rows were deleted or moved since the last one ... */
#define QUEUE_VACUUM_ROWS 2000
/* ... and at most this often */
#define QUEUE_VACUUM_INTERVAL_MS 2000

static uint64 rows_at_last = 0;
static TimestampTz last_vacuum = 0;

/*
 * queue_vacuum_note
 *		A transaction deleted or moved n queue rows (counted before it
 *		commits: a count, not a promise).  Every process calls it: a claim or
 *		completion by an external worker leaves dead entries as much as a
 *		dispatcher's step.
 */
void
queue_vacuum_note(int n)
{
	if (orchestrator_shared != NULL)
		pg_atomic_fetch_add_u64(&orchestrator_shared->queue_rows_retired, (uint64) n);
}

static void
vacuum_queue(void)
{
	VacuumStmt *stmt = makeNode(VacuumStmt);
	RangeVar   *queue = makeRangeVar("orchestrator", "work_queue", -1);
	Oid			relid;

	stmt->options = list_make3(makeDefElem("skip_locked", NULL, -1),
							   makeDefElem("index_cleanup", (Node *) makeString("on"), -1),
							   makeDefElem("truncate", (Node *) makeString("false"), -1));
	stmt->rels = list_make1(makeVacuumRelation(queue, InvalidOid, NIL));
	stmt->is_vacuumcmd = true;

	StartTransactionCommand();
	relid = RangeVarGetRelid(queue, NoLock, true);
	if (!OidIsValid(relid) ||
		!ConditionalLockRelationOid(relid, ShareUpdateExclusiveLock))
	{
		/* an autovacuum (or a VACUUM by hand) is at it: leave it to that */
		CommitTransactionCommand();
		return;
	}
	UnlockRelationOid(relid, ShareUpdateExclusiveLock);
	ExecVacuum(make_parsestate(NULL), stmt, true);
	CommitTransactionCommand();
}

/*
 * queue_vacuum_after_turn
 *		After a turn of the first dispatcher: vacuum work_queue when enough
 *		of its rows were deleted or moved since the last time.  An error
 *		(the extension dropped meanwhile, say) is logged and the turn loop
 *		goes on.
 */
void
queue_vacuum_after_turn(void)
{
	TimestampTz now;
	MemoryContext context = CurrentMemoryContext;
	uint64		rows = pg_atomic_read_u64(&orchestrator_shared->queue_rows_retired);

	if (rows - rows_at_last < QUEUE_VACUUM_ROWS)
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(last_vacuum, now, QUEUE_VACUUM_INTERVAL_MS))
		return;
	rows_at_last = rows;
	last_vacuum = now;
	PG_TRY();
	{
		vacuum_queue();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("orchestrator dispatcher could not vacuum orchestrator.work_queue: %s",
						edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
}
