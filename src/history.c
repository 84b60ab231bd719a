/*-------------------------------------------------------------------------
 *
 * history.c
 *	  Events appended to a run's history with the heap and index access
 *	  methods, not through the executor.
 *
 * An event is one row in the run's partition of workflow_events and one
 * entry in its primary key, written by rows.c (heap and index access
 * methods, no executor; what that keeps and refuses is said there).  The
 * sequence number is the last one of the run plus one; the caller holds
 * the run's row lock, so no other transaction appends to the run
 * meanwhile.  The last number is read back from the primary key unless
 * seq_cache.c knows it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_type.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "history.h"
#include "rows.h"
#include "seq_cache.h"

#define EVENT_COLUMNS 6

static const char *const event_columns[EVENT_COLUMNS] = {"run_id", "seq", "at", "type", "step", "data"};

/*
 * last_seq
 *		The run's last sequence number (0: none): the primary key (run_id,
 *		seq) read backwards.  SnapshotSelf sees this transaction's appends,
 *		this command's included.
 */
static int64
last_seq(Relation rel, Oid pkey, AttrNumber seq_attno, Datum run_id)
{
	Relation	index = index_open(pkey, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	int64		seq = 0;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, run_id);
	scan = systable_beginscan_ordered(rel, index, SnapshotSelf, 1, &key);
	tuple = systable_getnext_ordered(scan, BackwardScanDirection);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, seq_attno, RelationGetDescr(rel), &isnull);

		if (!isnull)
			seq = DatumGetInt64(d);
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	return seq;
}

/*
 * history_new_run
 *		The current transaction just inserted the row of run "run_id": its
 *		history is empty, the first append need not look.
 */
void
history_new_run(Oid partition, Datum run_id)
{
	seq_cache_end(partition, run_id, 0);
}

/*
 * history_append
 *		Append events to the history of a run whose row the caller has
 *		locked, in "partition" (the run's partition of workflow_events), with
 *		the next sequence numbers.  Returns the first one.
 */
int64
history_append(Oid partition, Datum run_id, int n, const HistoryEvent *events)
{
	Relation	rel = rows_open(partition);
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;
	int			place[EVENT_COLUMNS];
	Datum	   *values = palloc0(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	Oid			pkey;
	int64		first;

	rows_place(rel, EVENT_COLUMNS, event_columns, place);
	RelationGetIndexList(rel);
	pkey = rel->rd_pkindex;
	if (!OidIsValid(pkey))
		elog(ERROR, "partition \"%s\" of the history has no primary key", RelationGetRelationName(rel));
	if (seq_cache_begin(partition, run_id, &first))
		first++;
	else
		first = last_seq(rel, pkey, place[1] + 1, run_id) + 1;

	for (int i = 0; i < n; i++)
	{
		memset(nulls, true, sizeof(bool) * natts);
		values[place[0]] = run_id;
		values[place[1]] = Int64GetDatum(first + i);
		values[place[2]] = TimestampTzGetDatum(events[i].at);
		values[place[3]] = CStringGetTextDatum(events[i].type);
		values[place[4]] = events[i].step ? CStringGetTextDatum(events[i].step) : (Datum) 0;
		values[place[5]] = events[i].data;
		for (int c = 0; c < EVENT_COLUMNS; c++)
			nulls[place[c]] = false;
		nulls[place[4]] = events[i].step == NULL;

		rows_insert(rel, values, nulls);
	}
	rows_close(rel);
	seq_cache_end(partition, run_id, first + n - 1);
	return first;
}
