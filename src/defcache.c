/*-------------------------------------------------------------------------
 *
 * defcache.c
 *	  Step definitions as the state machine uses them, read once per
 *	  process.
 *
 * Definitions are never updated or deleted, so a definition whose rows
 * were committed can be kept for the life of the process (one whose rows
 * are not committed yet, in this transaction, might still be rolled back).
 * The cache is emptied when the table is a new one (the extension was
 * created again).
 *
 * A definition can be large (a sql step's text, its args, its dependents)
 * and users define as many workflows as they like, so the cache holds at
 * most orchestrator.definition_cache_size bytes per process: each entry has
 * its own memory context, whose size is what it costs, and the least
 * recently used entries go first when a new one needs room.  The engine
 * holds what it looked up until its outermost unit of work ends: every
 * outermost unit starts a new epoch (engine_def_cache_check()), and an entry
 * used in the current epoch is in use and never freed.  When the entries in
 * use fill the cache, a new one is not kept (the caller has its own copy):
 * the bound holds whatever one unit needs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "lib/ilist.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "defcache.h"
#include "engine_stmt.h"
#include "guc.h"

#define DEF_KEY_LEN 256

typedef struct DefCacheEntry
{
	char		key[DEF_KEY_LEN];
	StepDef    *def;			/* "version/name/step" */
	RunShape   *shape;			/* "version/name/": its steps */
	MemoryContext context;		/* holds def or shape */
	Size		bytes;			/* what the entry costs */
	uint64		epoch;			/* of the outermost unit that used it last */
	dlist_node	lru;			/* least recently used first */
} DefCacheEntry;

static HTAB *def_cache = NULL;
static MemoryContext def_cache_context = NULL;
static Oid	def_cache_table = InvalidOid;
static dlist_head def_lru = DLIST_STATIC_INIT(def_lru);
static uint64 def_epoch = 0;
static CacheFigures def_figures;

static void
reset_def_cache(void)
{
	HASHCTL		ctl;

	if (def_cache_context != NULL)
		MemoryContextDelete(def_cache_context);
	def_cache_context = AllocSetContextCreate(TopMemoryContext, "orchestrator step definitions",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = DEF_KEY_LEN;
	ctl.entrysize = sizeof(DefCacheEntry);
	ctl.hcxt = def_cache_context;
	def_cache = hash_create("orchestrator step definitions", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	dlist_init(&def_lru);
	def_figures.entries = 0;
	def_figures.bytes = 0;
}

/* The bound in bytes (the setting is in kB). */
static Size
def_cache_limit(void)
{
	return (Size) orchestrator_definition_cache_size * 1024;
}

/* A hit: the entry is in use in this epoch and the most recently used. */
static void
def_cache_touch(DefCacheEntry *entry)
{
	def_figures.hits++;
	entry->epoch = def_epoch;
	dlist_move_tail(&def_lru, &entry->lru);
}

/*
 * def_cache_make_room
 *		Evict least recently used entries not in use until "bytes" more fit
 *		under the bound; false when they cannot.
 */
static bool
def_cache_make_room(Size bytes)
{
	dlist_mutable_iter iter;
	Size		limit = def_cache_limit();

	if (bytes > limit)
		return false;
	dlist_foreach_modify(iter, &def_lru)
	{
		DefCacheEntry *entry = dlist_container(DefCacheEntry, lru, iter.cur);

		if (def_figures.bytes + bytes <= limit)
			break;
		if (entry->epoch == def_epoch)
			continue;
		def_figures.bytes -= entry->bytes;
		def_figures.entries--;
		def_figures.evictions++;
		dlist_delete(&entry->lru);
		MemoryContextDelete(entry->context);
		hash_search(def_cache, entry->key, HASH_REMOVE, NULL);
	}
	return def_figures.bytes + bytes <= limit;
}

/* A context for a new entry's copy. */
static MemoryContext
def_entry_context(void)
{
	return AllocSetContextCreate(def_cache_context, "orchestrator step definition",
								 ALLOCSET_SMALL_SIZES);
}

/*
 * def_cache_add
 *		Enter "key" with what "context" holds, if it fits; else drop the
 *		context.  NULL when not kept.
 */
static DefCacheEntry *
def_cache_add(const char *key, MemoryContext context)
{
	Size		bytes = MemoryContextMemAllocated(context, true) + sizeof(DefCacheEntry);
	DefCacheEntry *entry;
	bool		found;

	if (!def_cache_make_room(bytes))
	{
		MemoryContextDelete(context);
		return NULL;
	}
	entry = hash_search(def_cache, key, HASH_ENTER, &found);
	if (found)
	{
		/* cannot happen: looked up first; keep the one that may be in use */
		MemoryContextDelete(context);
		return NULL;
	}
	entry->def = NULL;
	entry->shape = NULL;
	entry->context = context;
	entry->bytes = bytes;
	entry->epoch = def_epoch;
	dlist_push_tail(&def_lru, &entry->lru);
	def_figures.entries++;
	def_figures.bytes += bytes;
	return entry;
}

/* The cache's figures in this process. */
void
defcache_figures(CacheFigures *figures)
{
	*figures = def_figures;
	figures->limit_bytes = def_cache_limit();
}

/*
 * engine_def_cache_check
 *		An outermost unit of work begins: what earlier units looked up is no
 *		longer in use (a new epoch), a lowered bound applies, and the cache is
 *		emptied when the definitions table is a new one (the extension was
 *		created again).  Only in an outermost unit: an outer one holds the
 *		definitions it looked up.
 */
void
engine_def_cache_check(void)
{
	Oid			table = get_relname_relid("definition_steps",
										  get_namespace_oid("orchestrator", false));

	if (def_cache == NULL || def_cache_table != table)
	{
		reset_def_cache();
		def_cache_table = table;
	}
	def_epoch++;
	(void) def_cache_make_room(0);
}

static Datum
copy_datum(Datum d, bool isnull, int16 typlen)
{
	return isnull ? (Datum) 0 : datumCopy(d, false, typlen);
}

static char *
copy_string(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/* A copy of a definition in "target". */
static StepDef *
copy_step_def(StepDef *def, MemoryContext target)
{
	MemoryContext context = MemoryContextSwitchTo(target);
	StepDef    *copy = palloc(sizeof(StepDef));

	*copy = *def;
	copy->name = pstrdup(def->name);
	copy->step = pstrdup(def->step);
	copy->compensates = copy_string(def->compensates);
	copy->queue = copy_string(def->queue);
	copy->sql = copy_string(def->sql);
	copy->signal = copy_string(def->signal);
	copy->rate_key = copy_string(def->rate_key);
	copy->condition = copy_datum(def->condition, !def->has_condition, -1);
	copy->when = copy_datum(def->when, !def->has_condition, -1);
	copy->args_json = copy_datum(def->args_json, false, -1);
	copy->args = copy_datum(def->args, def->args_isnull, -1);
	copy->ready_input = copy_datum(def->ready_input, def->ready_input_isnull, -1);
	copy->duration = copy_datum(def->duration, def->duration_isnull, 16);
	copy->timeout = copy_datum(def->timeout, def->timeout_isnull, 16);
	copy->backoff = copy_datum(def->backoff, false, 16);
	copy->max_backoff = copy_datum(def->max_backoff, false, 16);
	copy->dependents = copy_datum(def->dependents, false, -1);
	copy->for_each_path = copy_datum(def->for_each_path, !def->for_each, -1);
	copy->element_of = copy_string(def->element_of);
	copy->child_workflow = copy_string(def->child_workflow);
	MemoryContextSwitchTo(context);
	return copy;
}

static StepKind
kind_from_name(const char *kind)
{
	static const char *const names[KIND_COUNT] = {"sql", "external", "http", "sleep", "wait", "workflow"};

	for (int i = 0; i < KIND_COUNT; i++)
		if (strcmp(kind, names[i]) == 0)
			return (StepKind) i;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("unknown step kind \"%s\" in orchestrator.definition_steps", kind)));
	return KIND_SQL;			/* keep the compiler quiet */
}

/* Read the definition statement's row into *def. */
static void
load_step_def(StepDef *def)
{
	bool		isnull;
	Datum		d;

	def->kind = kind_from_name(engine_col_text("kind"));
	def->compensates = engine_col_text("compensates");
	def->templated = engine_col_bool("templated");
	def->condition = engine_col("condition", &isnull);
	def->has_condition = !isnull;
	def->when = engine_col("when", &isnull);
	if (isnull && def->has_condition)
		def->when = DirectFunctionCall1(jsonb_in, CStringGetDatum("null"));
	def->queue = engine_col_text("queue");
	def->sql = engine_col_text("sql");
	def->args_json = engine_col("args_json", &isnull);
	def->args = engine_col("args", &def->args_isnull);
	def->timeout_ms = engine_col_int32("timeout_ms");
	def->ready_input = engine_col("ready_input", &def->ready_input_isnull);
	def->duration = engine_col("duration", &def->duration_isnull);
	def->signal = engine_col_text("signal");
	def->timeout = engine_col("timeout", &def->timeout_isnull);
	def->max_attempts = engine_col_int32("max_attempts");
	def->backoff = engine_col("backoff", &isnull);
	d = engine_col("multiplier", &isnull);
	def->multiplier = DatumGetFloat8(d);
	def->max_backoff = engine_col("max_backoff", &isnull);
	d = engine_col("jitter", &isnull);
	def->jitter = DatumGetFloat8(d);
	def->on_error_continue = engine_col_bool("on_error_continue");
	def->dependents = engine_col("dependents", &isnull);
	def->has_result_template = engine_col_bool("has_result_template");
	def->rate_key = engine_col_text("rate_key");
	if (def->rate_key != NULL)
	{
		d = engine_col("rate_per_second", &isnull);
		def->rate_per_second = isnull ? 1 : DatumGetFloat8(d);
		def->rate_burst = Max(engine_col_int32("rate_burst"), 1);
	}
	def->for_each_path = engine_col("for_each", &isnull);
	def->for_each = !isnull;
	def->max_parallel = engine_col_int32("max_parallel");
	def->element_of = NULL;
	def->element_index = 0;
	def->child_workflow = engine_col_text("child_workflow");
	def->child_version = engine_col_int32("child_version");
	/* a rate-limited step takes its token in engine_step_ready() */
	def->plain_when_ready = def->rate_key == NULL && !def->has_condition && !def->for_each &&
		(def->kind == KIND_SQL || (def->kind == KIND_EXTERNAL && !def->templated));
}

/*
 * engine_step_def
 *		The definition of a step, from the cache or read now (in the current
 *		memory context).  def->found is false when there is none.
 */
StepDef *
engine_step_def(const char *name, int32 version, const char *step)
{
	StepDef    *def;
	Datum		values[3];
	char		key[DEF_KEY_LEN];
	int			keylen;
	bool		cacheable;

	/* an element "<step>[<i>]" of a for_each step: its step's, adapted */
	{
		size_t		len = strlen(step);

		if (len > 0 && step[len - 1] == ']')
		{
			char	   *base_name;
			int32		index;

			if (step_element_name(step, &base_name, &index))
			{
				StepDef    *base = engine_step_def(name, version, base_name);

				if (base->found && base->for_each)
					return step_element_def(base, step, index);
			}
			def = palloc0(sizeof(StepDef));
			def->name = pstrdup(name);
			def->version = version;
			def->step = pstrdup(step);
			return def;
		}
	}

	keylen = snprintf(key, sizeof(key), "%d/%s/%s", version, name, step);
	cacheable = keylen < DEF_KEY_LEN;
	if (cacheable)
	{
		DefCacheEntry *entry = hash_search(def_cache, key, HASH_FIND, NULL);

		if (entry != NULL)
		{
			def_cache_touch(entry);
			return entry->def;
		}
		def_figures.misses++;
	}

	def = palloc0(sizeof(StepDef));
	def->name = pstrdup(name);
	def->version = version;
	def->step = pstrdup(step);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(step);
	if (engine_stmt(S_STEP_DEF, NULL, values, NULL) == 1)
	{
		bool		isnull;
		TransactionId xmin = DatumGetTransactionId(engine_col("xmin", &isnull));

		def->found = true;
		load_step_def(def);
		cacheable &= !TransactionIdIsCurrentTransactionId(xmin) && TransactionIdDidCommit(xmin);
	}
	else
		cacheable = false;
	engine_rows_done();

	if (cacheable)
	{
		MemoryContext context = def_entry_context();
		StepDef    *copy = copy_step_def(def, context);
		DefCacheEntry *entry = def_cache_add(key, context);

		if (entry != NULL)
			entry->def = copy;
	}
	return def;
}

/*
 * engine_run_shape
 *		The steps of a version that a new run has (all but compensations),
 *		in position order, and its first steps; cached like step
 *		definitions.
 */
RunShape *
engine_run_shape(const char *name, int32 version)
{
	char		key[DEF_KEY_LEN];
	int			keylen;
	Datum		values[2];
	uint64		n;
	RunShape   *shape;
	bool		cacheable;
	DefCacheEntry *entry;
	TupleDesc	desc;

	keylen = snprintf(key, sizeof(key), "%d/%s/", version, name);
	cacheable = keylen < DEF_KEY_LEN;
	if (cacheable && (entry = hash_search(def_cache, key, HASH_FIND, NULL)) != NULL)
	{
		def_cache_touch(entry);
		return entry->shape;
	}
	if (cacheable)
		def_figures.misses++;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	n = engine_stmt(S_RUN_SHAPE, NULL, values, NULL);
	desc = SPI_tuptable->tupdesc;
	shape = palloc0(sizeof(RunShape));
	shape->steps = palloc0(sizeof(ShapeStep) * Max(n, 1));
	shape->roots = palloc(sizeof(char *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		ShapeStep  *s = &shape->steps[i];
		bool		isnull;
		Datum		d;
		TransactionId xmin;

		s->step = SPI_getvalue(t, desc, SPI_fnumber(desc, "step"));
		s->position = DatumGetInt32(SPI_getbinval(t, desc, SPI_fnumber(desc, "position"), &isnull));
		s->kind = SPI_getvalue(t, desc, SPI_fnumber(desc, "kind"));
		s->ndeps = DatumGetInt32(SPI_getbinval(t, desc, SPI_fnumber(desc, "ndeps"), &isnull));
		if (isnull)
			s->ndeps = 0;
		d = SPI_getbinval(t, desc, SPI_fnumber(desc, "external_input"), &isnull);
		s->external_input = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		if (s->ndeps == 0)
			shape->roots[shape->nroots++] = s->step;
		xmin = DatumGetTransactionId(SPI_getbinval(t, desc, SPI_fnumber(desc, "xmin"), &isnull));
		cacheable &= !TransactionIdIsCurrentTransactionId(xmin) && TransactionIdDidCommit(xmin);
	}
	shape->nsteps = (int) n;
	engine_rows_done();

	if (cacheable && n > 0)
	{
		MemoryContext target = def_entry_context();
		MemoryContext context = MemoryContextSwitchTo(target);
		RunShape   *copy = palloc0(sizeof(RunShape));

		copy->nsteps = shape->nsteps;
		copy->steps = palloc0(sizeof(ShapeStep) * n);
		copy->roots = palloc(sizeof(char *) * n);
		for (int i = 0; i < shape->nsteps; i++)
		{
			ShapeStep  *s = &copy->steps[i];

			*s = shape->steps[i];
			s->step = pstrdup(s->step);
			s->kind = pstrdup(s->kind);
			if (s->external_input != (Datum) 0)
				s->external_input = datumCopy(s->external_input, false, -1);
			if (s->ndeps == 0)
				copy->roots[copy->nroots++] = s->step;
		}
		MemoryContextSwitchTo(context);
		entry = def_cache_add(key, target);
		if (entry != NULL)
			entry->shape = copy;
	}
	return shape;
}

/* The steps of a version that depend on nothing, in position order. */
char	  **
engine_root_steps(const char *name, int32 version, int *nroots)
{
	RunShape   *shape = engine_run_shape(name, version);

	*nroots = shape->nroots;
	return shape->roots;
}

/* ----------------------------------------------------------------
 * Elements of a for_each step (their rows and transitions: compose.c)
 * ---------------------------------------------------------------- */

/*
 * step_element_name
 *		Is "step" the name of an element, "<base>[<index>]"?
 */
bool
step_element_name(const char *step, char **base, int32 *index)
{
	const char *open = strrchr(step, '[');
	size_t		len = strlen(step);
	long		n = 0;

	if (open == NULL || open == step || len < 3 || step[len - 1] != ']' || open + 2 > step + len - 1)
		return false;
	for (const char *c = open + 1; c < step + len - 1; c++)
	{
		if (*c < '0' || *c > '9' || n > FOR_EACH_MAX_ITEMS)
			return false;
		n = n * 10 + (*c - '0');
	}
	*base = pnstrdup(step, open - step);
	*index = (int32) n;
	return true;
}

/*
 * step_element_def
 *		The definition of an element: its step's (kind, action, retry
 *		policy, timeout, on_error), without what belongs to the step as a
 *		whole (its condition, the fan-out, its dependents).  In the current
 *		memory context; the step's definition is held by the unit of work.
 */
StepDef *
step_element_def(StepDef *base, const char *step, int32 index)
{
	StepDef    *def = palloc(sizeof(StepDef));

	*def = *base;
	def->step = pstrdup(step);
	def->element_of = base->step;
	def->element_index = index;
	def->for_each = false;
	def->has_condition = false;
	def->plain_when_ready = false;
	def->dependents = PointerGetDatum(construct_empty_array(TEXTOID));
	return def;
}
