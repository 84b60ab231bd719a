/*-------------------------------------------------------------------------
 *
 * history.c
 *	  Events appended to a run's history with the heap and index access
 *	  methods, not through the executor.
 *
 * An event is one row in the run's partition of workflow_events and one
 * entry in its primary key.  Through SPI, each append also pays for a
 * statement: the executor's start-up, its nodes, the partition check and
 * the result rows; profiles of the dispatchers put that machinery above
 * the cost of the row itself.  The hot transitions therefore append here,
 * as PostgreSQL writes its catalogs (a heap insert, then each index).
 *
 * What the executor would have done and this must do too: the columns are
 * placed by name (a partition may have dropped columns); NOT NULL is
 * checked; every index of the partition gets its entry (an index this code
 * cannot fill, one on an expression or partial, raises an error rather than
 * being skipped); the unique check of the primary key applies.  What it
 * does not do: fire triggers or check CHECK constraints; the history has
 * none, and a partition that has one (an operator added it) is refused
 * with an error rather than written behind its back.  The caller holds the
 * run's row lock, so no other transaction appends to the run meanwhile.
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

#include "history.h"

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

/* Insert the index entries of a new heap tuple (plain columns only). */
static void
insert_index_entries(Relation rel, HeapTuple tuple, Datum *values, bool *nulls)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		keys[INDEX_MAX_KEYS];
		bool		key_nulls[INDEX_MAX_KEYS];

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL || !info->ii_ReadyForInserts)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" of the history cannot be maintained by orchestrator",
							RelationGetRelationName(index)),
					 errdetail("Events are appended without the executor; only indexes on plain columns are kept."),
					 errhint("Drop the index, or index a view of the history instead.")));
		for (int k = 0; k < info->ii_NumIndexAttrs; k++)
		{
			AttrNumber	attno = info->ii_IndexAttrNumbers[k];

			keys[k] = values[attno - 1];
			key_nulls[k] = nulls[attno - 1];
		}
		index_insert(index, keys, key_nulls, &tuple->t_self, rel,
					 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, info);
		index_close(index, NoLock);
	}
	list_free(indexes);
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
	Relation	rel = table_open(partition, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;
	int			place[EVENT_COLUMNS];
	Datum	   *values = palloc0(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);
	Oid			pkey;
	int64		first;

	if (rel->trigdesc != NULL ||
		(desc->constr != NULL && desc->constr->num_check > 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition \"%s\" of the history has a trigger or a check constraint",
						RelationGetRelationName(rel)),
				 errdetail("Events are appended without the executor: triggers would not fire, checks would not be made."),
				 errhint("Drop it; to follow the history, LISTEN to channel orchestrator or read orchestrator.events(run_id, after_seq).")));
	/* the columns by name, from the descriptor the relcache keeps */
	for (int c = 0; c < EVENT_COLUMNS; c++)
		place[c] = -1;
	for (int a = 0; a < natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		int			c = 0;

		if (att->attisdropped)
			continue;
		while (c < EVENT_COLUMNS && strcmp(NameStr(att->attname), event_columns[c]) != 0)
			c++;
		if (c == EVENT_COLUMNS)
			elog(ERROR, "column \"%s\" of the history is not known to this version of orchestrator",
				 NameStr(att->attname));
		place[c] = a;
	}
	for (int c = 0; c < EVENT_COLUMNS; c++)
		if (place[c] < 0)
			elog(ERROR, "column \"%s\" of the history is missing", event_columns[c]);

	RelationGetIndexList(rel);
	pkey = rel->rd_pkindex;
	if (!OidIsValid(pkey))
		elog(ERROR, "partition \"%s\" of the history has no primary key", RelationGetRelationName(rel));
	first = last_seq(rel, pkey, place[1] + 1, run_id) + 1;

	for (int i = 0; i < n; i++)
	{
		HeapTuple	tuple;

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

		tuple = heap_form_tuple(desc, values, nulls);
		simple_heap_insert(rel, tuple);
		insert_index_entries(rel, tuple, values, nulls);
		heap_freetuple(tuple);
	}
	table_close(rel, NoLock);
	return first;
}
