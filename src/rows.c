/*-------------------------------------------------------------------------
 *
 * rows.c
 *	  Rows of the engine's tables written with the heap and index access
 *	  methods, not through the executor.
 *
 * Profiles of the dispatchers and of start_workflow() put the executor's
 * machinery (start-up, nodes, end, the plan cache) above the cost of the
 * rows themselves: a step's success is one row changed, yet through SPI it
 * costs a statement.  The hot transitions therefore read, insert, update
 * and delete their rows here, as PostgreSQL writes its catalogs: a heap
 * operation, then each index.
 *
 * What the executor would have done and this does too: columns are placed
 * by name (a partition may have dropped columns); every index gets its
 * entry (expression and partial indexes included, through a small EState),
 * unique checks apply; WAL, locks and statistics are the heap's own.  What
 * it does not do: fire triggers, check CHECK constraints, apply row level
 * security; the engine's tables have none of these, and a table that has a
 * trigger or a check constraint (an operator added it) is refused with an
 * error rather than written behind its back.
 *
 * Concurrency: the transitions hold the run's row lock before they touch
 * its steps, so no other transaction changes them meanwhile.  Rows are
 * found with SnapshotSelf (the latest committed version, or this
 * transaction's own).  An update that finds its row changed by another
 * transaction reports it (false) instead of following the chain; callers
 * then fall back to a statement, which does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "rows.h"

/*
 * rows_open
 *		Open one of the engine's tables (a leaf partition) to write it.
 */
Relation
rows_open(Oid relid)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->trigdesc != NULL || (desc->constr != NULL && desc->constr->num_check > 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" has a trigger or a check constraint", RelationGetRelationName(rel)),
				 errdetail("orchestrator writes the rows of its runs, steps and events without the executor: triggers would not fire, checks would not be made."),
				 errhint("Drop it; to follow runs, LISTEN to channel orchestrator or read orchestrator.events(run_id, after_seq).")));
	return rel;
}

void
rows_close(Relation rel)
{
	table_close(rel, NoLock);
}

/*
 * rows_place
 *		The position in the table's descriptor of each named column; every
 *		column of the table must be named (a column this version does not
 *		know would be left without its default).
 */
void
rows_place(Relation rel, int ncolumns, const char *const *columns, int *place)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int c = 0; c < ncolumns; c++)
		place[c] = -1;
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		int			c = 0;

		if (att->attisdropped)
			continue;
		while (c < ncolumns && strcmp(NameStr(att->attname), columns[c]) != 0)
			c++;
		if (c == ncolumns)
			elog(ERROR, "column \"%s\" of table \"%s\" is not known to this version of orchestrator",
				 NameStr(att->attname), RelationGetRelationName(rel));
		place[c] = a;
	}
	for (int c = 0; c < ncolumns; c++)
		if (place[c] < 0)
			elog(ERROR, "column \"%s\" of table \"%s\" is missing",
				 columns[c], RelationGetRelationName(rel));
}

/*
 * insert_index_entries
 *		The entries of every index of rel for a heap tuple just written
 *		(update: a new version, not HOT).  Expressions and predicates are
 *		evaluated in an EState made only when an index has them.
 */
static void
insert_index_entries(Relation rel, HeapTuple tuple, bool update)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	TupleTableSlot *slot = NULL;
	EState	   *estate = NULL;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		Datum		keys[INDEX_MAX_KEYS];
		bool		key_nulls[INDEX_MAX_KEYS];

		if (!info->ii_ReadyForInserts)
		{
			index_close(index, RowExclusiveLock);
			continue;
		}
		if (info->ii_ExclusionOps != NULL || !index->rd_index->indimmediate)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" cannot be maintained by orchestrator", RelationGetRelationName(index)),
					 errdetail("Rows of runs, steps and events are written without the executor; exclusion constraints and deferred unique checks are not kept."),
					 errhint("Drop the constraint.")));
		if (slot == NULL)
		{
			slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
			ExecStoreHeapTuple(tuple, slot, false);
		}
		if ((info->ii_Expressions != NIL || info->ii_Predicate != NIL) && estate == NULL)
		{
			estate = CreateExecutorState();
			GetPerTupleExprContext(estate)->ecxt_scantuple = slot;
		}
		if (info->ii_Predicate != NIL &&
			!ExecQual(ExecPrepareQual(info->ii_Predicate, estate), GetPerTupleExprContext(estate)))
		{
			index_close(index, RowExclusiveLock);
			continue;
		}
		FormIndexDatum(info, slot, estate, keys, key_nulls);
		index_insert(index, keys, key_nulls, &tuple->t_self, rel,
					 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 update, info);
		index_close(index, NoLock);
	}
	if (estate != NULL)
		FreeExecutorState(estate);
	if (slot != NULL)
		ExecDropSingleTupleTableSlot(slot);
	list_free(indexes);
}

/* NOT NULL, as the executor checks it (the columns written: all, or replace[]) */
static void
check_not_null(Relation rel, bool *nulls, bool *replace)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (att->attnotnull && nulls[a] && (replace == NULL || replace[a]))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(att->attname), RelationGetRelationName(rel))));
	}
}

/*
 * rows_insert
 *		A new row, and its index entries.
 */
void
rows_insert(Relation rel, Datum *values, bool *nulls)
{
	HeapTuple	tuple;

	check_not_null(rel, nulls, NULL);
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);

	simple_heap_insert(rel, tuple);
	insert_index_entries(rel, tuple, false);
	heap_freetuple(tuple);
}

/*
 * rows_scan
 *		The rows whose primary key starts with keys[0..nkeys-1] (a uuid,
 *		then text), in key order; rows_next() returns each (valid until the
 *		next call).  The command counter is advanced first so that a row
 *		this command wrote can be changed again.
 */
RowsScan *
rows_scan(Relation rel, int nkeys, const Datum *keys)
{
	RowsScan   *s = palloc(sizeof(RowsScan));
	ScanKeyData skeys[2];

	Assert(nkeys >= 1 && nkeys <= 2);
	CommandCounterIncrement();
	RelationGetIndexList(rel);
	if (!OidIsValid(rel->rd_pkindex))
		elog(ERROR, "table \"%s\" has no primary key", RelationGetRelationName(rel));
	s->index = index_open(rel->rd_pkindex, AccessShareLock);
	for (int k = 0; k < nkeys; k++)
	{
		Oid			type = s->index->rd_opcintype[k];
		Oid			op = get_opfamily_member(s->index->rd_opfamily[k], type, type, BTEqualStrategyNumber);

		ScanKeyEntryInitialize(&skeys[k], 0, k + 1, BTEqualStrategyNumber, type,
							   s->index->rd_indcollation[k], get_opcode(op), keys[k]);
	}
	s->slot = table_slot_create(rel, NULL);
	s->scan = index_beginscan(rel, s->index, SnapshotSelf, nkeys, 0);
	index_rescan(s->scan, skeys, nkeys, NULL, 0);
	return s;
}

HeapTuple
rows_next(RowsScan *s)
{
	bool		should_free;
	HeapTuple	tuple;

	if (!index_getnext_slot(s->scan, ForwardScanDirection, s->slot))
		return NULL;
	tuple = ExecFetchSlotHeapTuple(s->slot, false, &should_free);
	Assert(!should_free);
	return tuple;
}

void
rows_scan_end(RowsScan *s)
{
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->index, AccessShareLock);
	pfree(s);
}

/*
 * rows_fetch
 *		The row whose primary key is keys[0..nkeys-1], as a copy (with its
 *		t_self) the caller may free; NULL when none.
 */
HeapTuple
rows_fetch(Relation rel, int nkeys, const Datum *keys)
{
	RowsScan   *s = rows_scan(rel, nkeys, keys);
	HeapTuple	tuple = rows_next(s);
	HeapTuple	found = tuple ? heap_copytuple(tuple) : NULL;

	rows_scan_end(s);
	return found;
}

/*
 * rows_update
 *		Replace the columns marked in replace[] of a row rows_fetch() found.
 *		False, and nothing written, when another transaction changed or
 *		deleted the row since (the caller falls back to a statement).
 */
bool
rows_update(Relation rel, HeapTuple old, Datum *values, bool *nulls, bool *replace)
{
	HeapTuple	tuple;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	result;

	check_not_null(rel, nulls, replace);
	tuple = heap_modify_tuple(old, RelationGetDescr(rel), values, nulls, replace);

	result = heap_update(rel, &old->t_self, tuple, GetCurrentCommandId(true), InvalidSnapshot,
						 true, &tmfd, &lockmode);
	if (result != TM_Ok)
	{
		heap_freetuple(tuple);
		if (result == TM_SelfModified || result == TM_Invisible)
			elog(ERROR, "row of \"%s\" changed twice in one command", RelationGetRelationName(rel));
		return false;
	}
	if (!HeapTupleIsHeapOnly(tuple))
		insert_index_entries(rel, tuple, true);
	heap_freetuple(tuple);
	return true;
}

/*
 * rows_delete
 *		Delete a row rows_fetch() found.  False, and nothing deleted, when
 *		another transaction changed or deleted it since.
 */
bool
rows_delete(Relation rel, HeapTuple old)
{
	TM_FailureData tmfd;
	TM_Result	result;

	result = heap_delete(rel, &old->t_self, GetCurrentCommandId(true), InvalidSnapshot,
						 true, &tmfd, false);
	if (result == TM_SelfModified || result == TM_Invisible)
		elog(ERROR, "row of \"%s\" changed twice in one command", RelationGetRelationName(rel));
	return result == TM_Ok;
}

/* A column of a row rows_fetch() found (place: from rows_place()). */
Datum
rows_get(Relation rel, HeapTuple tuple, int place, bool *isnull)
{
	return heap_getattr(tuple, place + 1, RelationGetDescr(rel), isnull);
}
