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
#include "access/itup.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "relcache_watch.h"
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
 * The positions rows_place() found, kept per table and list of names until a
 * relcache invalidation of the table (index_cache_callback(), below): the
 * engine places the same few lists for every row it writes.
 */
#define PLACE_CACHE_SIZE 16
#define PLACE_CACHE_MAX_COLUMNS 32

typedef struct PlaceCacheEntry
{
	Oid			relid;			/* InvalidOid: unused or stale */
	const char *const *columns;
	int			ncolumns;
	int			place[PLACE_CACHE_MAX_COLUMNS];
} PlaceCacheEntry;

static PlaceCacheEntry place_cache[PLACE_CACHE_SIZE];
static int	place_cache_victim = 0;	/* replaced next when none is free */

static void rows_cache_register(void);

static void place_columns(Relation rel, int ncolumns, const char *const *columns, int *place);

/*
 * rows_place
 *		The position in the table's descriptor of each named column; every
 *		column of the table must be named (a column this version does not
 *		know would be left without its default).
 */
void
rows_place(Relation rel, int ncolumns, const char *const *columns, int *place)
{
	Oid			relid = RelationGetRelid(rel);
	PlaceCacheEntry *free_entry = NULL;

	for (int i = 0; i < PLACE_CACHE_SIZE; i++)
	{
		PlaceCacheEntry *e = &place_cache[i];

		if (e->relid == relid && e->columns == columns && e->ncolumns == ncolumns)
		{
			memcpy(place, e->place, sizeof(int) * ncolumns);
			return;
		}
		if (free_entry == NULL && !OidIsValid(e->relid))
			free_entry = e;
	}
	place_columns(rel, ncolumns, columns, place);
	if (ncolumns > PLACE_CACHE_MAX_COLUMNS)
		return;
	rows_cache_register();
	if (free_entry == NULL)
	{
		/* last week's partitions give way to today's */
		free_entry = &place_cache[place_cache_victim];
		place_cache_victim = (place_cache_victim + 1) % PLACE_CACHE_SIZE;
	}
	memcpy(free_entry->place, place, sizeof(int) * ncolumns);
	free_entry->columns = columns;
	free_entry->ncolumns = ncolumns;
	free_entry->relid = relid;
}

static void
place_columns(Relation rel, int ncolumns, const char *const *columns, int *place)
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
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of table \"%s\" is not known to this version of orchestrator",
							NameStr(att->attname), RelationGetRelationName(rel)),
					 errdetail("Rows of runs, steps and events are written without the executor, column by column; a column added to them would be left without its default."),
					 errhint("Drop the column; keep what it would hold in a table of your own.")));
		place[c] = a;
	}
	for (int c = 0; c < ncolumns; c++)
		if (place[c] < 0)
			elog(ERROR, "column \"%s\" of table \"%s\" is missing",
				 columns[c], RelationGetRelationName(rel));
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

	for (int i = 0; i < PLACE_CACHE_SIZE; i++)
		if (!OidIsValid(relid) || place_cache[i].relid == relid)
			place_cache[i].relid = InvalidOid;
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

/* Both caches are told of relcache invalidations, from the first use of either. */
static void
rows_cache_register(void)
{
	static bool registered = false;

	if (!registered)
	{
		orchestrator_watch_relcache(index_cache_callback);
		registered = true;
	}
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
		rows_cache_register();
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
		bool		unchanged;

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
		unchanged = index_unchanged(info, replace);

		/*
		 * A unique index whose key an update left as it was (no expression,
		 * no predicate) is not checked again: the old version, which this
		 * transaction holds, has that key already, so no other row can.
		 */
		index_insert(index, keys, key_nulls, &tuple->t_self, rel,
					 index->rd_index->indisunique && !(unchanged && info->ii_Predicate == NIL)
					 ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 unchanged, info);
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
 * The btree comparison functions the scans use (equality, and <= for
 * rows_scan_until()) per operator family and type, remembered (a few: uuid,
 * text, timestamptz): looked up in the catalogs once per process instead of
 * at every row found; forgotten when an operator family changes.
 */
#define ROWS_PROCS_MAX 8

static struct
{
	Oid			opfamily;
	Oid			type;
	StrategyNumber strategy;
	RegProcedure proc;
}			btree_procs[ROWS_PROCS_MAX];
static int	n_btree_procs = 0;
static bool btree_procs_callback_set = false;

static void
btree_procs_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	n_btree_procs = 0;
}

static RegProcedure
btree_proc(Oid opfamily, Oid type, StrategyNumber strategy)
{
	RegProcedure proc;

	for (int i = 0; i < n_btree_procs; i++)
		if (btree_procs[i].opfamily == opfamily && btree_procs[i].type == type &&
			btree_procs[i].strategy == strategy)
			return btree_procs[i].proc;
	if (!btree_procs_callback_set)
	{
		CacheRegisterSyscacheCallback(AMOPSTRATEGY, btree_procs_callback, (Datum) 0);
		btree_procs_callback_set = true;
	}
	proc = get_opcode(get_opfamily_member(opfamily, type, type, strategy));
	if (!RegProcedureIsValid(proc))
		elog(ERROR, "no operator of strategy %d for type %u in operator family %u",
			 strategy, type, opfamily);
	if (n_btree_procs < ROWS_PROCS_MAX)
	{
		btree_procs[n_btree_procs].opfamily = opfamily;
		btree_procs[n_btree_procs].type = type;
		btree_procs[n_btree_procs].strategy = strategy;
		btree_procs[n_btree_procs].proc = proc;
		n_btree_procs++;
	}
	return proc;
}

/*
 * The scan of rows_scan_on(), rows_scan_until() and rows_scan_range(): the
 * index's leading nkeys columns compared with keys[] by strategies[], in the
 * index's order; entries: the index's entries are read first (rows_next_entry()).
 */
static RowsScan *
scan_begin(Relation rel, Oid indexid, const StrategyNumber *strategies, int nkeys,
		   const Datum *keys, bool entries)
{
	RowsScan   *s = palloc(sizeof(RowsScan));
	ScanKeyData skeys[ROWS_SCAN_MAX_KEYS];

	Assert(nkeys >= 1 && nkeys <= ROWS_SCAN_MAX_KEYS);
	CommandCounterIncrement();
	s->index = index_open(indexid, AccessShareLock);
	for (int k = 0; k < nkeys; k++)
	{
		Oid			type = s->index->rd_opcintype[k];

		ScanKeyEntryInitialize(&skeys[k], 0, k + 1, strategies[k], type,
							   s->index->rd_indcollation[k],
							   btree_proc(s->index->rd_opfamily[k], type, strategies[k]), keys[k]);
	}
	s->slot = table_slot_create(rel, NULL);
	s->scan = index_beginscan(rel, s->index, SnapshotSelf, nkeys, 0);
	/* before the rescan: that is where the index's access method looks at it */
	s->scan->xs_want_itup = entries;
	index_rescan(s->scan, skeys, nkeys, NULL, 0);
	return s;
}

static const StrategyNumber equal_strategies[ROWS_SCAN_MAX_KEYS] = {
	BTEqualStrategyNumber, BTEqualStrategyNumber, BTEqualStrategyNumber
};

/*
 * rows_scan_on
 *		rows_scan() through another index of rel: the rows whose leading key
 *		columns equal keys[], in the index's order.
 */
RowsScan *
rows_scan_on(Relation rel, Oid indexid, int nkeys, const Datum *keys)
{
	return scan_begin(rel, indexid, equal_strategies, nkeys, keys, false);
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
	/* the lock is kept to the end of the transaction, as the executor keeps it */
	index_close(s->index, NoLock);
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

/*
 * rows_fetch_tid
 *		The row at tid (as rows_fetch() returns it: a copy with its t_self)
 *		when it is there, the latest version (SnapshotSelf) and not changed
 *		since; NULL otherwise, the caller then finds it by key.  For a row
 *		this transaction locked a moment ago (a claimed queue row): no index
 *		is searched again.
 */
HeapTuple
rows_fetch_tid(Relation rel, ItemPointer tid)
{
	HeapTupleData tuple;
	Buffer		buffer;
	HeapTuple	found = NULL;

	if (tid == NULL || !ItemPointerIsValid(tid))
		return NULL;
	CommandCounterIncrement();
	tuple.t_self = *tid;
	if (heap_fetch(rel, SnapshotSelf, &tuple, &buffer, false))
	{
		/* not updated since (a lock leaves t_ctid pointing at itself) */
		if (ItemPointerEquals(&tuple.t_self, &tuple.t_data->t_ctid))
			found = heap_copytuple(&tuple);
		ReleaseBuffer(buffer);
	}
	else if (BufferIsValid(buffer))
		ReleaseBuffer(buffer);
	return found;
}

/*
 * rows_scan_until
 *		The rows of rel whose first column in index indexid is at most
 *		"upper", in the index's order: a range of the index read to its end
 *		and no further (the lease expiries due by a time, in
 *		work_queue_leased).
 */
RowsScan *
rows_scan_until(Relation rel, Oid indexid, Datum upper)
{
	StrategyNumber strategy = BTLessEqualStrategyNumber;

	return scan_begin(rel, indexid, &strategy, 1, &upper, false);
}

/*
 * rows_scan_range
 *		The entries of index indexid whose leading nkeys columns compare with
 *		keys[] by strategies[] (btree strategy numbers: keys[k] is the right
 *		operand), in the index's order, each seen before its row: what
 *		rows_next_entry() says of an entry decides whether its row is read
 *		(rows_entry_row()).
 */
RowsScan *
rows_scan_range(Relation rel, Oid indexid, int nkeys, const StrategyNumber *strategies,
				const Datum *keys)
{
	return scan_begin(rel, indexid, strategies, nkeys, keys, true);
}

/*
 * rows_next_entry
 *		The next entry of a rows_scan_range(): the row it points to (*tid,
 *		the root of a HOT chain) and its key columns (values[], isnull[]:
 *		as many as the index has; valid until the next call).  False at
 *		the end.
 */
bool
rows_next_entry(RowsScan *s, ItemPointer tid, Datum *values, bool *isnull)
{
	ItemPointer found = index_getnext_tid(s->scan, ForwardScanDirection);

	if (found == NULL)
		return false;
	*tid = *found;
	index_deform_tuple(s->scan->xs_itup, s->scan->xs_itupdesc, values, isnull);
	return true;
}

/*
 * rows_entry_row
 *		The row of the entry rows_next_entry() returned last, the latest
 *		version (SnapshotSelf) as rows_next() returns it; NULL when none is
 *		visible.
 */
HeapTuple
rows_entry_row(RowsScan *s)
{
	bool		should_free;
	HeapTuple	tuple;

	do
	{
		if (index_fetch_heap(s->scan, s->slot))
		{
			tuple = ExecFetchSlotHeapTuple(s->slot, false, &should_free);
			Assert(!should_free);
			return tuple;
		}
	} while (s->scan->xs_heap_continue);
	return NULL;
}

/*
 * rows_held_elsewhere
 *		Does another transaction, still running, hold the row the scan
 *		returned last (a lock of any strength, an update or a delete of
 *		it)?  Then a lock of it that does not wait fails: told here from
 *		the row's header, without the lock manager (heap_lock_tuple() asks
 *		it for the row's lock and the holder's transaction lock).  False
 *		when in doubt (a multixact): the caller tries the lock.
 */
bool
rows_held_elsewhere(RowsScan *s)
{
	Buffer		buffer = ((BufferHeapTupleTableSlot *) s->slot)->buffer;
	HeapTupleHeader header = ((BufferHeapTupleTableSlot *) s->slot)->base.tuple->t_data;
	uint16		infomask;
	TransactionId xmax;

	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	infomask = header->t_infomask;
	xmax = HeapTupleHeaderGetRawXmax(header);
	LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
	if (infomask & (HEAP_XMAX_INVALID | HEAP_XMAX_IS_MULTI | HEAP_XMAX_COMMITTED))
		return false;
	if (!TransactionIdIsNormal(xmax) || TransactionIdIsCurrentTransactionId(xmax))
		return false;
	return TransactionIdIsInProgress(xmax);
}
