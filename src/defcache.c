/*-------------------------------------------------------------------------
 *
 * defcache.c
 *	  Step definitions as the state machine uses them, read once per
 *	  process.
 *
 * Definitions are never updated or deleted, so a definition whose rows
 * were committed is kept for the life of the process (one whose rows are
 * not committed yet, in this transaction, might still be rolled back).
 * The cache is emptied when the table is a new one (the extension was
 * created again); beyond DEF_CACHE_MAX entries, definitions are read each
 * time (entries are never freed while a unit of work may hold them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "engine.h"

#define DEF_KEY_LEN 256
#define DEF_CACHE_MAX 4096

typedef struct DefCacheEntry
{
	char		key[DEF_KEY_LEN];
	StepDef    *def;			/* "version/name/step" */
	char	  **roots;			/* "version/name/": its first steps */
	int			nroots;
} DefCacheEntry;

static HTAB *def_cache = NULL;
static MemoryContext def_cache_context = NULL;
static Oid	def_cache_table = InvalidOid;

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
}

/*
 * engine_def_cache_check
 *		Empty the cache when the definitions table is a new one (the
 *		extension was created again).  Only in an outermost unit of work: an
 *		outer one may hold cached definitions.
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

/* A copy of a definition in the cache's memory. */
static StepDef *
copy_step_def(StepDef *def)
{
	MemoryContext context = MemoryContextSwitchTo(def_cache_context);
	StepDef    *copy = palloc(sizeof(StepDef));

	*copy = *def;
	copy->name = pstrdup(def->name);
	copy->step = pstrdup(def->step);
	copy->compensates = copy_string(def->compensates);
	copy->queue = copy_string(def->queue);
	copy->sql = copy_string(def->sql);
	copy->signal = copy_string(def->signal);
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
	MemoryContextSwitchTo(context);
	return copy;
}

static StepKind
kind_from_name(const char *kind)
{
	static const char *const names[KIND_COUNT] = {"sql", "external", "http", "sleep", "wait"};

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
	def->plain_when_ready = !def->has_condition &&
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

	keylen = snprintf(key, sizeof(key), "%d/%s/%s", version, name, step);
	cacheable = keylen < DEF_KEY_LEN;
	if (cacheable)
	{
		DefCacheEntry *entry = hash_search(def_cache, key, HASH_FIND, NULL);

		if (entry != NULL)
			return entry->def;
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
		DefCacheEntry *entry;

		/* full: no more entries (definitions in use must stay valid) */
		if (hash_get_num_entries(def_cache) >= DEF_CACHE_MAX)
			return def;
		entry = hash_search(def_cache, key, HASH_ENTER, NULL);
		entry->def = copy_step_def(def);
	}
	return def;
}

/*
 * engine_root_steps
 *		The steps of a version that depend on nothing (its first steps), in
 *		position order; cached like step definitions.
 */
char	  **
engine_root_steps(const char *name, int32 version, int *nroots)
{
	char		key[DEF_KEY_LEN];
	int			keylen;
	Datum		values[2];
	uint64		n;
	char	  **roots;
	bool		cacheable;
	DefCacheEntry *entry;

	keylen = snprintf(key, sizeof(key), "%d/%s/", version, name);
	cacheable = keylen < DEF_KEY_LEN;
	if (cacheable && (entry = hash_search(def_cache, key, HASH_FIND, NULL)) != NULL)
	{
		*nroots = entry->nroots;
		return entry->roots;
	}

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	n = engine_stmt(S_ROOT_STEPS, NULL, values, NULL);
	roots = palloc(sizeof(char *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		TransactionId xmin;

		roots[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
								SPI_fnumber(SPI_tuptable->tupdesc, "step"));
		xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												   SPI_fnumber(SPI_tuptable->tupdesc, "xmin"), &isnull));
		cacheable &= !TransactionIdIsCurrentTransactionId(xmin) && TransactionIdDidCommit(xmin);
	}
	engine_rows_done();
	*nroots = (int) n;

	if (cacheable && n > 0 && hash_get_num_entries(def_cache) < DEF_CACHE_MAX)
	{
		MemoryContext context = MemoryContextSwitchTo(def_cache_context);

		entry = hash_search(def_cache, key, HASH_ENTER, NULL);
		entry->def = NULL;
		entry->nroots = (int) n;
		entry->roots = palloc(sizeof(char *) * n);
		for (uint64 i = 0; i < n; i++)
			entry->roots[i] = pstrdup(roots[i]);
		MemoryContextSwitchTo(context);
	}
	return roots;
}
