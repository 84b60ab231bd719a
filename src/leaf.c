/*-------------------------------------------------------------------------
 *
 * leaf.c
 *	  Statements on the daily partitions of one run's history.
 *
 * A generic plan on a partitioned table locks every partition each time it
 * runs and initialises run-time pruning over all of them: with 90 days of
 * history that is about 100 partitions per table in every statement, and it
 * halved the step rate.  The engine's hot path knows which day a run belongs to (its id is
 * a UUIDv7), so it finds the partitions holding the run through the
 * relcache's partition bounds and runs statements prepared against them
 * directly: one relation locked, no Append.  Plans are kept per set of
 * partitions and statement, and revalidated by the plan cache as usual.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "executor/spi_priv.h"
#include "lib/stringinfo.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/uuid.h"

#include "cache_figures.h"
#include "leaf.h"
#include "relcache_watch.h"

/*
 * Kept plans: about 25 statements for each day whose runs are active.
 * Beyond this many, the least recently used plan goes.
 */
#define LEAF_PLAN_CACHE_MAX 1024

typedef struct LeafPlanKey
{
	int			id;
	RunLeaves	leaves;
} LeafPlanKey;

typedef struct LeafPlanEntry
{
	LeafPlanKey key;
	SPIPlanPtr	plan;
	uint64		last_used;
} LeafPlanEntry;

static HTAB *leaf_plans = NULL;
static uint64 leaf_plan_clock = 0;
static CacheFigures leaf_plan_counts;	/* hits, misses, evictions */

/* Is "context" "ancestor" or one of its descendants? */
static bool
context_within(MemoryContext context, MemoryContext ancestor)
{
	for (; context != NULL; context = context->parent)
		if (context == ancestor)
			return true;
	return false;
}

/*
 * orchestrator_plan_bytes
 *		Memory a prepared plan holds: its statements' parse and query trees
 *		and their generic plans (custom plans are not kept).
 */
Size
orchestrator_plan_bytes(SPIPlanPtr plan)
{
	Size		bytes = MemoryContextMemAllocated(plan->plancxt, true);
	ListCell   *lc;

	foreach(lc, plan->plancache_list)
	{
		CachedPlanSource *source = (CachedPlanSource *) lfirst(lc);

		/* plancxt may be the source's parent (SPI's own plans): no matter */
		if (!context_within(source->context, plan->plancxt))
			bytes += MemoryContextMemAllocated(source->context, true);
		if (source->gplan != NULL)
			bytes += MemoryContextMemAllocated(source->gplan->context, true);
	}
	return bytes;
}

/* The three history tables, partitioned alike by run id (a day each). */
typedef enum HistoryTable
{
	HT_RUNS,
	HT_STEPS,
	HT_EVENTS,
	HT_COUNT
} HistoryTable;

static const char *const history_tables[HT_COUNT] = {"workflow_runs", "workflow_steps", "workflow_events"};

/*
 * The partition each history table gave last, with its bounds: the next run
 * of the same day is placed by two comparisons, without the parent's name
 * looked up or its bounds searched again (three times per run locked, 6,000
 * instructions).  Forgotten at a relcache invalidation of the parent (a
 * partition created, attached, detached or dropped invalidates it; so does
 * dropping the extension) or of all relations.  The parent is still locked
 * each time, first: the lock keeps the partition from being detached
 * meanwhile, and taking it reads the invalidations that arrived.
 */
typedef struct LeafRange
{
	Oid			parent;			/* InvalidOid: not looked up */
	Oid			leaf;			/* InvalidOid: no range kept */
	pg_uuid_t	lower;			/* the leaf holds lower <= run id < upper */
	pg_uuid_t	upper;
} LeafRange;

static LeafRange leaf_ranges[HT_COUNT];

static void
leaf_ranges_forget(Datum arg, Oid relid)
{
	for (int t = 0; t < HT_COUNT; t++)
		if (!OidIsValid(relid) || relid == leaf_ranges[t].parent)
		{
			leaf_ranges[t].parent = InvalidOid;
			leaf_ranges[t].leaf = InvalidOid;
		}
}

/* Keep the bounds of partition "index" of a range-partitioned table, if finite. */
static void
keep_leaf_range(LeafRange *c, PartitionBoundInfo bounds, int offset, Oid leaf)
{
	if (offset < 0 || offset + 1 >= bounds->ndatums ||
		bounds->kind[offset][0] != PARTITION_RANGE_DATUM_VALUE ||
		bounds->kind[offset + 1][0] != PARTITION_RANGE_DATUM_VALUE)
		return;
	memcpy(&c->lower, DatumGetUUIDP(bounds->datums[offset][0]), sizeof(pg_uuid_t));
	memcpy(&c->upper, DatumGetUUIDP(bounds->datums[offset + 1][0]), sizeof(pg_uuid_t));
	c->leaf = leaf;
}

/*
 * leaf_of
 *		The partition of history table t whose range holds run_id;
 *		InvalidOid when there is none and missing_ok.
 */
static Oid
leaf_of(HistoryTable t, Datum run_id, bool missing_ok)
{
	LeafRange  *c = &leaf_ranges[t];
	const pg_uuid_t *id = DatumGetUUIDP(run_id);
	Relation	rel;
	PartitionKey key;
	PartitionDesc desc;
	int			index = -1;
	int			offset = -1;
	Oid			leaf;

	if (OidIsValid(c->leaf))
	{
		/* the lock first: the invalidations it reads may forget the range */
		LockRelationOid(c->parent, AccessShareLock);
		if (OidIsValid(c->leaf) &&
			memcmp(id->data, c->lower.data, UUID_LEN) >= 0 &&
			memcmp(id->data, c->upper.data, UUID_LEN) < 0)
			return c->leaf;
	}

	orchestrator_watch_relcache(leaf_ranges_forget);
	if (!OidIsValid(c->parent))
		c->parent = get_relname_relid(history_tables[t], get_namespace_oid("orchestrator", false));
	if (!OidIsValid(c->parent))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"orchestrator.%s\" does not exist", history_tables[t])));

	/* the lock keeps the partition from being detached under us */
	rel = table_open(c->parent, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"orchestrator.%s\" is not partitioned", history_tables[t])));
	key = RelationGetPartitionKey(rel);
	desc = RelationGetPartitionDesc(rel, true);
	if (desc->nparts > 0 && key->strategy == PARTITION_STRATEGY_RANGE)
	{
		bool		is_equal;

		offset = partition_range_datum_bsearch(key->partsupfunc, key->partcollation,
											   desc->boundinfo, 1, &run_id, &is_equal);
		index = desc->boundinfo->indexes[offset + 1];
	}
	if ((index < 0 || !desc->is_leaf[index]) && missing_ok)
	{
		table_close(rel, NoLock);
		return InvalidOid;
	}
	if (index < 0 || !desc->is_leaf[index])
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no partition of \"orchestrator.%s\" holds run %s", history_tables[t],
						DatumGetCString(DirectFunctionCall1(uuid_out, run_id))),
				 errhint("Partitions are created ahead by the dispatchers and by orchestrator.maintain().")));
	leaf = desc->oids[index];
	/* its run ids are of the uuid type's order: the partition key's opclass is uuid_ops */
	if (key->partsupfunc[0].fn_oid == F_UUID_CMP)
		keep_leaf_range(c, desc->boundinfo, offset, leaf);
	table_close(rel, NoLock);
	return leaf;
}

/*
 * orchestrator_run_leaves
 *		The partitions of the three history tables that hold a run.  When
 *		there are none (a run id from before the oldest partition), false if
 *		missing_ok, else an error.
 */
bool
orchestrator_run_leaves(Datum run_id, RunLeaves *leaves, bool missing_ok)
{
	leaves->runs = leaf_of(HT_RUNS, run_id, missing_ok);
	leaves->steps = leaf_of(HT_STEPS, run_id, missing_ok);
	leaves->events = leaf_of(HT_EVENTS, run_id, missing_ok);
	return OidIsValid(leaves->runs) && OidIsValid(leaves->steps) && OidIsValid(leaves->events);
}

/* An unpartitioned table of the extension (work_queue, ...), by name. */
Oid
orchestrator_table_oid(const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("orchestrator", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table orchestrator.%s does not exist", name)));
	return relid;
}

/* Append the schema-qualified, quoted name of a relation. */
static void
append_relation_name(StringInfo buf, Oid relid)
{
	char	   *name = get_rel_name(relid);
	char	   *nsp = get_namespace_name(get_rel_namespace(relid));

	if (name == NULL || nsp == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("partition with OID %u does not exist", relid)));
	appendStringInfoString(buf, quote_qualified_identifier(nsp, name));
}

/*
 * expand_leaves
 *		The statement text with @runs@, @steps@ and @events@ replaced by the
 *		names of the run's partitions.
 */
static char *
expand_leaves(const char *sql, const RunLeaves *leaves)
{
	StringInfoData buf;
	const char *p = sql;

	initStringInfo(&buf);
	while (*p)
	{
		if (leaves != NULL && strncmp(p, "@runs@", 6) == 0)
		{
			append_relation_name(&buf, leaves->runs);
			p += 6;
		}
		else if (leaves != NULL && strncmp(p, "@steps@", 7) == 0)
		{
			append_relation_name(&buf, leaves->steps);
			p += 7;
		}
		else if (leaves != NULL && strncmp(p, "@events@", 8) == 0)
		{
			append_relation_name(&buf, leaves->events);
			p += 8;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* Make the table of kept plans. */
static void
create_leaf_plans(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(LeafPlanKey);
	ctl.entrysize = sizeof(LeafPlanEntry);
	ctl.hcxt = TopMemoryContext;
	leaf_plans = hash_create("orchestrator leaf plans", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Drop the least recently used plan (a scan: only when the table is full). */
static void
evict_leaf_plan(void)
{
	HASH_SEQ_STATUS status;
	LeafPlanEntry *entry;
	LeafPlanEntry *oldest = NULL;

	hash_seq_init(&status, leaf_plans);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (oldest == NULL || entry->last_used < oldest->last_used)
			oldest = entry;
	if (oldest == NULL)
		return;
	SPI_freeplan(oldest->plan);
	hash_search(leaf_plans, &oldest->key, HASH_REMOVE, NULL);
	leaf_plan_counts.evictions++;
}

/*
 * orchestrator_leaf_plan
 *		The kept plan of statement "id" (text "sql") for a run's partitions;
 *		leaves NULL for a statement on unpartitioned tables only.  Must be
 *		called inside an SPI connection.  Plans are generic from the start:
 *		every statement here is a probe by key.
 */
SPIPlanPtr
orchestrator_leaf_plan(int id, const char *sql, int nargs, Oid *argtypes,
					   const RunLeaves *leaves)
{
	LeafPlanKey key;
	LeafPlanEntry *entry;
	bool		found;
	SPIPlanPtr	plan;

	if (leaf_plans == NULL)
		create_leaf_plans();

	memset(&key, 0, sizeof(key));
	key.id = id;
	if (leaves != NULL)
		key.leaves = *leaves;

	entry = hash_search(leaf_plans, &key, HASH_FIND, NULL);
	if (entry != NULL)
	{
		leaf_plan_counts.hits++;
		entry->last_used = ++leaf_plan_clock;
		return entry->plan;
	}
	leaf_plan_counts.misses++;

	plan = SPI_prepare_cursor(expand_leaves(sql, leaves), nargs, argtypes,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not prepare an orchestrator statement: %s",
						SPI_result_code_string(SPI_result))));
	if (SPI_keepplan(plan) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not keep the plan of an orchestrator statement")));

	if (hash_get_num_entries(leaf_plans) >= LEAF_PLAN_CACHE_MAX)
		evict_leaf_plan();
	entry = hash_search(leaf_plans, &key, HASH_ENTER, &found);
	entry->plan = plan;
	entry->last_used = ++leaf_plan_clock;
	return plan;
}

/*
 * orchestrator_leaf_plan_figures
 *		The figures of the engine's kept statements in this process: bytes
 *		measured now (a scan: for the dispatcher's report after a turn).
 */
void
orchestrator_leaf_plan_figures(CacheFigures *figures)
{
	HASH_SEQ_STATUS status;
	LeafPlanEntry *entry;

	*figures = leaf_plan_counts;
	figures->entries = 0;
	figures->bytes = 0;
	figures->limit_bytes = 0;
	if (leaf_plans == NULL)
		return;
	hash_seq_init(&status, leaf_plans);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		figures->entries++;
		figures->bytes += orchestrator_plan_bytes(entry->plan);
	}
}
