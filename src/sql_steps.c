/*-------------------------------------------------------------------------
 *
 * sql_steps.c
 *	  The dispatcher's batch of sql steps: claim, run, record.
 *
 * This is the engine's hot path, in C: for each claimed sql step the
 * transitions of 40_engine.sql (step started, succeeded, dependents made
 * ready, run finished) are done here with statements prepared against the
 * partitions that hold the run (leaf.c), a handful per step instead of the
 * thirty-odd PL/pgSQL statements on the partitioned parents.  Everything
 * that is not the plain case is handed to the PL/pgSQL engine, which stays
 * the reference for the semantics: steps with templates, compensations,
 * failures and retries, dependents with conditions or other kinds, runs
 * with a result template, runs that changed while the step ran.
 *
 * All of a batch commits together, in the dispatcher's transaction; each
 * step's statement runs in its own subtransaction, so a failing step undoes
 * only itself.  The bookkeeping stays in the top-level transaction, which
 * holds the row locks (updating them in a subtransaction would create
 * multixacts).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "executor.h"
#include "leaf.h"
#include "sql_steps.h"
#include "wake.h"

/* The statements of the hot path; @runs@ etc. name the run's partitions. */
typedef enum Stmt
{
	S_CLAIM,
	S_WEBHOOKS_EXIST,
	S_LOCK_RUN,
	S_STEP_DEF,
	S_RUN_STARTED,
	S_EMIT,
	S_EMIT_RESULT,
	S_STEP_RUNNING,
	S_DEQUEUE,
	S_STEP_SUCCEEDED,
	S_ADD_COST,
	S_RELEASE_DEPENDENT,
	S_RELEASE_SQL_DEPENDENT,
	S_ENQUEUE,
	S_RUN_STATUS,
	S_OPEN_STEPS,
	S_DELETE_RUN_QUEUE,
	S_RUN_SUCCEEDED,
	/* hand-overs to the PL/pgSQL engine */
	S_SLOW_EXEC,
	S_SLOW_LEASE_EXPIRED,
	S_SLOW_ATTEMPT_FAILED,
	S_SLOW_STEP_DONE,
	S_SLOW_STEP_READY,
	S_SLOW_RUN_FINISH,
	S_SLOW_WEBHOOK_OUTBOX,
	S_COUNT
} Stmt;

#define MAX_ARGS 6

typedef struct StmtDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[MAX_ARGS];
} StmtDef;

static const StmtDef stmts[S_COUNT] = {
	[S_CLAIM] = {
		"SELECT run_id, step, lease_token IS NOT NULL, worker FROM orchestrator.work_queue"
		" WHERE queue = '@sql' AND available_at <= now()"
		" ORDER BY priority DESC, available_at LIMIT $1 FOR UPDATE SKIP LOCKED",
	1, {INT4OID}},
	[S_WEBHOOKS_EXIST] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.webhooks)", 0, {0}},
	[S_LOCK_RUN] = {
		"SELECT status, owner, name, version, priority, deadline IS NOT NULL,"
		" (SELECT s.attempt FROM @steps@ s WHERE s.run_id = $1 AND s.step = $2)"
		" FROM @runs@ WHERE id = $1 FOR UPDATE SKIP LOCKED",
	2, {UUIDOID, TEXTOID}},
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
		" d.kind = 'sql' AND d.condition IS NULL"
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
	/* the same for a plain sql dependent, made ready when it was the last */
	[S_RELEASE_SQL_DEPENDENT] = {
		"UPDATE @steps@ s SET deps_open = s.deps_open - 1,"
		" status = CASE WHEN s.deps_open = 1 THEN 'ready' ELSE s.status END,"
		" ready_at = CASE WHEN s.deps_open = 1 THEN clock_timestamp() ELSE s.ready_at END,"
		" input = CASE WHEN s.deps_open = 1 THEN NULL ELSE s.input END"
		" WHERE s.run_id = $1 AND s.step = $2 AND s.status = 'waiting'"
		" RETURNING s.deps_open",
	2, {UUIDOID, TEXTOID}},
	[S_ENQUEUE] = {
		"INSERT INTO orchestrator.work_queue (run_id, step, queue, priority, available_at)"
		" VALUES ($1, $2, '@sql', $3, now())"
		" ON CONFLICT ON CONSTRAINT work_queue_pkey DO UPDATE"
		" SET queue = excluded.queue, priority = excluded.priority, available_at = excluded.available_at,"
		" lease_token = NULL, lease = NULL, worker = NULL",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_RUN_STATUS] = {
		"SELECT status FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	[S_OPEN_STEPS] = {
		"SELECT EXISTS (SELECT 1 FROM @steps@ s WHERE s.run_id = $1 AND s.status IN ('waiting', 'ready', 'running'))",
	1, {UUIDOID}},
	[S_DELETE_RUN_QUEUE] = {
		"DELETE FROM orchestrator.work_queue WHERE run_id = $1", 1, {UUIDOID}},
	[S_RUN_SUCCEEDED] = {
		"UPDATE @runs@ w SET status = 'succeeded',"
		" result = (SELECT coalesce(jsonb_object_agg(x.step, x.result), '{}') FROM @steps@ x"
		"   WHERE x.run_id = $1 AND x.status = 'succeeded'),"
		" error = NULL, finished_at = clock_timestamp()"
		" WHERE w.id = $1 RETURNING jsonb_strip_nulls(jsonb_build_object('result', w.result))",
	1, {UUIDOID}},
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
};

/* A claimed queue row. */
typedef struct Claimed
{
	pg_uuid_t	run_id;
	char	   *step;
	bool		leased;
	char	   *worker;
} Claimed;

/* The locked run of a step and what the hot path needs of it. */
typedef struct Run
{
	Datum		id;
	RunLeaves	leaves;
	char	   *status;
	char	   *owner;
	char	   *name;
	int32		version;
	int32		priority;
	bool		has_deadline;
	int32		attempt;		/* of the claimed step, before this one */
} Run;

/*
 * What the hot path needs of a step's definition.  Definitions never change
 * once written; they are read once per batch (a batch's steps mostly share
 * a few definitions).
 */
typedef struct StepDef
{
	char	   *name;
	int32		version;
	char	   *step;
	bool		found;
	bool		plain;			/* a sql step the hot path runs itself */
	char	   *sql;
	Datum		args_json;		/* the "args" array */
	Datum		args;			/* ... as jsonb[] */
	bool		args_isnull;
	int32		timeout_ms;
	Datum		dependents;		/* text[] */
	bool		has_result_template;	/* of its workflow */
	bool		plain_when_ready;	/* sql, no condition: made ready here */
} StepDef;

static bool webhooks_exist;
static List *batch_defs;
static MemoryContext batch_context;

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
 * emit
 *		Append an event to the run's history, NOTIFY it and queue its webhook
 *		deliveries, as orchestrator._emit() does.  "s" is S_EMIT (data is the
 *		event's data; NULL for {}) or S_EMIT_RESULT (data is a step result).
 *		Returns the event's sequence number.
 */
static int64
emit(Run *run, Stmt s, const char *type, const char *step, Datum data, bool data_isnull)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		seq;
	bool		isnull;
	Datum		event_data;
	StringInfoData payload;

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

	if (run_stmt(s, &run->leaves, values, nulls) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not append event \"%s\"", type)));
	seq = DatumGetInt64(get_col(1, &isnull));
	event_data = get_col(2, &isnull);
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
	Async_Notify("orchestrator", payload.data);

	if (webhooks_exist)
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

/*
 * step_def
 *		The definition of a step, from this batch's cache or read now.
 */
static StepDef *
step_def(const char *name, int32 version, const char *step)
{
	ListCell   *lc;
	StepDef    *def;
	MemoryContext context;
	Datum		values[3];
	bool		isnull;

	foreach(lc, batch_defs)
	{
		def = lfirst(lc);
		if (def->version == version && strcmp(def->step, step) == 0 && strcmp(def->name, name) == 0)
			return def;
	}

	context = MemoryContextSwitchTo(batch_context);
	def = palloc0(sizeof(StepDef));
	def->name = pstrdup(name);
	def->version = version;
	def->step = pstrdup(step);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(version);
	values[2] = CStringGetTextDatum(step);
	if (run_stmt(S_STEP_DEF, NULL, values, NULL) == 1)
	{
		def->found = true;
		def->plain = DatumGetBool(get_col(1, &isnull)) && !isnull;
		def->sql = get_text(2);
		def->args_json = get_col(3, &isnull);
		def->args = get_col(4, &def->args_isnull);
		def->timeout_ms = DatumGetInt32(get_col(5, &isnull));
		def->dependents = get_col(6, &isnull);
		def->has_result_template = DatumGetBool(get_col(7, &isnull)) && !isnull;
		def->plain_when_ready = DatumGetBool(get_col(8, &isnull)) && !isnull;
	}
	done_with_rows();
	batch_defs = lappend(batch_defs, def);
	MemoryContextSwitchTo(context);
	return def;
}

/*
 * lock_run
 *		Lock the run of a claimed row without waiting; false when another
 *		transaction holds it (or it is gone).
 */
static bool
lock_run(Claimed *c, Run *run)
{
	Datum		values[2];
	bool		isnull;

	run->id = UUIDPGetDatum(&c->run_id);
	orchestrator_run_leaves(run->id, &run->leaves);
	values[0] = run->id;
	values[1] = CStringGetTextDatum(c->step);
	if (run_stmt(S_LOCK_RUN, &run->leaves, values, NULL) != 1)
	{
		done_with_rows();
		return false;
	}
	run->status = get_text(1);
	run->owner = DatumGetCString(DirectFunctionCall1(nameout, get_col(2, &isnull)));
	run->name = get_text(3);
	run->version = DatumGetInt32(get_col(4, &isnull));
	run->priority = DatumGetInt32(get_col(5, &isnull));
	run->has_deadline = DatumGetBool(get_col(6, &isnull));
	run->attempt = DatumGetInt32(get_col(7, &isnull));
	done_with_rows();
	return true;
}

/*
 * run_in_subtransaction
 *		Execute the step's statement in a subtransaction.  On success
 *		returns true with the result; on error the subtransaction is rolled
 *		back and the error returned in *error.
 */
static bool
run_in_subtransaction(Oid owner, const char *sql, int nargs, Datum *args, char *argnulls,
					  int timeout_ms, Datum *result, bool *result_isnull, ErrorData **error)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner_before = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		*result = orchestrator_execute_sql_step(owner, sql, nargs, args, argnulls,
												timeout_ms, result_isnull);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner_before;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner_before;
		ok = false;
	}
	PG_END_TRY();
	return ok;
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
finish_if_done(Run *run, bool reread_status, bool has_result_template)
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

	run_stmt(S_OPEN_STEPS, &run->leaves, values, NULL);
	open = DatumGetBool(get_col(1, &isnull));
	done_with_rows();
	if (open)
		return;

	if (has_result_template)
	{
		run_stmt(S_SLOW_RUN_FINISH, NULL, values, NULL);
		done_with_rows();
		return;
	}
	if (run->has_deadline)
		run_stmt(S_DELETE_RUN_QUEUE, NULL, values, NULL);

	run_stmt(S_RUN_SUCCEEDED, &run->leaves, values, NULL);
	{
		Datum		data = get_col(1, &isnull);

		done_with_rows();
		emit(run, S_EMIT, "workflow.succeeded", NULL, data, false);
	}
}

/*
 * release_dependents
 *		A step succeeded: count it done for each dependent, and make those
 *		with no dependency left ready; then finish the run if nothing is
 *		open (_step_done()).
 */
static void
release_dependents(Run *run, StepDef *def)
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
		StepDef    *next_def = step_def(run->name, run->version, next);
		Datum		values[2] = {run->id, names[i]};
		bool		isnull;
		int32		open;

		if (run_stmt(next_def->plain_when_ready ? S_RELEASE_SQL_DEPENDENT : S_RELEASE_DEPENDENT,
					 &run->leaves, values, NULL) != 1)
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
			Datum		q[3] = {run->id, names[i], Int32GetDatum(run->priority)};

			run_stmt(S_ENQUEUE, NULL, q, NULL);
			orchestrator_wake_dispatchers_at_commit();
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
 * run_one
 *		Run one claimed sql step whose run is locked.
 */
static void
run_one(Claimed *c, Run *run)
{
	Datum		values[4];
	StepDef    *def;
	Oid			owner;
	TimestampTz started_at;
	int64		started_seq;
	int64		seq;
	int			nargs = 0;
	Datum	   *argv = NULL;
	char	   *argnulls = NULL;
	Datum		result;
	bool		result_isnull;
	ErrorData  *error = NULL;

	values[0] = run->id;
	values[1] = CStringGetTextDatum(c->step);
	values[2] = CStringGetTextDatum(run->name);
	values[3] = Int32GetDatum(run->version);

	if (c->leased)
	{
		/* a lease on an internal queue: its holder is gone */
		Datum		l[3] = {run->id, values[1], c->worker ? CStringGetTextDatum(c->worker) : (Datum) 0};
		char		ln[3] = {' ', ' ', c->worker ? ' ' : 'n'};

		run_stmt(S_SLOW_LEASE_EXPIRED, NULL, l, ln);
		done_with_rows();
		return;
	}

	def = step_def(run->name, run->version, c->step);
	owner = def->plain ? get_role_oid(run->owner, true) : InvalidOid;
	if (!def->plain || def->sql == NULL || !OidIsValid(owner) ||
		(strcmp(run->status, "pending") != 0 && strcmp(run->status, "running") != 0))
	{
		run_stmt(S_SLOW_EXEC, NULL, values, NULL);
		done_with_rows();
		return;
	}

	/* the step starts (_step_started()) */
	if (strcmp(run->status, "pending") == 0)
	{
		if (run_stmt(S_RUN_STARTED, &run->leaves, values, NULL) == 1)
			emit(run, S_EMIT, "workflow.started", NULL, (Datum) 0, true);
		run->status = "running";
	}
	started_at = GetCurrentTimestamp();
	{
		char		data[64];

		snprintf(data, sizeof(data), "{\"attempt\": %d, \"worker\": \"dispatcher\"}", run->attempt + 1);
		started_seq = emit(run, S_EMIT, "step.started", c->step,
						   DirectFunctionCall1(jsonb_in, CStringGetDatum(data)), false);
	}

	if (!def->args_isnull)
		orchestrator_sql_step_args(DatumGetArrayTypeP(def->args), &nargs, &argv, &argnulls);
	if (!run_in_subtransaction(owner, def->sql, nargs, argv, argnulls, def->timeout_ms,
							   &result, &result_isnull, &error))
	{
		/* the attempt failed: retry or fail it (_attempt_failed()) */
		Datum		r[3] = {run->id, values[1], TimestampTzGetDatum(started_at)};
		Datum		f[6];
		char		fn[6] = {' ', ' ', ' ', ' ', ' ', ' '};

		run_stmt(S_STEP_RUNNING, &run->leaves, r, NULL);
		f[0] = run->id;
		f[1] = values[1];
		f[2] = CStringGetTextDatum(error->message ? error->message : "");
		f[3] = CStringGetTextDatum(unpack_sql_state(error->sqlerrcode));
		f[4] = CStringGetTextDatum(error->detail ? error->detail : "");
		f[5] = CStringGetTextDatum(error->hint ? error->hint : "");
		run_stmt(S_SLOW_ATTEMPT_FAILED, NULL, f, fn);
		done_with_rows();
		FreeErrorData(error);
		return;
	}

	/* the step succeeded (_step_succeeded()) */
	{
		Datum		u[5] = {run->id, values[1], TimestampTzGetDatum(started_at), result, def->args_json};
		char		un[5] = {' ', ' ', ' ', result_isnull ? 'n' : ' ', ' '};

		run_stmt(S_DEQUEUE, NULL, values, NULL);
		run_stmt(S_STEP_SUCCEEDED, &run->leaves, u, un);
		if (!result_isnull && has_numeric_cost(result))
		{
			Datum		k[2] = {run->id, result};

			run_stmt(S_ADD_COST, &run->leaves, k, NULL);
		}
		seq = emit(run, S_EMIT_RESULT, "step.succeeded", c->step, result, result_isnull);
	}

	/*
	 * Events between the step's start and its result were appended by the
	 * step's own statement through the API (it signalled, cancelled or
	 * started something in this run): the run may have changed, so the rest
	 * is left to the PL/pgSQL engine, which reads everything afresh.
	 */
	if (seq != started_seq + 1)
	{
		run_stmt(S_SLOW_STEP_DONE, NULL, values, NULL);
		done_with_rows();
		return;
	}
	release_dependents(run, def);
}

/*
 * orchestrator_run_sql_steps
 *		Claim up to max_steps due sql steps and run them in the current
 *		transaction.  Must be called inside an SPI connection.  Returns how
 *		many were processed.
 */
int
orchestrator_run_sql_steps(int max_steps)
{
	MemoryContext step_context;
	MemoryContext oldcontext;
	Claimed    *claimed;
	uint64		nclaimed;
	int			processed = 0;
	int			nestlevel;
	Datum		values[1];
	bool		isnull;

	if (max_steps <= 0)
		return 0;

	/* names in the statements are qualified; nothing else may resolve them */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	batch_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator sql steps",
										  ALLOCSET_DEFAULT_SIZES);
	step_context = AllocSetContextCreate(batch_context, "orchestrator sql step",
										 ALLOCSET_DEFAULT_SIZES);
	oldcontext = MemoryContextSwitchTo(batch_context);
	batch_defs = NIL;

	values[0] = Int32GetDatum(max_steps);
	nclaimed = run_stmt(S_CLAIM, NULL, values, NULL);
	claimed = palloc0(sizeof(Claimed) * Max(nclaimed, 1));
	for (uint64 i = 0; i < nclaimed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *worker;

		memcpy(&claimed[i].run_id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)), sizeof(pg_uuid_t));
		claimed[i].step = TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull));
		claimed[i].leased = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
		worker = SPI_getvalue(tuple, desc, 4);
		claimed[i].worker = worker;
	}
	done_with_rows();

	if (nclaimed > 0)
	{
		run_stmt(S_WEBHOOKS_EXIST, NULL, NULL, NULL);
		webhooks_exist = DatumGetBool(get_col(1, &isnull));
		done_with_rows();
	}

	for (uint64 i = 0; i < nclaimed; i++)
	{
		Run			run;

		MemoryContextSwitchTo(step_context);
		if (lock_run(&claimed[i], &run))
		{
			run_one(&claimed[i], &run);
			processed++;
		}
		MemoryContextSwitchTo(batch_context);
		MemoryContextReset(step_context);
		CHECK_FOR_INTERRUPTS();
	}

	MemoryContextSwitchTo(oldcontext);
	MemoryContextDelete(batch_context);
	batch_context = NULL;
	batch_defs = NIL;
	AtEOXact_GUC(true, nestlevel);
	return processed;
}
