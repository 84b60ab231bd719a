/*-------------------------------------------------------------------------
 *
 * engine.c
 *	  The engine's hot transitions in C, on the partitions of one run.
 *
 * The transitions of 40_engine.sql that every step goes through (a run and
 * a step start, a step succeeds, its dependents become ready, the run
 * succeeds) are done here with statements prepared against the partitions
 * that hold the run (leaf.c): a handful per step instead of thirty-odd
 * PL/pgSQL statements on the partitioned parents.  The dispatcher's sql
 * steps (sql_steps.c), external workers' claims and completions
 * (external.c) and the PL/pgSQL engine's _emit() and _step_succeeded() use
 * them.  Everything else is handed to the PL/pgSQL engine, which stays the
 * reference for the semantics: templates, conditions, other kinds of
 * dependents, compensations, failures and retries, result templates, runs
 * that are no longer active.
 *
 * Callers hold the run's row lock, as in the PL/pgSQL engine, and do their
 * work through engine_unit() (units of work nest).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "engine.h"
#include "fmgr.h"
#include "metrics.h"
#include "otlp.h"
#include "relay.h"
#include "version.h"
#include "wake.h"

/* The statements of the transitions; @runs@ etc. name the run's partitions. */
typedef enum Stmt
{
	S_CLAIM,
	S_CLAIM_FOR,
	S_MAY_WORK,
	S_WEBHOOKS_EXIST,
	S_LOCK_RUN,
	S_LOCK_RUN_WAIT,
	S_LOCK_RUN_ONLY,
	S_LOCK_RUN_ONLY_WAIT,
	S_READ_RUN,
	S_TAKE_LEASED,
	S_STEP_CLAIMED,
	S_LEASE,
	S_STEP_SUCCEEDED_EXTERNAL,
	S_STEP_DEF,
	S_RUN_STARTED,
	S_EMIT,
	S_EMIT_RESULT,
	S_STEP_RUNNING,
	S_DEQUEUE,
	S_STEP_SUCCEEDED,
	S_ADD_COST,
	S_RELEASE_DEPENDENT,
	S_RELEASE_READY,
	S_ENQUEUE,
	S_RUN_STATUS,
	S_OPEN_STEPS,
	S_DELETE_RUN_QUEUE,
	S_RUN_SUCCEEDED,
	S_INSERT_RUN,
	S_INSERT_STEPS,
	S_ROOT_STEPS,
	S_MAKE_READY,
	S_ENQUEUE_TIMER,
	/* hand-overs to the PL/pgSQL engine */
	S_SLOW_EXEC,
	S_SLOW_LEASE_EXPIRED,
	S_SLOW_ATTEMPT_FAILED,
	S_SLOW_STEP_DONE,
	S_SLOW_STEP_READY,
	S_SLOW_RUN_FINISH,
	S_SLOW_WEBHOOK_OUTBOX,
	S_EMIT_COUNTED,
	S_EMIT_RESULT_COUNTED,
	S_EMIT_STEP_COUNTED,
	S_EMIT_RESULT_STEP_COUNTED,
	S_COUNT
} Stmt;

#define MAX_ARGS 10

typedef struct StmtDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[MAX_ARGS];
} StmtDef;

/* a run, with the attempts so far of one of its steps */
#define LOCK_RUN \
	"SELECT status, owner, name, version, priority, deadline," \
	" (SELECT s.attempt FROM @steps@ s WHERE s.run_id = $1 AND s.step = $2)" \
	" FROM @runs@ WHERE id = $1 FOR UPDATE"
/* ... without the attempts */
#define LOCK_RUN_ONLY \
	"SELECT status, owner, name, version, priority, deadline, 0" \
	" FROM @runs@ WHERE id = $1 FOR UPDATE"

static const StmtDef stmts[S_COUNT] = {
	/* as _claim(): due rows in index order, skipping locked ones */
	[S_CLAIM] = {
		"SELECT run_id, step, lease_token IS NOT NULL, worker FROM orchestrator.work_queue"
		" WHERE queue = $1 AND available_at <= now()"
		" ORDER BY priority DESC, available_at LIMIT $2 FOR UPDATE SKIP LOCKED",
	2, {TEXTOID, INT4OID}},
	/* ... only of the workflows named in $3 (claim_steps() of a role) */
	[S_CLAIM_FOR] = {
		"SELECT run_id, step, lease_token IS NOT NULL, worker FROM orchestrator.work_queue"
		" WHERE queue = $1 AND available_at <= now() AND workflow = ANY ($3)"
		" ORDER BY priority DESC, available_at LIMIT $2 FOR UPDATE SKIP LOCKED",
	3, {TEXTOID, INT4OID, TEXTARRAYOID}},
	/* 42501 unless the caller may work external steps of workflow $1 */
	[S_MAY_WORK] = {
		"SELECT orchestrator._require_may_work($1)", 1, {TEXTOID}},
	[S_WEBHOOKS_EXIST] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.webhooks)", 0, {0}},
	[S_LOCK_RUN] = {LOCK_RUN " SKIP LOCKED", 2, {UUIDOID, TEXTOID}},
	[S_LOCK_RUN_WAIT] = {LOCK_RUN, 2, {UUIDOID, TEXTOID}},
	[S_LOCK_RUN_ONLY] = {LOCK_RUN_ONLY " SKIP LOCKED", 1, {UUIDOID}},
	[S_LOCK_RUN_ONLY_WAIT] = {LOCK_RUN_ONLY, 1, {UUIDOID}},
	/* a run the caller has locked already */
	[S_READ_RUN] = {
		"SELECT status, owner, name, version, priority, deadline, 0 FROM @runs@ WHERE id = $1",
	1, {UUIDOID}},
	/*
	 * _check_lease() and the dequeue of _step_succeeded() in one.  The row
	 * must be found by its key: "lease_token = $3" would let the planner
	 * use the partial index of leased rows (it implies lease_token IS NOT
	 * NULL), and with statistics taken while few leases were held, a
	 * generic plan reads every live lease; IS NOT DISTINCT FROM (the token
	 * is never NULL here) does not imply it.
	 */
	[S_TAKE_LEASED] = {
		"DELETE FROM orchestrator.work_queue"
		" WHERE run_id = $1 AND step = $2 AND lease_token IS NOT DISTINCT FROM $3 AND available_at > now()",
	3, {UUIDOID, TEXTOID, UUIDOID}},
	/* _step_started() for an external worker */
	[S_STEP_CLAIMED] = {
		"UPDATE @steps@ SET status = 'running', attempt = attempt + 1, started_at = clock_timestamp(), worker = $3"
		" WHERE run_id = $1 AND step = $2 RETURNING attempt, input",
	3, {UUIDOID, TEXTOID, TEXTOID}},
	[S_LEASE] = {
		"UPDATE orchestrator.work_queue SET lease_token = $3, lease = $4, worker = $5, available_at = now() + $4"
		" WHERE run_id = $1 AND step = $2",
	5, {UUIDOID, TEXTOID, UUIDOID, INTERVALOID, TEXTOID}},
	[S_STEP_SUCCEEDED_EXTERNAL] = {
		"UPDATE @steps@ SET status = 'succeeded', result = $3, error = NULL, finished_at = clock_timestamp()"
		" WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	[S_STEP_DEF] = {
		"SELECT d.kind = 'sql' AND d.compensates IS NULL"
		"   AND jsonb_typeof(coalesce(d.spec -> 'args', '[]')) = 'array'"
		"   AND strpos(coalesce(d.spec -> 'args', '[]')::text, '\"$path\"') = 0,"
		" d.spec ->> 'sql', coalesce(d.spec -> 'args', '[]'),"
		" CASE WHEN jsonb_typeof(coalesce(d.spec -> 'args', '[]')) = 'array'"
		"   THEN ARRAY(SELECT a FROM jsonb_array_elements(coalesce(d.spec -> 'args', '[]')) a) END,"
		" greatest(1, least(extract(epoch FROM coalesce(d.timeout,"
		"   current_setting('orchestrator.default_step_timeout')::interval)) * 1000, 2147483647))::integer,"
		" d.dependents,"
		" (SELECT f.spec ? 'result' FROM orchestrator.definitions f WHERE f.name = d.name AND f.version = d.version),"
		" d.condition IS NULL AND (d.kind = 'sql' OR (d.kind = 'external'"
		"   AND strpos(d.spec::text, '\"$path\"') = 0)),"
		" d.compensates IS NOT NULL,"
		" CASE d.kind WHEN 'sql' THEN '@sql' ELSE d.spec ->> 'queue' END,"
		" CASE d.kind WHEN 'external' THEN coalesce(d.spec -> 'input', '{}') END,"
		" d.xmin"
		" FROM orchestrator.definition_steps d"
		" WHERE d.name = $1 AND d.version = $2 AND d.step = $3",
	3, {TEXTOID, INT4OID, TEXTOID}},
	[S_RUN_STARTED] = {
		"UPDATE @runs@ SET status = 'running', started_at = clock_timestamp()"
		" WHERE id = $1 AND status = 'pending'",
	1, {UUIDOID}},
	[S_EMIT] = {
		"INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, $4 FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
	[S_EMIT_RESULT] = {
		"INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, jsonb_build_object('result', $4::jsonb)"
		" FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
	[S_STEP_RUNNING] = {
		"UPDATE @steps@ SET status = 'running', attempt = attempt + 1, started_at = $3, worker = 'dispatcher'"
		" WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, TIMESTAMPTZOID}},
	[S_DEQUEUE] = {
		"DELETE FROM orchestrator.work_queue WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	[S_STEP_SUCCEEDED] = {
		"UPDATE @steps@ SET status = 'succeeded', attempt = attempt + 1, started_at = $3,"
		" finished_at = clock_timestamp(), worker = 'dispatcher', result = $4, error = NULL,"
		" input = CASE WHEN $5 <> '[]' THEN jsonb_build_object('args', $5) ELSE input END"
		" WHERE run_id = $1 AND step = $2",
	5, {UUIDOID, TEXTOID, TIMESTAMPTZOID, JSONBOID, JSONBOID}},
	[S_ADD_COST] = {
		"UPDATE @runs@ SET cost = cost + round(($2 ->> 'cost')::numeric, 4) WHERE id = $1",
	2, {UUIDOID, JSONBOID}},
	[S_RELEASE_DEPENDENT] = {
		"UPDATE @steps@ s SET deps_open = s.deps_open - 1"
		" WHERE s.run_id = $1 AND s.step = $2 AND s.status = 'waiting'"
		" RETURNING s.deps_open",
	2, {UUIDOID, TEXTOID}},
	/*
	 * The same for a dependent made ready here (_step_ready() of a sql step,
	 * or an external one without templates) when it was the last.
	 */
	[S_RELEASE_READY] = {
		"UPDATE @steps@ s SET deps_open = s.deps_open - 1,"
		" status = CASE WHEN s.deps_open = 1 THEN 'ready' ELSE s.status END,"
		" ready_at = CASE WHEN s.deps_open = 1 THEN clock_timestamp() ELSE s.ready_at END,"
		" input = CASE WHEN s.deps_open = 1 THEN $3 ELSE s.input END"
		" WHERE s.run_id = $1 AND s.step = $2 AND s.status = 'waiting'"
		" RETURNING s.deps_open",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	[S_ENQUEUE] = {
		"INSERT INTO orchestrator.work_queue (run_id, step, queue, priority, available_at, workflow)"
		" VALUES ($1, $2, $4, $3, now(), $5)"
		" ON CONFLICT ON CONSTRAINT work_queue_pkey DO UPDATE"
		" SET queue = excluded.queue, priority = excluded.priority, available_at = excluded.available_at,"
		" lease_token = NULL, lease = NULL, worker = NULL",
	5, {UUIDOID, TEXTOID, INT4OID, TEXTOID, TEXTOID}},
	[S_RUN_STATUS] = {
		"SELECT status FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	[S_OPEN_STEPS] = {
		"SELECT EXISTS (SELECT 1 FROM @steps@ s WHERE s.run_id = $1 AND s.status IN ('waiting', 'ready', 'running'))",
	1, {UUIDOID}},
	[S_DELETE_RUN_QUEUE] = {
		"DELETE FROM orchestrator.work_queue WHERE run_id = $1", 1, {UUIDOID}},
	/* the run succeeds when no step is open any more */
	[S_RUN_SUCCEEDED] = {
		"UPDATE @runs@ w SET status = 'succeeded',"
		" result = (SELECT coalesce(jsonb_object_agg(x.step, x.result), '{}') FROM @steps@ x"
		"   WHERE x.run_id = $1 AND x.status = 'succeeded'),"
		" error = NULL, finished_at = clock_timestamp()"
		" WHERE w.id = $1 AND NOT EXISTS (SELECT 1 FROM @steps@ s"
		"   WHERE s.run_id = $1 AND s.status IN ('waiting', 'ready', 'running'))"
		" RETURNING jsonb_strip_nulls(jsonb_build_object('result', w.result))",
	1, {UUIDOID}},
	/* start_workflow(): the run, its steps, the first steps made ready */
	[S_INSERT_RUN] = {
		"INSERT INTO @runs@ (id, name, version, tenant, owner, started_by, input, idempotency_key, priority, deadline)"
		" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	10, {UUIDOID, TEXTOID, INT4OID, TEXTOID, REGROLEOID, REGROLEOID, JSONBOID, TEXTOID, INT4OID, TIMESTAMPTZOID}},
	[S_INSERT_STEPS] = {
		"INSERT INTO @steps@ (run_id, step, position, kind, deps_open)"
		" SELECT $1, d.step, d.position, d.kind, cardinality(d.depends_on) FROM orchestrator.definition_steps d"
		" WHERE d.name = $2 AND d.version = $3 AND d.compensates IS NULL",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_ROOT_STEPS] = {
		"SELECT d.step FROM orchestrator.definition_steps d"
		" WHERE d.name = $1 AND d.version = $2 AND d.compensates IS NULL AND cardinality(d.depends_on) = 0"
		" ORDER BY d.position",
	2, {TEXTOID, INT4OID}},
	[S_MAKE_READY] = {
		"UPDATE @steps@ SET status = 'ready', ready_at = clock_timestamp(), input = $3"
		" WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	[S_ENQUEUE_TIMER] = {
		"INSERT INTO orchestrator.work_queue (run_id, step, queue, priority, available_at, workflow)"
		" VALUES ($1, $2, '@timer', 0, $3, $4)",
	4, {UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID}},
	[S_SLOW_EXEC] = {
		"SELECT orchestrator._exec_sql_step($1, $2)", 2, {UUIDOID, TEXTOID}},
	[S_SLOW_LEASE_EXPIRED] = {
		"SELECT orchestrator._lease_expired($1, $2, $3)", 3, {UUIDOID, TEXTOID, TEXTOID}},
	[S_SLOW_ATTEMPT_FAILED] = {
		"SELECT orchestrator._attempt_failed($1, $2, jsonb_strip_nulls(jsonb_build_object("
		"  'message', $3, 'sqlstate', $4, 'detail', nullif($5, ''), 'hint', nullif($6, ''))),"
		"  left($4, 2) NOT IN ('42', '0A'))",
	6, {UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}},
	[S_SLOW_STEP_DONE] = {
		"SELECT orchestrator._step_done($1, d) FROM orchestrator.definition_steps d"
		" WHERE d.name = $3 AND d.version = $4 AND d.step = $2",
	4, {UUIDOID, TEXTOID, TEXTOID, INT4OID}},
	[S_SLOW_STEP_READY] = {
		"SELECT orchestrator._step_ready(w, $2) FROM orchestrator.workflow_runs w WHERE w.id = $1",
	2, {UUIDOID, TEXTOID}},
	[S_SLOW_RUN_FINISH] = {
		"SELECT orchestrator._run_finish(w, 'succeeded', NULL) FROM orchestrator.workflow_runs w WHERE w.id = $1",
	1, {UUIDOID}},
	[S_SLOW_WEBHOOK_OUTBOX] = {
		"SELECT orchestrator._webhook_outbox($1, $2, $3, $4, $5)",
	5, {UUIDOID, INT8OID, TEXTOID, TEXTOID, JSONBOID}},
	/*
	 * S_EMIT and S_EMIT_RESULT for an event metrics.c counts, returning also
	 * what it needs: the workflow, the step's kind, times and attempt, the
	 * run's trace (metrics_event()).
	 */
	[S_EMIT_COUNTED] = {
		"WITH ins AS (INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, $4 FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data, at)"
		" SELECT ins.seq, ins.data, r.name, s.kind, s.started_at, s.ready_at, ins.at,"
		" r.trace_id, r.trace_parent, r.created_at, s.attempt"
		" FROM ins, @runs@ r LEFT JOIN @steps@ s ON s.run_id = r.id AND s.step = $3 WHERE r.id = $1",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
	[S_EMIT_RESULT_COUNTED] = {
		"WITH ins AS (INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, jsonb_build_object('result', $4::jsonb)"
		" FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data, at)"
		" SELECT ins.seq, ins.data, r.name, s.kind, s.started_at, s.ready_at, ins.at,"
		" r.trace_id, r.trace_parent, r.created_at, s.attempt"
		" FROM ins, @runs@ r LEFT JOIN @steps@ s ON s.run_id = r.id AND s.step = $3 WHERE r.id = $1",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
	/* ... when the workflow is known and no span is made: the step only */
	[S_EMIT_STEP_COUNTED] = {
		"WITH ins AS (INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, $4 FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data, at)"
		" SELECT ins.seq, ins.data, NULL::text, s.kind, s.started_at, s.ready_at, ins.at,"
		" NULL::text, NULL::text, NULL::timestamptz, s.attempt"
		" FROM ins LEFT JOIN @steps@ s ON s.run_id = $1 AND s.step = $3",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
	[S_EMIT_RESULT_STEP_COUNTED] = {
		"WITH ins AS (INSERT INTO @events@ (run_id, seq, at, type, step, data)"
		" SELECT $1, coalesce(max(e.seq), 0) + 1, clock_timestamp(), $2, $3, jsonb_build_object('result', $4::jsonb)"
		" FROM @events@ e WHERE e.run_id = $1"
		" RETURNING seq, data, at)"
		" SELECT ins.seq, ins.data, NULL::text, s.kind, s.started_at, s.ready_at, ins.at,"
		" NULL::text, NULL::text, NULL::timestamptz, s.attempt"
		" FROM ins LEFT JOIN @steps@ s ON s.run_id = $1 AND s.step = $3",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},
};

PG_FUNCTION_INFO_V1(orchestrator_emit);
PG_FUNCTION_INFO_V1(orchestrator_step_succeeded);

/* A unit of work of the engine (see engine_unit()). */
typedef struct EngineState
{
	MemoryContext context;		/* definitions read during the unit */
	bool		webhooks;		/* do webhook subscriptions exist? */
	int			nestlevel;		/* GUC nest level of its search_path, or -1 */
	int			depth;			/* units it runs inside, plus one */
} EngineState;

/*
 * The current unit of work (between engine_begin() and engine_end()).  Units
 * nest: a sql step's statement may call complete_step(), a hand-over to
 * PL/pgSQL may call _emit(); each entry point saves the outer unit and puts
 * it back, also when an error unwinds through it.
 */
static EngineState engine = {NULL, false, -1, 0};

/* The cache of step definitions: "version/name/step" -> StepDef. */
#define DEF_KEY_LEN 256
#define DEF_CACHE_MAX 4096

typedef struct DefCacheEntry
{
	char		key[DEF_KEY_LEN];
	StepDef    *def;
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

static Datum
copy_datum(Datum d, bool isnull, int16 typlen)
{
	return isnull ? (Datum) 0 : datumCopy(d, false, typlen);
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
	copy->sql = def->sql ? pstrdup(def->sql) : NULL;
	copy->queue = def->queue ? pstrdup(def->queue) : NULL;
	copy->args_json = copy_datum(def->args_json, !def->found, -1);
	copy->args = copy_datum(def->args, def->args_isnull, -1);
	copy->dependents = copy_datum(def->dependents, !def->found, -1);
	copy->ready_input = copy_datum(def->ready_input, def->ready_input_isnull, -1);
	MemoryContextSwitchTo(context);
	return copy;
}

/*
 * run_stmt
 *		Execute statement "s" (on the run's partitions, or none) and return
 *		the number of rows it processed; its rows are in SPI_tuptable.
 */
static uint64
run_stmt(Stmt s, const RunLeaves *leaves, Datum *values, const char *nulls)
{
	const StmtDef *def = &stmts[s];
	MemoryContext context = CurrentMemoryContext;
	SPIPlanPtr	plan = orchestrator_leaf_plan(s, def->sql, def->nargs,
											  (Oid *) def->argtypes, leaves);
	int			rc;

	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	/* SPI returns in its own context */
	MemoryContextSwitchTo(context);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("orchestrator statement %d failed: %s", (int) s, SPI_result_code_string(rc))));
	return SPI_processed;
}

/* Column "col" of the first result row, copied into the current context. */
static Datum
get_col(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);
	Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, col - 1);

	return *isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
}

static char *
get_text(int col)
{
	bool		isnull;
	Datum		d = get_col(col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static void
done_with_rows(void)
{
	SPI_freetuptable(SPI_tuptable);
}

/*
 * webhooks_exist_now
 *		Are there webhook subscriptions (then events get outbox rows)?  Read
 *		once per transaction: a subscription applies from the transactions
 *		that start after it is created.
 */
static bool
webhooks_exist_now(void)
{
	static LocalTransactionId checked_in = InvalidLocalTransactionId;
	static bool exist;
	bool		isnull;

	if (checked_in != MyProc->lxid || checked_in == InvalidLocalTransactionId)
	{
		run_stmt(S_WEBHOOKS_EXIST, NULL, NULL, NULL);
		exist = DatumGetBool(get_col(1, &isnull));
		done_with_rows();
		checked_in = MyProc->lxid;
	}
	return exist;
}

/*
 * metrics_event
 *		Note a counted transition for metrics() and the spans (metrics.c,
 *		otlp.c), from the row S_EMIT_COUNTED returned: the workflow, the
 *		step's kind, times and attempt, the run's trace.  Counted when the
 *		transaction commits.
 */
static void
metrics_event(EngineRun *run, const char *type, const char *step)
{
	bool		isnull;
	MetricsEvent e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.run_id = DatumGetCString(DirectFunctionCall1(uuid_out, run->id));
	e.step = step;
	e.workflow = run->name != NULL ? run->name : get_text(3);
	e.kind = get_text(4);
	e.started_at = DatumGetTimestampTz(get_col(5, &isnull));
	if (isnull)
		e.started_at = 0;
	e.ready_at = DatumGetTimestampTz(get_col(6, &isnull));
	if (isnull)
		e.ready_at = 0;
	e.at = DatumGetTimestampTz(get_col(7, &isnull));
	e.trace_id = get_text(8);
	e.trace_parent = get_text(9);
	e.created_at = DatumGetTimestampTz(get_col(10, &isnull));
	e.attempt = DatumGetInt32(get_col(11, &isnull));
	if (isnull)
		e.attempt = 0;
	orchestrator_metrics_event(&e);
}

/*
 * emit
 *		Append an event to the run's history, NOTIFY it and queue its webhook
 *		deliveries, as orchestrator._emit() does.  "s" is S_EMIT (data is the
 *		event's data; NULL for {}) or S_EMIT_RESULT (data is a step result).
 *		Returns the event's sequence number.
 */
static int64
emit_event(EngineRun *run, Stmt s, const char *type, const char *step, Datum data,
		   bool data_isnull, bool webhooks)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		seq;
	bool		isnull;
	Datum		event_data;
	StringInfoData payload;
	bool		counted;

	values[0] = run->id;
	values[1] = CStringGetTextDatum(type);
	if (step != NULL)
		values[2] = CStringGetTextDatum(step);
	else
		nulls[2] = 'n';
	if (s == S_EMIT && data_isnull)
		values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	else if (data_isnull)
		nulls[3] = 'n';
	else
		values[3] = data;

	/*
	 * metrics.c counts some events: then it reads what it needs as well,
	 * the step's row (and the run's, unless the workflow is known here and
	 * no span is made; then the end of a run needs nothing).
	 */
	counted = orchestrator_metrics_counts(type);
	if (counted && run->name != NULL && !orchestrator_otlp_enabled())
	{
		if (step == NULL)
		{
			MetricsEvent e = {.type = type, .workflow = run->name};

			orchestrator_metrics_event(&e);
			counted = false;
		}
		else
			s = s == S_EMIT ? S_EMIT_STEP_COUNTED : S_EMIT_RESULT_STEP_COUNTED;
	}
	else if (counted)
		s = s == S_EMIT ? S_EMIT_COUNTED : S_EMIT_RESULT_COUNTED;
	if (run_stmt(s, &run->leaves, values, nulls) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not append event \"%s\"", type)));
	seq = DatumGetInt64(get_col(1, &isnull));
	event_data = get_col(2, &isnull);
	if (counted)
		metrics_event(run, type, step);
	done_with_rows();

	/* the same payload as json_build_object() in _emit() */
	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"run_id\" : \"%s\", \"seq\" : " INT64_FORMAT ", \"type\" : ",
					 DatumGetCString(DirectFunctionCall1(uuid_out, run->id)), seq);
	escape_json(&payload, type);
	appendStringInfoString(&payload, ", \"step\" : ");
	if (step != NULL)
		escape_json(&payload, step);
	else
		appendStringInfoString(&payload, "null");
	appendStringInfoChar(&payload, '}');
	orchestrator_notify(RELAY_EVENTS, payload.data);

	if (webhooks)
	{
		Datum		w[5];
		char		wn[5] = {' ', ' ', ' ', nulls[2], ' '};

		w[0] = run->id;
		w[1] = Int64GetDatum(seq);
		w[2] = values[1];
		w[3] = values[2];
		w[4] = event_data;
		run_stmt(S_SLOW_WEBHOOK_OUTBOX, NULL, w, wn);
		done_with_rows();
	}
	return seq;
}

/* emit_event() within a unit of work */
static int64
emit(EngineRun *run, Stmt s, const char *type, const char *step, Datum data, bool data_isnull)
{
	return emit_event(run, s, type, step, data, data_isnull, engine.webhooks);
}

/*
 * orchestrator_emit
 *		_emit(run_id, type, step, data): append an event to a run's history,
 *		as the engine does, for the PL/pgSQL engine.  The caller holds the
 *		run's row lock.  Outside any unit of work: it is called
 *		from PL/pgSQL functions that may catch its errors, also in the middle
 *		of a C transition that handed a case over.
 */
Datum
orchestrator_emit(PG_FUNCTION_ARGS)
{
	EngineRun	run;
	int64		seq;
	bool		webhooks;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id and event type must not be null")));

	memset(&run, 0, sizeof(run));
	run.id = PG_GETARG_DATUM(0);
	SPI_connect();
	orchestrator_run_leaves(run.id, &run.leaves, false);
	webhooks = webhooks_exist_now();
	seq = emit_event(&run, S_EMIT, text_to_cstring(PG_GETARG_TEXT_PP(1)),
					 PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
					 PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3), PG_ARGISNULL(3),
					 webhooks);
	SPI_finish();
	PG_RETURN_INT64(seq);
}

/*
 * engine_step_def
 *		The definition of a step, from the cache or read now (in the unit's
 *		memory).
 *
 * Definitions are never updated or deleted, so a definition whose rows
 * were committed is kept for the life of the process (one whose rows are
 * not committed yet, in this transaction, might still be rolled back).
 * The cache is emptied when the table is a new one (the extension was
 * created again); beyond DEF_CACHE_MAX entries, definitions are read each
 * time (entries are never freed while a unit of work may hold them).
 */
StepDef *
engine_step_def(const char *name, int32 version, const char *step)
{
	StepDef    *def;
	MemoryContext context;
	Datum		values[3];
	bool		isnull;
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

	context = MemoryContextSwitchTo(engine.context);
	def = palloc0(sizeof(StepDef));
	def->name = pstrdup(name);
	def->version = version;
	def->step = pstrdup(step);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(step);
	if (run_stmt(S_STEP_DEF, NULL, values, NULL) == 1)
	{
		TransactionId xmin;

		def->found = true;
		def->plain_sql = DatumGetBool(get_col(1, &isnull)) && !isnull;
		def->sql = get_text(2);
		def->args_json = get_col(3, &isnull);
		def->args = get_col(4, &def->args_isnull);
		def->timeout_ms = DatumGetInt32(get_col(5, &isnull));
		def->dependents = get_col(6, &isnull);
		def->has_result_template = DatumGetBool(get_col(7, &isnull)) && !isnull;
		def->plain_when_ready = DatumGetBool(get_col(8, &isnull)) && !isnull;
		def->compensates = DatumGetBool(get_col(9, &isnull)) && !isnull;
		def->queue = get_text(10);
		def->ready_input = get_col(11, &def->ready_input_isnull);
		xmin = DatumGetTransactionId(get_col(12, &isnull));
		cacheable &= !TransactionIdIsCurrentTransactionId(xmin) && TransactionIdDidCommit(xmin);
	}
	else
		cacheable = false;
	done_with_rows();
	MemoryContextSwitchTo(context);

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

/* Does a step result carry a numeric "cost" (added to the run's cost)? */
static bool
has_numeric_cost(Datum result)
{
	Jsonb	   *jb = DatumGetJsonbP(result);
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return false;
	v = getKeyJsonValueFromContainer(&jb->root, "cost", 4, NULL);
	return v != NULL && v->type == jbvNumeric;
}

/*
 * finish_if_done
 *		The run succeeds when no step is open any more (_step_done()); with
 *		a result template, _run_finish() renders it.
 */
static void
finish_if_done(EngineRun *run, bool reread_status, bool has_result_template)
{
	Datum		values[1] = {run->id};
	bool		isnull;
	bool		open;
	char	   *status = run->status;

	if (reread_status)
	{
		run_stmt(S_RUN_STATUS, &run->leaves, values, NULL);
		status = get_text(1);
		done_with_rows();
	}
	if (strcmp(status, "pending") != 0 && strcmp(status, "running") != 0)
		return;

	if (has_result_template)
	{
		run_stmt(S_OPEN_STEPS, &run->leaves, values, NULL);
		open = DatumGetBool(get_col(1, &isnull));
		done_with_rows();
		if (!open)
		{
			run_stmt(S_SLOW_RUN_FINISH, NULL, values, NULL);
			done_with_rows();
		}
		return;
	}

	if (run_stmt(S_RUN_SUCCEEDED, &run->leaves, values, NULL) == 0)
	{
		done_with_rows();
		return;					/* a step is still open */
	}
	{
		Datum		data = get_col(1, &isnull);

		done_with_rows();
		/* a run succeeds only when no step is open: a deadline is left */
		if (run->has_deadline)
			run_stmt(S_DELETE_RUN_QUEUE, NULL, values, NULL);
		emit(run, S_EMIT, "workflow.succeeded", NULL, data, false);
	}
}

/*
 * enqueue_ready
 *		Queue a plain step that was just made ready (_enqueue()): wake the
 *		dispatchers for a sql step, announce an external queue's work.
 */
static void
enqueue_ready(EngineRun *run, Datum step, StepDef *def)
{
	Datum		q[5] = {run->id, step, Int32GetDatum(run->priority),
		CStringGetTextDatum(def->queue), CStringGetTextDatum(run->name)};

	run_stmt(S_ENQUEUE, NULL, q, NULL);
	if (def->queue[0] == '@')
		orchestrator_wake_dispatchers_at_commit(WAKE_SQL);
	else
		orchestrator_notify(RELAY_QUEUES, def->queue);
}

/*
 * release_dependents
 *		A step succeeded: count it done for each dependent, and make those
 *		with no dependency left ready; then finish the run if nothing is
 *		open (_step_done()).
 */
static void
release_dependents(EngineRun *run, StepDef *def)
{
	Datum	   *names;
	bool	   *name_nulls;
	int			n;
	bool		made_ready = false;
	bool		handed_over = false;

	deconstruct_array(DatumGetArrayTypeP(def->dependents), TEXTOID, -1, false, TYPALIGN_INT,
					  &names, &name_nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *next = TextDatumGetCString(names[i]);
		StepDef    *next_def = engine_step_def(run->name, run->version, next);
		Datum		values[3] = {run->id, names[i], next_def->ready_input};
		char		nulls[3] = {' ', ' ', next_def->ready_input_isnull ? 'n' : ' '};
		bool		isnull;
		int32		open;

		if (run_stmt(next_def->plain_when_ready ? S_RELEASE_READY : S_RELEASE_DEPENDENT,
					 &run->leaves, values, nulls) != 1)
		{
			done_with_rows();
			continue;
		}
		open = DatumGetInt32(get_col(1, &isnull));
		done_with_rows();
		if (open != 0)
			continue;

		if (next_def->plain_when_ready)
		{
			/* made ready by the update: queue it */
			enqueue_ready(run, names[i], next_def);
			made_ready = true;
		}
		else
		{
			/* a condition, a template or another kind: _step_ready() */
			run_stmt(S_SLOW_STEP_READY, NULL, values, NULL);
			done_with_rows();
			handed_over = true;
		}
	}

	/* a step made ready here keeps the run open */
	if (made_ready && !handed_over)
		return;
	finish_if_done(run, handed_over, def->has_result_template);
}

/*
 * engine_begin
 *		Start a unit of work (a dispatcher batch, a call of the API), saving
 *		the one it runs inside (if any) in *outer: a memory context for
 *		definitions read once, and the search_path the statements are
 *		prepared under (their names are qualified; nothing else may resolve
 *		them).  The caller puts *outer back with engine_end(), or with
 *		engine_abandon() when an error unwinds through it.
 */
static void
engine_begin(EngineState *outer)
{
	*outer = engine;
	engine.depth = outer->depth + 1;
	engine.nestlevel = -1;
	if (strcmp(namespace_search_path, "pg_catalog, pg_temp") != 0)
	{
		engine.nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	engine.context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator engine",
										   ALLOCSET_DEFAULT_SIZES);

	/*
	 * A new definitions table: the extension was created again.  Only in
	 * an outermost unit: an outer one may hold cached definitions.
	 */
	if (engine.depth == 1)
	{
		Oid			table = get_relname_relid("definition_steps",
											  get_namespace_oid("orchestrator", false));

		if (def_cache == NULL || def_cache_table != table)
		{
			reset_def_cache();
			def_cache_table = table;
		}
	}

	engine.webhooks = webhooks_exist_now();
}

/*
 * engine_end
 *		End the unit of work and go back to the outer one.
 */
static void
engine_end(EngineState *outer)
{
	MemoryContextDelete(engine.context);
	if (engine.nestlevel >= 0)
		AtEOXact_GUC(true, engine.nestlevel);
	engine = *outer;
}

/*
 * engine_abandon
 *		Go back to the outer unit while an error unwinds: the
 *		(sub)transaction's abort releases this unit's memory and setting.
 */
static void
engine_abandon(EngineState *outer)
{
	engine = *outer;
}

/*
 * engine_unit
 *		Run "work" as a unit of work, in an SPI connection of its own.  A
 *		unit may run inside another (a sql step's statement calls
 *		complete_step()); the outer one is put back afterwards, also when an
 *		error unwinds through this one.
 */
void
engine_unit(void (*work) (void *arg), void *arg)
{
	EngineState outer;

	orchestrator_require_current_schema();
	SPI_connect();
	engine_begin(&outer);
	PG_TRY();
	{
		work(arg);
	}
	PG_CATCH();
	{
		engine_abandon(&outer);
		PG_RE_THROW();
	}
	PG_END_TRY();
	engine_end(&outer);
	SPI_finish();
}

/*
 * engine_claim
 *		Lock up to max_items due rows of a queue, in index order, skipping
 *		locked ones (as _claim(), whose run locks follow per row with
 *		engine_lock_run()); with workflows (a text[]), only rows of those
 *		workflows.  Returns how many, in *claimed (in the current
 *		memory context).
 */
uint64
engine_claim(const char *queue, int max_items, Datum workflows, EngineClaim **claimed)
{
	Datum		values[3] = {CStringGetTextDatum(queue), Int32GetDatum(max_items), workflows};
	uint64		n = run_stmt(workflows ? S_CLAIM_FOR : S_CLAIM, NULL, values, NULL);
	bool		isnull;

	*claimed = palloc0(sizeof(EngineClaim) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		EngineClaim *c = &(*claimed)[i];

		memcpy(&c->run_id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)), sizeof(pg_uuid_t));
		c->step = TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull));
		c->leased = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
		c->worker = SPI_getvalue(tuple, desc, 4);
	}
	done_with_rows();
	return n;
}

/* Read the run statement "s" returns, into *run; false when no row. */
static bool
load_run(Stmt s, Datum run_id, const char *step, EngineRun *run)
{
	Datum		values[2];
	bool		isnull;
	Datum		deadline;

	run->id = run_id;
	if (!orchestrator_run_leaves(run_id, &run->leaves, true))
		return false;
	values[0] = run_id;
	values[1] = step ? CStringGetTextDatum(step) : (Datum) 0;
	if (run_stmt(s, &run->leaves, values, NULL) != 1)
	{
		done_with_rows();
		return false;
	}
	run->status = get_text(1);
	run->owner = DatumGetObjectId(get_col(2, &isnull));
	run->name = get_text(3);
	run->version = DatumGetInt32(get_col(4, &isnull));
	run->priority = DatumGetInt32(get_col(5, &isnull));
	deadline = get_col(6, &isnull);
	run->has_deadline = !isnull;
	run->deadline = isnull ? 0 : DatumGetTimestampTz(deadline);
	run->attempt = DatumGetInt32(get_col(7, &isnull));
	done_with_rows();
	return true;
}

/*
 * engine_lock_run
 *		Lock a run (skip_locked: false at once when another transaction
 *		holds it) and read it, with the attempts so far of one of its steps
 *		(step NULL: not needed).
 *		False when it is locked or does not exist (a run removed by
 *		retention has no partition any more either).
 */
bool
engine_lock_run(Datum run_id, const char *step, bool skip_locked, EngineRun *run)
{
	return load_run(step == NULL ? (skip_locked ? S_LOCK_RUN_ONLY : S_LOCK_RUN_ONLY_WAIT)
					: (skip_locked ? S_LOCK_RUN : S_LOCK_RUN_WAIT),
					run_id, step, run);
}

/* Is the run still going (pending or running)? */
bool
engine_run_active(EngineRun *run)
{
	return strcmp(run->status, "pending") == 0 || strcmp(run->status, "running") == 0;
}

/*
 * engine_run_started
 *		A pending run starts with its first step (_step_started()).
 */
void
engine_run_started(EngineRun *run)
{
	Datum		values[1] = {run->id};

	if (strcmp(run->status, "pending") != 0)
		return;
	if (run_stmt(S_RUN_STARTED, &run->leaves, values, NULL) == 1)
		emit(run, S_EMIT, "workflow.started", NULL, (Datum) 0, true);
	run->status = "running";
}

/*
 * engine_step_started_event
 *		The step.started event of an attempt.
 */
int64
engine_step_started_event(EngineRun *run, const char *step, int32 attempt, const char *worker)
{
	StringInfoData data;

	/* jsonb_strip_nulls(jsonb_build_object('attempt', n, 'worker', worker)) */
	initStringInfo(&data);
	appendStringInfo(&data, "{\"attempt\": %d", attempt);
	if (worker != NULL)
	{
		appendStringInfoString(&data, ", \"worker\": ");
		escape_json(&data, worker);
	}
	appendStringInfoChar(&data, '}');
	return emit(run, S_EMIT, "step.started", step,
				DirectFunctionCall1(jsonb_in, CStringGetDatum(data.data)), false);
}

/*
 * engine_step_claimed
 *		An external worker claimed a step: the attempt starts, and the queue
 *		row carries the lease.  Returns the attempt and the step's input.
 */
int32
engine_step_claimed(EngineRun *run, const char *step, const char *worker,
					Datum lease_token, Datum lease, Datum *input, bool *input_isnull)
{
	Datum		values[5];
	bool		isnull;
	int32		attempt;

	engine_run_started(run);
	values[0] = run->id;
	values[1] = CStringGetTextDatum(step);
	values[2] = CStringGetTextDatum(worker);
	if (run_stmt(S_STEP_CLAIMED, &run->leaves, values, NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("step \"%s\" of a claimed queue row does not exist", step)));
	attempt = DatumGetInt32(get_col(1, &isnull));
	*input = get_col(2, input_isnull);
	done_with_rows();
	engine_step_started_event(run, step, attempt, worker);

	values[2] = lease_token;
	values[3] = lease;
	values[4] = CStringGetTextDatum(worker);
	run_stmt(S_LEASE, NULL, values, NULL);
	return attempt;
}

/*
 * engine_require_work_right
 *		42501 unless the caller may work external steps of the run's
 *		workflow (its owner, a role granted "work", an admin).
 */
void
engine_require_work_right(EngineRun *run)
{
	Datum		values[1] = {CStringGetTextDatum(run->name)};

	run_stmt(S_MAY_WORK, NULL, values, NULL);
	done_with_rows();
}

/*
 * engine_take_leased
 *		Is the lease token still the one of the step's queue row, and
 *		unexpired (_check_lease(); the run is locked and active)?  Then the
 *		row is deleted (the first thing engine_record_success() does).
 */
bool
engine_take_leased(EngineRun *run, const char *step, Datum lease_token)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(step), lease_token};

	return run_stmt(S_TAKE_LEASED, NULL, values, NULL) == 1;
}

/*
 * engine_record_success
 *		A step succeeded (_step_succeeded() up to _step_done()): its queue row
 *		goes (dequeue false: engine_take_leased() took it), its result is
 *		recorded, its cost added, step.succeeded appended.  For a sql step
 *		run in this transaction, sql_started_at is when it started (its row
 *		goes from ready to succeeded in one update).  Returns the event's
 *		sequence number.
 */
int64
engine_record_success(EngineRun *run, StepDef *def, const char *step,
					  Datum result, bool result_isnull, const TimestampTz *sql_started_at,
					  bool dequeue)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = run->id;
	values[1] = CStringGetTextDatum(step);
	if (dequeue)
		run_stmt(S_DEQUEUE, NULL, values, NULL);
	if (sql_started_at != NULL)
	{
		values[2] = TimestampTzGetDatum(*sql_started_at);
		values[3] = result;
		nulls[3] = result_isnull ? 'n' : ' ';
		values[4] = def->args_json;
		run_stmt(S_STEP_SUCCEEDED, &run->leaves, values, nulls);
	}
	else
	{
		values[2] = result;
		nulls[2] = result_isnull ? 'n' : ' ';
		run_stmt(S_STEP_SUCCEEDED_EXTERNAL, &run->leaves, values, nulls);
	}
	if (!result_isnull && has_numeric_cost(result))
	{
		Datum		k[2] = {run->id, result};

		run_stmt(S_ADD_COST, &run->leaves, k, NULL);
	}
	return emit(run, S_EMIT_RESULT, "step.succeeded", step, result, result_isnull);
}

/*
 * engine_step_done
 *		After engine_record_success(): release the dependents and finish the
 *		run when nothing is left (_step_done()).  "fresh": the run is as it
 *		was locked; otherwise (or for a compensation, or a run that is no
 *		longer active) _step_done() reads everything again and decides.
 */
void
engine_step_done(EngineRun *run, StepDef *def, const char *step, bool fresh)
{
	if (!fresh || def->compensates || !engine_run_active(run))
	{
		Datum		values[4] = {run->id, CStringGetTextDatum(step),
		CStringGetTextDatum(run->name), Int32GetDatum(run->version)};

		run_stmt(S_SLOW_STEP_DONE, NULL, values, NULL);
		done_with_rows();
		return;
	}
	release_dependents(run, def);
}

/*
 * make_ready
 *		A step whose dependencies are done (none, for a first step): queued
 *		here when it is plain (sql, or external without templates; no
 *		condition), else handed to _step_ready().  False when it was handed
 *		over (which may have changed or finished the run).
 */
static bool
make_ready(EngineRun *run, const char *step)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	Datum		values[3] = {run->id, CStringGetTextDatum(step), def->ready_input};
	char		nulls[3] = {' ', ' ', def->ready_input_isnull ? 'n' : ' '};

	if (!def->plain_when_ready)
	{
		run_stmt(S_SLOW_STEP_READY, NULL, values, NULL);
		done_with_rows();
		return false;
	}
	run_stmt(S_MAKE_READY, &run->leaves, values, nulls);
	enqueue_ready(run, values[1], def);
	return true;
}

/*
 * engine_run_created
 *		start_workflow(): insert the run and its steps on the run's partitions,
 *		append workflow.created, queue the deadline, and make the first steps
 *		ready, in position order.  A step handed to _step_ready() may end the
 *		run (a sleep whose "until" is no time fails it): the steps after it
 *		are then left alone.  The caller set run->id, name, version, owner,
 *		priority and deadline.
 */
void
engine_run_created(EngineRun *run, Oid started_by, const char *tenant, Datum input,
				   const char *idempotency_key)
{
	Datum		values[10];
	char		nulls[10];
	StringInfoData data;
	uint64		nroots;
	char	  **roots;

	if (!orchestrator_run_leaves(run->id, &run->leaves, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no partition of orchestrator.workflow_runs for run %s",
						DatumGetCString(DirectFunctionCall1(uuid_out, run->id))),
				 errdetail("History is partitioned by day, and no partition holds today."),
				 errhint("Run orchestrator.maintain(), or keep the dispatchers running: they create partitions ahead.")));
	run->status = "pending";
	run->attempt = 0;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = run->id;
	values[1] = CStringGetTextDatum(run->name);
	values[2] = Int32GetDatum(run->version);
	values[3] = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
	nulls[3] = tenant ? ' ' : 'n';
	values[4] = ObjectIdGetDatum(run->owner);
	values[5] = ObjectIdGetDatum(started_by);
	values[6] = input;
	values[7] = idempotency_key ? CStringGetTextDatum(idempotency_key) : (Datum) 0;
	nulls[7] = idempotency_key ? ' ' : 'n';
	values[8] = Int32GetDatum(run->priority);
	values[9] = TimestampTzGetDatum(run->deadline);
	nulls[9] = run->has_deadline ? ' ' : 'n';
	run_stmt(S_INSERT_RUN, &run->leaves, values, nulls);
	run_stmt(S_INSERT_STEPS, &run->leaves, values, NULL);

	/* jsonb_strip_nulls(jsonb_build_object('name', .., 'version', .., 'tenant', ..)) */
	initStringInfo(&data);
	appendStringInfoString(&data, "{\"name\": ");
	escape_json(&data, run->name);
	appendStringInfo(&data, ", \"version\": %d", run->version);
	if (tenant)
	{
		appendStringInfoString(&data, ", \"tenant\": ");
		escape_json(&data, tenant);
	}
	appendStringInfoChar(&data, '}');
	emit(run, S_EMIT, "workflow.created", NULL,
		 DirectFunctionCall1(jsonb_in, CStringGetDatum(data.data)), false);

	if (run->has_deadline)
	{
		Datum		t[4] = {run->id, CStringGetTextDatum("@deadline"),
			TimestampTzGetDatum(run->deadline), values[1]};

		run_stmt(S_ENQUEUE_TIMER, NULL, t, NULL);
		orchestrator_wake_dispatchers_at_commit(WAKE_TIMER);
	}

	nroots = run_stmt(S_ROOT_STEPS, NULL, values + 1, NULL);
	roots = palloc(sizeof(char *) * Max(nroots, 1));
	for (uint64 i = 0; i < nroots; i++)
		roots[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	done_with_rows();

	for (uint64 i = 0; i < nroots; i++)
	{
		if (make_ready(run, roots[i]))
			continue;
		/* _step_ready() may have finished the run (a step it failed) */
		run_stmt(S_RUN_STATUS, &run->leaves, values, NULL);
		run->status = get_text(1);
		done_with_rows();
		if (!engine_run_active(run))
			break;
	}
}

/* The whole of a sql step by the PL/pgSQL engine (_exec_sql_step()). */
void
engine_slow_exec_sql_step(EngineRun *run, const char *step)
{
	Datum		values[2] = {run->id, CStringGetTextDatum(step)};

	run_stmt(S_SLOW_EXEC, NULL, values, NULL);
	done_with_rows();
}

/* A claimed row whose lease expired: a lost attempt (_lease_expired()). */
void
engine_lease_expired(EngineRun *run, EngineClaim *claim)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(claim->step),
	claim->worker ? CStringGetTextDatum(claim->worker) : (Datum) 0};
	char		nulls[3] = {' ', ' ', claim->worker ? ' ' : 'n'};

	run_stmt(S_SLOW_LEASE_EXPIRED, NULL, values, nulls);
	done_with_rows();
}

/*
 * engine_sql_attempt_failed
 *		The statement of a sql step failed: the step is marked running (it
 *		was ready until now) and _attempt_failed() retries or fails it.
 *		Syntax and privilege errors (class 42) and unsupported features
 *		(0A) will not go away by themselves: no retry.
 */
void
engine_sql_attempt_failed(EngineRun *run, const char *step, TimestampTz started_at, ErrorData *error)
{
	Datum		r[3] = {run->id, CStringGetTextDatum(step), TimestampTzGetDatum(started_at)};
	Datum		f[6];

	run_stmt(S_STEP_RUNNING, &run->leaves, r, NULL);
	f[0] = run->id;
	f[1] = r[1];
	f[2] = CStringGetTextDatum(error->message ? error->message : "");
	f[3] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
	f[4] = CStringGetTextDatum(error->detail ? error->detail : "");
	f[5] = CStringGetTextDatum(error->hint ? error->hint : "");
	run_stmt(S_SLOW_ATTEMPT_FAILED, NULL, f, NULL);
	done_with_rows();
}

/*
 * orchestrator_step_succeeded
 *		_step_succeeded(run_id, step, result): a step succeeded, for the
 *		PL/pgSQL engine (HTTP responses, timers, signals, sql steps it runs):
 *		recorded, dependents released, run finished, through the same
 *		transitions as above.  The caller holds the run's row lock.
 */
typedef struct StepSucceeded
{
	Datum		run_id;
	char	   *step;
	Datum		result;
	bool		result_isnull;
} StepSucceeded;

static void
step_succeeded_work(void *arg)
{
	StepSucceeded *a = arg;
	EngineRun	run;
	StepDef    *def;

	if (!load_run(S_READ_RUN, a->run_id, NULL, &run))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow run %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, a->run_id)))));
	def = engine_step_def(run.name, run.version, a->step);
	if (!def->found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not defined in workflow \"%s\" version %d",
						a->step, run.name, run.version)));
	engine_record_success(&run, def, a->step, a->result, a->result_isnull, NULL, true);
	engine_step_done(&run, def, a->step, true);
}

Datum
orchestrator_step_succeeded(PG_FUNCTION_ARGS)
{
	StepSucceeded a;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id and step must not be null")));
	a.run_id = PG_GETARG_DATUM(0);
	a.step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a.result_isnull = PG_ARGISNULL(2);
	a.result = a.result_isnull ? (Datum) 0 : PG_GETARG_DATUM(2);
	engine_unit(step_succeeded_work, &a);
	PG_RETURN_VOID();
}
