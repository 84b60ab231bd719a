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
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
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
 * Where rows_place() found the columns of a table, kept per process (every
 * transition places the columns of each table it opens: a few hundred
 * string comparisons each time), per table and list of names (callers pass
 * their static arrays), forgotten at a relcache invalidation of the table.
 */
#define ROWS_PLACE_MAX_COLUMNS 64

typedef struct PlaceKey
{
	Oid			relid;
	const char *const *columns;
	int			ncolumns;
} PlaceKey;

typedef struct PlaceEntry
{
	PlaceKey	key;
	bool		valid;
	int			natts;
	int			place[ROWS_PLACE_MAX_COLUMNS];
} PlaceEntry;

static HTAB *place_cache = NULL;

static void
place_cache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	PlaceEntry *entry;

	if (place_cache == NULL)
		return;
	hash_seq_init(&status, place_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (!OidIsValid(relid) || entry->key.relid == relid)
			entry->valid = false;
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
	PlaceKey	key;
	PlaceEntry *entry = NULL;
	bool		found;

	if (ncolumns <= ROWS_PLACE_MAX_COLUMNS)
	{
		if (place_cache == NULL)
		{
			HASHCTL		ctl;

			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = sizeof(PlaceKey);
			ctl.entrysize = sizeof(PlaceEntry);
			ctl.hcxt = CacheMemoryContext;
			place_cache = hash_create("orchestrator column places", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
			CacheRegisterRelcacheCallback(place_cache_callback, (Datum) 0);
		}
		memset(&key, 0, sizeof(key));
		key.relid = RelationGetRelid(rel);
		key.columns = columns;
		key.ncolumns = ncolumns;
		entry = hash_search(place_cache, &key, HASH_ENTER, &found);
		if (found && entry->valid && entry->natts == desc->natts)
		{
			memcpy(place, entry->place, sizeof(int) * ncolumns);
			return;
		}
		entry->valid = false;
	}

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
	if (entry != NULL)
	{
		memcpy(entry->place, place, sizeof(int) * ncolumns);
		entry->natts = desc->natts;
		entry->valid = true;
	}
}

/*
 * What inserting index entries needs of a table, kept per process: its
 * indexes, each one's IndexInfo, and for expressions and predicates an
 * EState whose prepared expressions are used again for every row.  A
 * relcache invalidation of the table (an index created, dropped, made
 * ready; the table altered) marks the entry stale; it is rebuilt on next
 * use, never while in use (an invalidation can arrive in index_open()).
 */
#define ROWS_CACHE_MAX_INDEXES 32

typedef struct IndexCacheEntry
{
	Oid			relid;			/* hash key */
	bool		valid;
	MemoryContext context;		/* holds all below */
	int			nindexes;
	Oid			indexes[ROWS_CACHE_MAX_INDEXES];
	IndexInfo  *info[ROWS_CACHE_MAX_INDEXES];
	ExprState  *predicate[ROWS_CACHE_MAX_INDEXES];
	EState	   *estate;			/* NULL: no expression, no predicate */
	TupleTableSlot *slot;
} IndexCacheEntry;

static HTAB *index_cache = NULL;

static void
index_cache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	IndexCacheEntry *entry;

	if (index_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		if ((entry = hash_search(index_cache, &relid, HASH_FIND, NULL)) != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&status, index_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

static void
index_cache_refuse(Relation index, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("index \"%s\" cannot be maintained by orchestrator", RelationGetRelationName(index)),
			 errdetail("Rows of runs, steps and events are written without the executor; %s are not kept.", why),
			 errhint("Drop the constraint.")));
}

static IndexCacheEntry *
index_cache_entry(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	IndexCacheEntry *entry;
	bool		found;
	List	   *indexes;
	ListCell   *lc;
	MemoryContext old;
	int			nindexes;

	if (index_cache == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(IndexCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		index_cache = hash_create("orchestrator index cache", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(index_cache_callback, (Datum) 0);
	}
	entry = hash_search(index_cache, &relid, HASH_ENTER, &found);
	if (found && entry->valid && entry->nindexes >= 0)
		return entry;
	if (found && entry->context != NULL)
		MemoryContextDelete(entry->context);
	entry->context = NULL;
	entry->nindexes = -1;		/* incomplete until the end (an error may leave it so) */
	entry->valid = true;		/* an invalidation from here on marks it stale */
	entry->context = AllocSetContextCreate(CacheMemoryContext, "orchestrator index cache entry",
										   ALLOCSET_SMALL_SIZES);
	entry->estate = NULL;
	entry->slot = NULL;
	old = MemoryContextSwitchTo(entry->context);
	indexes = RelationGetIndexList(rel);
	if (list_length(indexes) > ROWS_CACHE_MAX_INDEXES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("table \"%s\" has more than %d indexes", RelationGetRelationName(rel),
						ROWS_CACHE_MAX_INDEXES)));
	nindexes = 0;
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info = BuildIndexInfo(index);
		int			i = nindexes;

		if (info->ii_ExclusionOps != NULL)
			index_cache_refuse(index, "exclusion constraints");
		if (index->rd_index->indisunique && !index->rd_index->indimmediate)
			index_cache_refuse(index, "deferred unique checks");
		entry->indexes[i] = lfirst_oid(lc);
		entry->info[i] = info;
		entry->predicate[i] = NULL;
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
		{
			if (entry->estate == NULL)
			{
				entry->estate = CreateExecutorState();
				entry->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
													   &TTSOpsHeapTuple);
				GetPerTupleExprContext(entry->estate)->ecxt_scantuple = entry->slot;
			}
			/* prepared once, in the entry's EState (FormIndexDatum() keeps them) */
			MemoryContextSwitchTo(entry->estate->es_query_cxt);
			if (info->ii_Predicate != NIL)
				entry->predicate[i] = ExecPrepareQual(info->ii_Predicate, entry->estate);
			if (info->ii_Expressions != NIL)
				info->ii_ExpressionsState = ExecPrepareExprList(info->ii_Expressions, entry->estate);
			MemoryContextSwitchTo(entry->context);
		}
		nindexes++;
		index_close(index, NoLock);
	}
	MemoryContextSwitchTo(old);
	entry->nindexes = nindexes;
	return entry;
}

/*
 * index_unchanged
 *		The executor's hint to an index that an update did not change its
 *		columns (so that its entries are only new versions of the same keys,
 *		which bottom-up deletion then looks for): an update (replace: the
 *		columns it set) that set none of the index's columns.  An index on
 *		expressions gets no hint; an index whose key changed must not get
 *		it, or every insertion into a full page makes a deletion pass.
 */
static bool
index_unchanged(IndexInfo *info, const bool *replace)
{
	if (replace == NULL || info->ii_Expressions != NIL)
		return false;
	for (int k = 0; k < info->ii_NumIndexAttrs; k++)
	{
		AttrNumber	a = info->ii_IndexAttrNumbers[k];

		if (a > 0 && replace[a - 1])
			return false;
	}
	return true;
}

/*
 * insert_index_entries
 *		The entries of every index of rel for a heap tuple just written
 *		(replace: the columns of an update, a new version, not HOT; NULL
 *		for an insert).
 */
static void
insert_index_entries(Relation rel, HeapTuple tuple, const bool *replace)
{
	IndexCacheEntry *entry = index_cache_entry(rel);
	TupleTableSlot *slot = NULL;
	ExprContext *econtext = NULL;

	if (entry->estate != NULL)
	{
		slot = entry->slot;
		econtext = GetPerTupleExprContext(entry->estate);
		ExecStoreHeapTuple(tuple, slot, false);
	}
	for (int i = 0; i < entry->nindexes; i++)
	{
		IndexInfo  *info = entry->info[i];
		Relation	index = index_open(entry->indexes[i], RowExclusiveLock);
		Datum		keys[INDEX_MAX_KEYS];
		bool		key_nulls[INDEX_MAX_KEYS];

		if (!info->ii_ReadyForInserts ||
			(entry->predicate[i] != NULL && !ExecQual(entry->predicate[i], econtext)))
		{
			index_close(index, NoLock);
			continue;
		}
		if (info->ii_Expressions != NIL)
			FormIndexDatum(info, slot, entry->estate, keys, key_nulls);
		else
		{
			/* plain columns, straight from the tuple */
			for (int k = 0; k < info->ii_NumIndexAttrs; k++)
				keys[k] = heap_getattr(tuple, info->ii_IndexAttrNumbers[k], RelationGetDescr(rel),
									   &key_nulls[k]);
		}
		index_insert(index, keys, key_nulls, &tuple->t_self, rel,
					 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 index_unchanged(info, replace), info);
		index_close(index, NoLock);
	}
	if (econtext != NULL)
	{
		ResetExprContext(econtext);
		ExecClearTuple(slot);
	}
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
	insert_index_entries(rel, tuple, NULL);
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
	RelationGetIndexList(rel);
	if (!OidIsValid(rel->rd_pkindex))
		elog(ERROR, "table \"%s\" has no primary key", RelationGetRelationName(rel));
	return rows_scan_on(rel, rel->rd_pkindex, nkeys, keys);
}

/*
 * rows_scan_on
 *		rows_scan() through another index of rel: the rows whose leading key
 *		columns equal keys[], in the index's order.
 */
RowsScan *
rows_scan_on(Relation rel, Oid indexid, int nkeys, const Datum *keys)
{
	RowsScan   *s = palloc(sizeof(RowsScan));
	ScanKeyData skeys[2];

	Assert(nkeys >= 1 && nkeys <= 2);
	CommandCounterIncrement();
	s->index = index_open(indexid, AccessShareLock);
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
		insert_index_entries(rel, tuple, replace);
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
