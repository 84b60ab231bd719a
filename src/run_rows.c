/*-------------------------------------------------------------------------
 *
 * run_rows.c
 *	  The rows the hot transitions change, written through rows.c: a sql
 *	  step's success, the release of its dependents, its queue row, the
 *	  run's success.
 *
 * Each function is the whole transition of its rows, as the statement it
 * replaces was (the statements' text is kept in the comments).  The
 * caller holds the run's row lock: a row found changed by another
 * transaction is a broken invariant, reported as a serialization failure
 * (the dispatcher's batch is retried) rather than written over.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "catalog/pg_am.h"
#include "storage/proc.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "engine_json.h"
#include "history.h"
#include "leaf.h"
#include "queue_vacuum.h"
#include "rows.h"
#include "run_model.h"
#include "run_rows.h"

/* workflow_steps */
enum
{
	SC_RUN_ID, SC_STEP, SC_POSITION, SC_KIND, SC_STATUS, SC_ATTEMPT, SC_DEPS_OPEN, SC_INPUT,
	SC_RESULT, SC_ERROR, SC_WORKER, SC_READY_AT, SC_STARTED_AT, SC_FINISHED_AT,
	SC_ATTEMPT_BASE, SC_PROGRESS, SC_ELEMENT, SC_ITEM, SC_CHILD_ID, STEP_COLUMNS
};
static const char *const step_columns[STEP_COLUMNS] = {
	"run_id", "step", "position", "kind", "status", "attempt", "deps_open", "input",
	"result", "error", "worker", "ready_at", "started_at", "finished_at",
	"attempt_base", "progress", "element", "item", "child_id"
};

/* workflow_runs */
enum
{
	RC_ID, RC_NAME, RC_VERSION, RC_STATUS, RC_TENANT, RC_OWNER, RC_INPUT, RC_RESULT, RC_ERROR,
	RC_IDEMPOTENCY_KEY, RC_PRIORITY, RC_DEADLINE, RC_PARENT_ID, RC_CREATED_AT, RC_STARTED_AT,
	RC_FINISHED_AT, RC_COST, RC_STARTED_BY, RC_TRACE_ID, RC_TRACE_PARENT, RC_ADMISSION,
	RC_PARENT_STEP, RUN_COLUMNS
};
static const char *const run_columns[RUN_COLUMNS] = {
	"id", "name", "version", "status", "tenant", "owner", "input", "result", "error",
	"idempotency_key", "priority", "deadline", "parent_id", "created_at", "started_at",
	"finished_at", "cost", "started_by", "trace_id", "trace_parent", "admission",
	"parent_step"
};

extern Datum orchestrator_new_trace_id(PG_FUNCTION_ARGS);

/* work_queue */
enum
{
	QC_RUN_ID, QC_STEP, QC_QUEUE, QC_PRIORITY, QC_AVAILABLE_AT, QC_LEASE_TOKEN, QC_LEASE,
	QC_WORKER, QC_WORKFLOW, QUEUE_COLUMNS
};
static const char *const queue_columns[QUEUE_COLUMNS] = {
	"run_id", "step", "queue", "priority", "available_at", "lease_token", "lease", "worker", "workflow"
};


/* A table opened to change rows, its columns placed, and scratch arrays. */
typedef struct Rows
{
	Relation	rel;
	int		   *place;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
} Rows;

static void
rows_begin(Rows *r, Oid relid, int ncolumns, const char *const *columns)
{
	int			natts;

	r->rel = rows_open(relid);
	natts = RelationGetDescr(r->rel)->natts;
	r->place = palloc(sizeof(int) * ncolumns);
	rows_place(r->rel, ncolumns, columns, r->place);
	r->values = palloc0(sizeof(Datum) * natts);
	/* NULL in a column dropped from the table (the others are all set) */
	r->nulls = palloc(sizeof(bool) * natts);
	memset(r->nulls, true, sizeof(bool) * natts);
	r->replace = palloc0(sizeof(bool) * natts);
}

static void
rows_end(Rows *r)
{
	rows_close(r->rel);
}

static Oid	queue_table_oid(void);

/* the table every queue row is in */
static void
queue_rows_begin(Rows *r)
{
	rows_begin(r, queue_table_oid(), QUEUE_COLUMNS, queue_columns);
}

static Datum
get(Rows *r, HeapTuple t, int column, bool *isnull)
{
	return rows_get(r->rel, t, r->place[column], isnull);
}

static int32
get_int32(Rows *r, HeapTuple t, int column)
{
	bool		isnull;
	Datum		d = get(r, t, column, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

static char *
get_text(Rows *r, HeapTuple t, int column)
{
	bool		isnull;
	Datum		d = get(r, t, column, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static void
set(Rows *r, int column, Datum value, bool isnull)
{
	int			a = r->place[column];

	r->values[a] = isnull ? (Datum) 0 : value;
	r->nulls[a] = isnull;
	r->replace[a] = true;
}

static void
changed_elsewhere(Rows *r, Datum run_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("a row of \"%s\" of run %s was changed by another transaction",
					RelationGetRelationName(r->rel), engine_uuid_text(run_id)),
			 errdetail("Transitions of a run hold its row lock; another writer did not.")));
}

static HeapTuple
fetch_step(Rows *r, EngineRun *run, const char *step)
{
	Datum		keys[2] = {run->id, CStringGetTextDatum(step)};

	rows_begin(r, run->leaves.steps, STEP_COLUMNS, step_columns);
	return rows_fetch(r->rel, 2, keys);
}

/*
 * step_row_sql_succeeded
 *		A sql step run in this transaction: from ready to succeeded at once.
 *		UPDATE steps SET status = 'succeeded', attempt = attempt + 1,
 *		started_at, finished_at = clock_timestamp(), worker = 'dispatcher',
 *		result, error = NULL, input = {"args": args} when it has args.
 *		False when the run has no such step.
 */
bool
step_row_sql_succeeded(EngineRun *run, const char *step, TimestampTz started_at,
					   Datum result, bool result_isnull, Datum args_json, StepRowSucceeded *out)
{
	Rows		r;
	HeapTuple	old = fetch_step(&r, run, step);
	Jsonb	   *args = DatumGetJsonbP(args_json);
	bool		isnull;
	Datum		ready_at;

	if (old == NULL)
	{
		rows_end(&r);
		return false;
	}
	out->attempt = get_int32(&r, old, SC_ATTEMPT) + 1;
	ready_at = get(&r, old, SC_READY_AT, &isnull);
	out->has_ready_at = !isnull;
	out->ready_at = isnull ? 0 : DatumGetTimestampTz(ready_at);
	out->finished_at = GetCurrentTimestamp();
	set(&r, SC_STATUS, CStringGetTextDatum("succeeded"), false);
	set(&r, SC_ATTEMPT, Int32GetDatum(out->attempt), false);
	set(&r, SC_STARTED_AT, TimestampTzGetDatum(started_at), false);
	set(&r, SC_FINISHED_AT, TimestampTzGetDatum(out->finished_at), false);
	set(&r, SC_WORKER, CStringGetTextDatum("dispatcher"), false);
	set(&r, SC_RESULT, result, result_isnull);
	set(&r, SC_ERROR, (Datum) 0, true);
	if (!(JB_ROOT_IS_ARRAY(args) && !JB_ROOT_IS_SCALAR(args) && JB_ROOT_COUNT(args) == 0))
		set(&r, SC_INPUT, engine_json_object1("args", args_json, false), false);
	if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
		changed_elsewhere(&r, run->id);
	rows_end(&r);
	return true;
}

/*
 * step_row_release
 *		One dependency of a waiting step is done.
 *		UPDATE steps SET deps_open = deps_open - 1 WHERE status = 'waiting';
 *		make_ready: the last one makes it ready (ready_at, input).  False
 *		when the step is not waiting; else *deps_open is what is left and
 *		*attempt its attempts so far.
 */
bool
step_row_release(EngineRun *run, const char *step, bool make_ready, Datum input,
				 bool input_isnull, int32 *deps_open, int32 *attempt)
{
	Rows		r;
	HeapTuple	old = fetch_step(&r, run, step);
	char	   *status;

	if (old == NULL || (status = get_text(&r, old, SC_STATUS)) == NULL ||
		strcmp(status, "waiting") != 0)
	{
		rows_end(&r);
		return false;
	}
	*deps_open = get_int32(&r, old, SC_DEPS_OPEN) - 1;
	*attempt = get_int32(&r, old, SC_ATTEMPT);
	set(&r, SC_DEPS_OPEN, Int32GetDatum(*deps_open), false);
	if (make_ready && *deps_open == 0)
	{
		set(&r, SC_STATUS, CStringGetTextDatum("ready"), false);
		set(&r, SC_READY_AT, TimestampTzGetDatum(GetCurrentTimestamp()), false);
		set(&r, SC_INPUT, input, input_isnull);
	}
	if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
		changed_elsewhere(&r, run->id);
	rows_end(&r);
	return true;
}

static bool queue_row_is(Rows *r, HeapTuple t, Datum run_id, const char *step);

/*
 * fetch_claimed
 *		The queue row of (run_id, step) that a claim of this transaction
 *		locked: where it found it (tid, when known) unless it moved since,
 *		else by key.  NULL when it is gone.
 */
static HeapTuple
fetch_claimed(Rows *r, Datum run_id, const char *step, ItemPointer tid)
{
	Datum		keys[2] = {run_id, CStringGetTextDatum(step)};
	HeapTuple	old = rows_fetch_tid(r->rel, tid);

	if (old != NULL && !queue_row_is(r, old, run_id, step))
	{
		heap_freetuple(old);
		old = NULL;
	}
	if (old == NULL)
		old = rows_fetch(r->rel, 2, keys);
	return old;
}

/*
 * queue_row_delete
 *		DELETE FROM work_queue WHERE run_id AND step: the queue row of a
 *		step this transaction claimed (and so holds locked); tid: where the
 *		claim found it, when known.
 */
void
queue_row_delete(Datum run_id, const char *step, ItemPointer tid)
{
	Rows		r;
	HeapTuple	old;

	queue_rows_begin(&r);
	old = fetch_claimed(&r, run_id, step, tid);
	if (old != NULL && !rows_delete(r.rel, old))
		changed_elsewhere(&r, run_id);
	if (old != NULL)
		queue_vacuum_note(1);
	rows_end(&r);
}

/*
 * run_row_succeeded
 *		A run with no step open succeeds; its result is the object of its
 *		succeeded steps' results (elements of for_each steps left out).
 *		False, and nothing written, while a step is open.
 */
bool
run_row_succeeded(EngineRun *run, RunRowSucceeded *out)
{
	Rows		steps;
	Rows		runs;
	RowsScan   *scan;
	HeapTuple	t;
	JsonbParseState *state = NULL;
	bool		open = false;
	Datum		key[1] = {run->id};
	Datum		result;
	bool		isnull;

	/* the steps: one open keeps the run going */
	rows_begin(&steps, run->leaves.steps, STEP_COLUMNS, step_columns);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	scan = rows_scan(steps.rel, 1, key);
	while (!open && (t = rows_next(scan)) != NULL)
	{
		char	   *status = get_text(&steps, t, SC_STATUS);
		char	   *name;
		Datum		d;

		if (strcmp(status, "waiting") == 0 || strcmp(status, "ready") == 0 ||
			strcmp(status, "running") == 0 || strcmp(status, "scheduled") == 0)
		{
			open = true;
			break;
		}
		if (strcmp(status, "succeeded") != 0)
			continue;
		get(&steps, t, SC_ELEMENT, &isnull);
		if (!isnull)
			continue;
		name = get_text(&steps, t, SC_STEP);
		d = get(&steps, t, SC_RESULT, &isnull);
		/* a copy: the scan's tuple goes at its next row */
		engine_jsonb_push_pair(&state, name, isnull ? (Datum) 0 : PointerGetDatum(DatumGetJsonbPCopy(d)),
							   isnull);
	}
	rows_scan_end(scan);
	rows_end(&steps);
	if (open)
		return false;
	result = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));

	/* the run */
	rows_begin(&runs, run->leaves.runs, RUN_COLUMNS, run_columns);
	t = rows_fetch(runs.rel, 1, key);
	if (t == NULL)
	{
		rows_end(&runs);
		return false;
	}
	out->at = GetCurrentTimestamp();
	out->data = engine_json_object1("result", result, false);
	out->trace_id = get_text(&runs, t, RC_TRACE_ID);
	out->trace_parent = get_text(&runs, t, RC_TRACE_PARENT);
	out->created_at = DatumGetTimestampTz(get(&runs, t, RC_CREATED_AT, &isnull));
	out->parent_id = get(&runs, t, RC_PARENT_ID, &out->parent_isnull);
	if (!out->parent_isnull)
		out->parent_id = datumCopy(out->parent_id, false, UUID_LEN);
	out->parent_step = get_text(&runs, t, RC_PARENT_STEP);
	set(&runs, RC_STATUS, CStringGetTextDatum("succeeded"), false);
	set(&runs, RC_RESULT, result, false);
	set(&runs, RC_ERROR, (Datum) 0, true);
	set(&runs, RC_FINISHED_AT, TimestampTzGetDatum(out->at), false);
	if (!rows_update(runs.rel, t, runs.values, runs.nulls, runs.replace))
		changed_elsewhere(&runs, run->id);
	rows_end(&runs);
	return true;
}

/*
 * run_rows_create
 *		A new run's rows: the run (pending), its steps (the "plain" first
 *		ones, plain[0..nplain-1], ready and queued on queues[]; an external
 *		one with its input), the queue rows.  What start_workflow() wrote
 *		with INSERT statements, the columns' defaults included.
 */
void
run_rows_create(EngineRun *run, Oid started_by, const char *tenant, Datum input,
				const char *idempotency_key, RunShape *shape,
				int nplain, char **plain, char **queues)
{
	Rows		r;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz clock = GetCurrentTimestamp();
	Form_pg_attribute cost;
	Datum		trace_id;

	/* the run */
	rows_begin(&r, run->leaves.runs, RUN_COLUMNS, run_columns);
	cost = TupleDescAttr(RelationGetDescr(r.rel), r.place[RC_COST]);
	if (run->trace_id)
		trace_id = CStringGetTextDatum(run->trace_id);
	else
	{
		LOCAL_FCINFO(fc, 0);

		InitFunctionCallInfoData(*fc, NULL, 0, InvalidOid, NULL, NULL);
		trace_id = orchestrator_new_trace_id(fc);
	}
	set(&r, RC_ID, run->id, false);
	set(&r, RC_NAME, CStringGetTextDatum(run->name), false);
	set(&r, RC_VERSION, Int32GetDatum(run->version), false);
	set(&r, RC_STATUS, CStringGetTextDatum("pending"), false);
	set(&r, RC_TENANT, tenant ? CStringGetTextDatum(tenant) : (Datum) 0, tenant == NULL);
	set(&r, RC_OWNER, ObjectIdGetDatum(run->owner), false);
	set(&r, RC_INPUT, input, false);
	set(&r, RC_RESULT, (Datum) 0, true);
	set(&r, RC_ERROR, (Datum) 0, true);
	set(&r, RC_IDEMPOTENCY_KEY, idempotency_key ? CStringGetTextDatum(idempotency_key) : (Datum) 0,
		idempotency_key == NULL);
	set(&r, RC_PRIORITY, Int32GetDatum(run->priority), false);
	set(&r, RC_DEADLINE, TimestampTzGetDatum(run->deadline), !run->has_deadline);
	set(&r, RC_PARENT_ID, run->parent_id, !run->has_parent);
	set(&r, RC_CREATED_AT, TimestampTzGetDatum(now), false);
	set(&r, RC_STARTED_AT, (Datum) 0, true);
	set(&r, RC_FINISHED_AT, (Datum) 0, true);
	set(&r, RC_COST, DirectFunctionCall3(numeric_in, CStringGetDatum("0"), ObjectIdGetDatum(InvalidOid),
										 Int32GetDatum(cost->atttypmod)), false);
	set(&r, RC_STARTED_BY, ObjectIdGetDatum(started_by), false);
	set(&r, RC_TRACE_ID, trace_id, false);
	set(&r, RC_TRACE_PARENT, run->trace_parent ? CStringGetTextDatum(run->trace_parent) : (Datum) 0,
		run->trace_parent == NULL);
	set(&r, RC_ADMISSION, Int16GetDatum(0), false);
	set(&r, RC_PARENT_STEP, run->has_parent ? CStringGetTextDatum(run->parent_step) : (Datum) 0,
		!run->has_parent);
	rows_insert(r.rel, r.values, r.nulls);
	rows_end(&r);
	/* the key is unique: no event of the run exists yet */
	history_new_run(run->leaves.events, run->id);

	/* its steps */
	rows_begin(&r, run->leaves.steps, STEP_COLUMNS, step_columns);
	for (int i = 0; i < shape->nsteps; i++)
	{
		ShapeStep  *s = &shape->steps[i];
		bool		ready = false;

		for (int p = 0; p < nplain && !ready; p++)
			ready = strcmp(plain[p], s->step) == 0;
		set(&r, SC_RUN_ID, run->id, false);
		set(&r, SC_STEP, CStringGetTextDatum(s->step), false);
		set(&r, SC_POSITION, Int32GetDatum(s->position), false);
		set(&r, SC_KIND, CStringGetTextDatum(s->kind), false);
		set(&r, SC_STATUS, CStringGetTextDatum(ready ? "ready" : "waiting"), false);
		set(&r, SC_ATTEMPT, Int32GetDatum(0), false);
		set(&r, SC_DEPS_OPEN, Int32GetDatum(s->ndeps), false);
		set(&r, SC_INPUT, s->external_input, !(ready && s->external_input != (Datum) 0));
		set(&r, SC_RESULT, (Datum) 0, true);
		set(&r, SC_ERROR, (Datum) 0, true);
		set(&r, SC_WORKER, (Datum) 0, true);
		set(&r, SC_READY_AT, TimestampTzGetDatum(clock), !ready);
		set(&r, SC_STARTED_AT, (Datum) 0, true);
		set(&r, SC_FINISHED_AT, (Datum) 0, true);
		set(&r, SC_ATTEMPT_BASE, Int32GetDatum(0), false);
		set(&r, SC_PROGRESS, (Datum) 0, true);
		set(&r, SC_ELEMENT, (Datum) 0, true);
		set(&r, SC_ITEM, (Datum) 0, true);
		set(&r, SC_CHILD_ID, (Datum) 0, true);
		rows_insert(r.rel, r.values, r.nulls);
	}
	rows_end(&r);

	/* the queue rows of its ready steps */
	if (nplain > 0)
	{

		queue_rows_begin(&r);
		for (int p = 0; p < nplain; p++)
		{
			set(&r, QC_RUN_ID, run->id, false);
			set(&r, QC_STEP, CStringGetTextDatum(plain[p]), false);
			set(&r, QC_QUEUE, CStringGetTextDatum(queues[p]), false);
			set(&r, QC_PRIORITY, Int32GetDatum(run->priority), false);
			set(&r, QC_AVAILABLE_AT, TimestampTzGetDatum(now), false);
			set(&r, QC_LEASE_TOKEN, (Datum) 0, true);
			set(&r, QC_LEASE, (Datum) 0, true);
			set(&r, QC_WORKER, (Datum) 0, true);
			set(&r, QC_WORKFLOW, CStringGetTextDatum(run->name), false);
			rows_insert(r.rel, r.values, r.nulls);
		}
		rows_end(&r);
	}
}

/*
 * run_row_lock
 *		Read a run, locked FOR UPDATE as the statements did (lock: RUN_LOCK_
 *		SKIP gives up at once when another transaction holds it, RUN_LOCK_WAIT
 *		waits and then locks its latest version, RUN_LOCK_NONE reads a run
 *		the caller has locked already), with the attempts so far of one of
 *		its steps (step NULL: 0).  start: a pending run starts (running,
 *		started_at; out->started set).  False when it is locked (SKIP) or does
 *		not exist.
 */
bool
run_row_lock(EngineRun *run, const char *step, RunLock lock, bool start, RunRowLocked *out)
{
	Rows		r;
	Datum		key[1] = {run->id};
	HeapTuple	t;
	bool		isnull;
	Datum		d;
	char	   *status;

	rows_begin(&r, run->leaves.runs, RUN_COLUMNS, run_columns);
	for (;;)
	{
		HeapTupleData locked;
		Buffer		buffer;
		TM_FailureData tmfd;
		TM_Result	result;

		t = rows_fetch(r.rel, 1, key);
		if (t == NULL || lock == RUN_LOCK_NONE)
			break;
		locked.t_self = t->t_self;
		result = heap_lock_tuple(r.rel, &locked, GetCurrentCommandId(true), LockTupleExclusive,
								 lock == RUN_LOCK_SKIP ? LockWaitSkip : LockWaitBlock,
								 false, &buffer, &tmfd);
		ReleaseBuffer(buffer);
		if (result == TM_Ok)
			break;
		if (result == TM_WouldBlock || lock == RUN_LOCK_SKIP)
		{
			/* held by another transaction, or changed since it was read */
			rows_end(&r);
			return false;
		}
		if (result != TM_Updated && result != TM_Deleted)
			elog(ERROR, "could not lock run %s: result %d", engine_uuid_text(run->id), (int) result);
		/* it waited for a transaction that changed the run: its latest version */
		heap_freetuple(t);
	}
	if (t == NULL)
	{
		rows_end(&r);
		return false;
	}

	status = get_text(&r, t, RC_STATUS);
	out->status = run_status_from_name(status);
	out->owner = DatumGetObjectId(get(&r, t, RC_OWNER, &isnull));
	out->started_by = DatumGetObjectId(get(&r, t, RC_STARTED_BY, &isnull));
	out->name = get_text(&r, t, RC_NAME);
	out->version = get_int32(&r, t, RC_VERSION);
	out->priority = get_int32(&r, t, RC_PRIORITY);
	d = get(&r, t, RC_DEADLINE, &isnull);
	out->has_deadline = !isnull;
	out->deadline = isnull ? 0 : DatumGetTimestampTz(d);
	out->trace_id = get_text(&r, t, RC_TRACE_ID);
	out->trace_parent = get_text(&r, t, RC_TRACE_PARENT);
	d = get(&r, t, RC_ADMISSION, &isnull);
	out->admission = isnull ? 0 : DatumGetInt16(d);
	out->started = false;
	if (start && out->status == RUN_PENDING)
	{
		out->started_at = GetCurrentTimestamp();
		set(&r, RC_STATUS, CStringGetTextDatum("running"), false);
		set(&r, RC_STARTED_AT, TimestampTzGetDatum(out->started_at), false);
		if (!rows_update(r.rel, t, r.values, r.nulls, r.replace))
			changed_elsewhere(&r, run->id);
		out->status = RUN_RUNNING;
		out->started = true;
	}
	rows_end(&r);

	out->attempt = 0;
	if (step != NULL)
	{
		Rows		s;
		HeapTuple	st = fetch_step(&s, run, step);

		if (st != NULL)
			out->attempt = get_int32(&s, st, SC_ATTEMPT);
		rows_end(&s);
	}
	return true;
}

/*
 * queue_rows_claim
 *		queue_rows_claim_of() for all workflows: the claims of the
 *		dispatchers' queues, and of an external queue for a worker that may
 *		work all its workflows.
 */
uint64
queue_rows_claim(const char *queue, int max_items, EngineClaim **claimed)
{
	return queue_rows_claim_of(queue, max_items, (Datum) 0, claimed);
}

/* What a step's row says for metrics.c, read where it changed. */
static void
step_row_times(Rows *r, HeapTuple t, StepRowTimes *out)
{
	bool		isnull;
	Datum		d;

	out->kind = get_text(r, t, SC_KIND);
	out->attempt = get_int32(r, t, SC_ATTEMPT);
	d = get(r, t, SC_STARTED_AT, &isnull);
	out->started_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = get(r, t, SC_READY_AT, &isnull);
	out->ready_at = isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * step_row_claimed
 *		An external worker's attempt starts.
 *		UPDATE steps SET status = 'running', attempt = attempt + 1,
 *		started_at = clock_timestamp(), worker WHERE run_id AND step
 *		RETURNING attempt, input, started_at + timeout AS attempt_end.
 *		timeout: an interval, or NULL (the attempt has no end: DT_NOEND).
 *		False when the run has no such step.
 */
bool
step_row_claimed(EngineRun *run, const char *step, const char *worker,
				 Datum timeout, bool timeout_isnull, StepRowClaimed *out)
{
	Rows		r;
	HeapTuple	old = fetch_step(&r, run, step);
	Datum		d;

	if (old == NULL)
	{
		rows_end(&r);
		return false;
	}
	step_row_times(&r, old, &out->times);
	out->times.attempt++;
	out->times.started_at = GetCurrentTimestamp();
	d = get(&r, old, SC_INPUT, &out->input_isnull);
	out->input = out->input_isnull ? (Datum) 0 : datumCopy(d, false, -1);
	out->attempt_end = timeout_isnull ? DT_NOEND
		: DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												  TimestampTzGetDatum(out->times.started_at),
												  timeout));
	set(&r, SC_STATUS, CStringGetTextDatum("running"), false);
	set(&r, SC_ATTEMPT, Int32GetDatum(out->times.attempt), false);
	set(&r, SC_STARTED_AT, TimestampTzGetDatum(out->times.started_at), false);
	set(&r, SC_WORKER, CStringGetTextDatum(worker), false);
	if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
		changed_elsewhere(&r, run->id);
	rows_end(&r);
	return true;
}

/*
 * step_row_succeeded
 *		A step another party ran succeeded (an external worker, a sleep, a
 *		signal, an HTTP response).
 *		UPDATE steps SET status = 'succeeded', result, error = NULL,
 *		finished_at = clock_timestamp() WHERE run_id AND step.  False when
 *		the run has no such step; else what metrics.c counts of it.
 */
bool
step_row_succeeded(EngineRun *run, const char *step, Datum result, bool result_isnull,
				   StepRowTimes *out)
{
	Rows		r;
	HeapTuple	old = fetch_step(&r, run, step);

	if (old == NULL)
	{
		rows_end(&r);
		return false;
	}
	step_row_times(&r, old, out);
	set(&r, SC_STATUS, CStringGetTextDatum("succeeded"), false);
	set(&r, SC_RESULT, result, result_isnull);
	set(&r, SC_ERROR, (Datum) 0, true);
	set(&r, SC_FINISHED_AT, TimestampTzGetDatum(GetCurrentTimestamp()), false);
	if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
		changed_elsewhere(&r, run->id);
	rows_end(&r);
	return true;
}

/* Is a queue row the one of (run_id, step)? */
static bool
queue_row_is(Rows *r, HeapTuple t, Datum run_id, const char *step)
{
	bool		isnull;
	Datum		d = get(r, t, QC_RUN_ID, &isnull);
	char	   *s;

	if (isnull || memcmp(DatumGetUUIDP(d)->data, DatumGetUUIDP(run_id)->data, UUID_LEN) != 0)
		return false;
	s = get_text(r, t, QC_STEP);
	return s != NULL && strcmp(s, step) == 0;
}

/*
 * queue_row_lease
 *		The lease of a step this transaction claimed (its queue row locked):
 *		UPDATE work_queue SET lease_token, lease, worker,
 *		available_at = least(now() + lease, attempt_end) WHERE run_id AND
 *		step (attempt_end DT_NOEND: none).  tid: where the claim found
 *		the row (it is not searched for again), or NULL.
 */
void
queue_row_lease(Datum run_id, const char *step, Datum token, Datum lease,
				const char *worker, TimestampTz attempt_end, ItemPointer tid)
{
	Rows		r;
	HeapTuple	old;
	TimestampTz until;

	queue_rows_begin(&r);
	old = fetch_claimed(&r, run_id, step, tid);
	if (old == NULL)
	{
		rows_end(&r);
		return;
	}
	until = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
													lease));
	if (attempt_end < until)
		until = attempt_end;
	set(&r, QC_LEASE_TOKEN, token, false);
	set(&r, QC_LEASE, lease, false);
	set(&r, QC_WORKER, CStringGetTextDatum(worker), false);
	set(&r, QC_AVAILABLE_AT, TimestampTzGetDatum(until), false);
	if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
		changed_elsewhere(&r, run_id);
	queue_vacuum_note(1);
	rows_end(&r);
}

/*
 * queue_row_take_leased
 *		A lease token that is still the one of the step's queue row, and
 *		unexpired, takes the row:
 *		DELETE FROM work_queue WHERE run_id AND step
 *		AND lease_token IS NOT DISTINCT FROM token AND available_at > now().
 *		False, and nothing deleted, otherwise.
 */
bool
queue_row_take_leased(Datum run_id, const char *step, Datum token)
{
	Rows		r;
	Datum		keys[2] = {run_id, CStringGetTextDatum(step)};
	HeapTuple	old;
	bool		isnull;
	Datum		d;
	bool		taken = false;

	queue_rows_begin(&r);
	old = rows_fetch(r.rel, 2, keys);
	if (old != NULL)
	{
		d = get(&r, old, QC_LEASE_TOKEN, &isnull);
		taken = !isnull &&
			memcmp(DatumGetUUIDP(d)->data, DatumGetUUIDP(token)->data, UUID_LEN) == 0 &&
			DatumGetTimestampTz(get(&r, old, QC_AVAILABLE_AT, &isnull)) > GetCurrentTransactionStartTimestamp();
		if (taken && !rows_delete(r.rel, old))
			changed_elsewhere(&r, run_id);
		if (taken)
			queue_vacuum_note(1);
	}
	rows_end(&r);
	return taken;
}

/*
 * queue_row_enqueue
 *		A step of a locked run queued (or queued again):
 *		INSERT INTO work_queue (run_id, step, queue, priority, available_at,
 *		workflow) ON CONFLICT (run_id, step) DO UPDATE SET queue, priority,
 *		available_at, lease_token = NULL, lease = NULL, worker = NULL.
 */
void
queue_row_enqueue(EngineRun *run, const char *step, const char *queue_name,
				  int32 priority, TimestampTz available_at)
{
	Rows		r;
	Datum		keys[2] = {run->id, CStringGetTextDatum(step)};
	HeapTuple	old;

	queue_rows_begin(&r);
	old = rows_fetch(r.rel, 2, keys);
	set(&r, QC_QUEUE, CStringGetTextDatum(queue_name), false);
	set(&r, QC_PRIORITY, Int32GetDatum(priority), false);
	set(&r, QC_AVAILABLE_AT, TimestampTzGetDatum(available_at), false);
	set(&r, QC_LEASE_TOKEN, (Datum) 0, true);
	set(&r, QC_LEASE, (Datum) 0, true);
	set(&r, QC_WORKER, (Datum) 0, true);
	if (old != NULL)
	{
		if (!rows_update(r.rel, old, r.values, r.nulls, r.replace))
			changed_elsewhere(&r, run->id);
		queue_vacuum_note(1);
	}
	else
	{
		set(&r, QC_RUN_ID, run->id, false);
		set(&r, QC_STEP, keys[1], false);
		set(&r, QC_WORKFLOW, CStringGetTextDatum(run->name), false);
		rows_insert(r.rel, r.values, r.nulls);
	}
	rows_end(&r);
}

/*
 * The OID of orchestrator.work_queue, looked up once per process rather
 * than once per queue row changed (two catalog searches each time), and
 * again after any change of pg_class or pg_namespace.
 */
static Oid	queue_oid = InvalidOid;

static void
queue_oid_forget(Datum arg, int cacheid, uint32 hashvalue)
{
	queue_oid = InvalidOid;
}

static Oid
queue_table_oid(void)
{
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterSyscacheCallback(RELNAMENSP, queue_oid_forget, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACENAME, queue_oid_forget, (Datum) 0);
		registered = true;
	}
	if (!OidIsValid(queue_oid))
		queue_oid = orchestrator_table_oid("work_queue");
	return queue_oid;
}

/* The OID of an index of work_queue, by name; ERROR when it is gone. */
static Oid
queue_index_oid(const char *name)
{
	Oid			index = get_relname_relid(name, get_namespace_oid("orchestrator", false));

	if (!OidIsValid(index))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("index orchestrator.%s does not exist", name),
				 errhint("Queues are claimed through it: create the extension again, or restore the index.")));
	return index;
}

/*
 * A due queue row of the claim: skipped (false) when its workflow is not
 * one of names[0..nnames-1] (names NULL: any), or when another transaction
 * holds it or changed it meanwhile; else locked, and *c says what it is.
 */
static bool
claim_queue_row(Rows *r, HeapTuple t, char **names, int nnames, EngineClaim *c)
{
	bool		isnull;
	HeapTupleData locked;
	Buffer		buffer;
	TM_FailureData tmfd;
	TM_Result	result;

	if (names != NULL)
	{
		char	   *workflow = get_text(r, t, QC_WORKFLOW);
		int			i;

		for (i = 0; i < nnames; i++)
			if (workflow != NULL && strcmp(workflow, names[i]) == 0)
				break;
		if (i == nnames)
			return false;
	}
	locked.t_self = t->t_self;
	result = heap_lock_tuple(r->rel, &locked, GetCurrentCommandId(true), LockTupleExclusive,
							 LockWaitSkip, false, &buffer, &tmfd);
	ReleaseBuffer(buffer);
	if (result != TM_Ok)
		return false;
	memcpy(&c->run_id, DatumGetUUIDP(get(r, t, QC_RUN_ID, &isnull)), sizeof(pg_uuid_t));
	c->step = get_text(r, t, QC_STEP);
	c->tid = t->t_self;
	get(r, t, QC_LEASE_TOKEN, &isnull);
	c->leased = !isnull;
	c->worker = get_text(r, t, QC_WORKER);
	return true;
}

/*
 * queue_rows_claim_of
 *		SELECT run_id, step, lease_token IS NOT NULL, worker FROM work_queue
 *		WHERE queue = $1 AND available_at <= now() AND workflow = ANY ($3)
 *		ORDER BY priority DESC, available_at LIMIT $2 FOR UPDATE SKIP
 *		LOCKED: up to max_items due rows of a queue, each locked, those
 *		another transaction holds (or changed meanwhile) skipped, and rows
 *		of other workflows than those of the text array "workflows" not
 *		even locked ((Datum) 0: any workflow).  Due means by the clock, not
 *		by the transaction's start: a transaction that claims again sees
 *		what became due meanwhile.
 *
 *		Leased rows are not in index work_queue_claim (a lease is a row
 *		leaving it, decision 74): the expired leases of the queue come
 *		first, from index work_queue_leased up to now (usually nothing to
 *		read: a lease expires when its worker is gone), then the ready rows
 *		in the order of work_queue_claim.  '@sql' and '@timer' rows are never
 *		leased.  A row another running transaction holds (another worker's
 *		claim, most often) is passed over from its header, without the two
 *		trips to the lock manager of a refused lock (rows_held_elsewhere()).
 */
uint64
queue_rows_claim_of(const char *queue, int max_items, Datum workflows, EngineClaim **claimed)
{
	Rows		r;
	Datum		key[1] = {CStringGetTextDatum(queue)};
	TimestampTz now = GetCurrentTimestamp();
	RowsScan   *scan;
	HeapTuple	t;
	uint64		n = 0;
	char	  **names = NULL;
	int			nnames = 0;
	bool		isnull;

	*claimed = palloc0(sizeof(EngineClaim) * Max(max_items, 1));
	if (workflows != (Datum) 0)
	{
		Datum	   *elems;
		bool	   *elem_nulls;

		deconstruct_array(DatumGetArrayTypeP(workflows), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &nnames);
		names = palloc(sizeof(char *) * Max(nnames, 1));
		for (int i = 0; i < nnames; i++)
			names[i] = elem_nulls[i] ? "" : TextDatumGetCString(elems[i]);
	}
	queue_rows_begin(&r);
	if (strcmp(queue, "@sql") != 0 && strcmp(queue, "@timer") != 0)
	{
		scan = rows_scan_until(r.rel, queue_index_oid("work_queue_leased"), TimestampTzGetDatum(now));
		while (n < (uint64) max_items && (t = rows_next(scan)) != NULL)
		{
			char	   *q = get_text(&r, t, QC_QUEUE);

			get(&r, t, QC_LEASE_TOKEN, &isnull);
			if (isnull || q == NULL || strcmp(q, queue) != 0 ||
				DatumGetTimestampTz(get(&r, t, QC_AVAILABLE_AT, &isnull)) > now)
				continue;
			if (rows_held_elsewhere(scan))
				continue;
			if (claim_queue_row(&r, t, names, nnames, &(*claimed)[n]))
				n++;
		}
		rows_scan_end(scan);
	}
	scan = rows_scan_on(r.rel, queue_index_oid("work_queue_claim"), 1, key);
	while (n < (uint64) max_items && (t = rows_next(scan)) != NULL)
	{
		if (DatumGetTimestampTz(get(&r, t, QC_AVAILABLE_AT, &isnull)) > now)
			continue;
		/* held by another transaction: its lock would be refused (rows.c) */
		if (rows_held_elsewhere(scan))
			continue;
		if (claim_queue_row(&r, t, names, nnames, &(*claimed)[n]))
			n++;
	}
	rows_scan_end(scan);
	rows_end(&r);
	return n;
}


/*
 * The rolling claims of a dispatcher's batch (queue_rows_claim_rolling(),
 * decision 85).
 *
 * A rolling batch claims a few due '@sql' rows, runs them, deletes their
 * queue rows and claims again, up to batch_size, in one transaction.  A
 * claim that read work_queue_claim from the start of the queue each time
 * went past everything the transaction had claimed already (deleted, but
 * its entries stay until a vacuum) and everything the other dispatcher
 * holds (a failed lock each): quadratic in the batch.  So a claim goes on
 * from where the last one stopped, the position of the last entry it read
 * (its key, and its row's place among the entries of equal key, which a
 * btree keeps in the order of the rows' places), in this order:
 *
 *	1. the rows of higher priority than the position's (made ready or
 *	   started since, by this batch or another transaction): higher
 *	   priority first holds within a batch too;
 *	2. the rows of the position's priority after it;
 *	3. the rows of lower priority;
 *	4. when those did not fill the claim: the whole queue again from its
 *	   start, as a claim that does not roll reads it (rows claimed in 1-3
 *	   passed over).  A row that sorts before the position without a higher
 *	   priority (one that became due since it was passed, one another
 *	   transaction held and let go, one committed late with an earlier
 *	   available_at) is claimed there: a claim never comes back short while
 *	   a due row it may lock is left, as before.
 *
 * The position is values, no scan kept open: nothing to release at the
 * end of the transaction or of a subtransaction, and no buffer pin held
 * while steps run (a pinned leaf page would stop the other dispatcher's
 * VACUUM of work_queue).  It is only where to look first; what a claim
 * takes is decided by the rows' locks, as before.  A new transaction, or
 * a claim that read to the end of the queue, starts from the start.
 */
typedef struct ClaimPosition
{
	LocalTransactionId lxid;	/* of the transaction it belongs to */
	bool		valid;
	bool		at_end;			/* the last claim read to the end of the queue */
	int32		priority;		/* of the last entry read */
	TimestampTz available_at;
	ItemPointerData tid;
} ClaimPosition;

static ClaimPosition position;

/* One rolling claim in progress. */
typedef struct RollingClaim
{
	Rows		r;
	Oid			index;
	Datum		queue;
	TimestampTz now;
	EngineClaim *claimed;
	uint64		n;
	uint64		max;
	uint64		first_passed;	/* claimed[first_passed..n-1] are passed over (4.) */
	bool		ties_ordered;	/* entries of equal key are in their rows' order */
} RollingClaim;

/*
 * rolling_scan
 *		Claim due rows from the entries of work_queue_claim of the queue whose
 *		(priority, available_at) compare with the keys by the strategies
 *		(InvalidStrategy: that column is not compared); move: the position
 *		follows the entries read; after: entries of the position's key up to
 *		its row are passed over.  True when the scan read to its end.
 */
static bool
rolling_scan(RollingClaim *c, StrategyNumber priority_strategy, StrategyNumber at_strategy,
			 bool move, bool after)
{
	StrategyNumber strategies[3] = {BTEqualStrategyNumber, priority_strategy, at_strategy};
	Datum		keys[3] = {c->queue, Int32GetDatum(position.priority),
	TimestampTzGetDatum(position.available_at)};
	int			nkeys = at_strategy != InvalidStrategy ? 3 : priority_strategy != InvalidStrategy ? 2 : 1;
	RowsScan   *scan = rows_scan_range(c->r.rel, c->index, nkeys, strategies, keys);
	bool		ended = false;

	while (c->n < c->max)
	{
		ItemPointerData tid;
		Datum		values[INDEX_MAX_KEYS];
		bool		nulls[INDEX_MAX_KEYS];
		int32		priority;
		TimestampTz available_at;
		HeapTuple	t;
		bool		passed = false;

		if (!rows_next_entry(scan, &tid, values, nulls))
		{
			ended = true;
			break;
		}
		if (nulls[1] || nulls[2])
			continue;
		priority = DatumGetInt32(values[1]);
		available_at = DatumGetTimestampTz(values[2]);
		if (after && c->ties_ordered && available_at == position.available_at &&
			ItemPointerCompare(&tid, &position.tid) <= 0)
			continue;
		if (move)
		{
			position.priority = priority;
			position.available_at = available_at;
			position.tid = tid;
		}
		/* not due: the entry says so, its row need not be read */
		if (available_at > c->now || (t = rows_entry_row(scan)) == NULL)
			continue;
		if (rows_held_elsewhere(scan))
			continue;
		for (uint64 i = c->first_passed; i < c->n && !passed; i++)
			passed = ItemPointerEquals(&c->claimed[i].tid, &t->t_self);
		if (!passed && claim_queue_row(&c->r, t, NULL, 0, &c->claimed[c->n]))
			c->n++;
	}
	rows_scan_end(scan);
	return ended;
}

/*
 * claim_index_known
 *		Is index work_queue_claim the btree on (queue, priority DESC,
 *		available_at) the rolling claims read (they take its entries' keys
 *		by position), and are its entries of equal key in the order of their
 *		rows (*ties_ordered: a btree made by PostgreSQL 12 or later)?  Looked
 *		at once per index.
 */
static bool
claim_index_known(Oid indexid, bool *ties_ordered)
{
	static Oid	known = InvalidOid;
	static bool known_ok = false;
	static bool known_ordered = false;

	if (indexid != known)
	{
		Relation	index = index_open(indexid, AccessShareLock);
		bool		allequalimage;

		known_ok = index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_index->indnkeyatts == 3 &&
			IndexRelationGetNumberOfAttributes(index) == 3 &&
			index->rd_opcintype[1] == INT4OID &&
			index->rd_opcintype[2] == TIMESTAMPTZOID &&
			(index->rd_indoption[1] & INDOPTION_DESC) != 0 &&
			(index->rd_indoption[2] & INDOPTION_DESC) == 0;
		known_ordered = false;
		if (known_ok)
			_bt_metaversion(index, &known_ordered, &allequalimage);
		index_close(index, NoLock);
		known = indexid;
	}
	*ties_ordered = known_ordered;
	return known_ok;
}

/*
 * queue_rows_claim_rolling
 *		queue_rows_claim() for the claims of a dispatcher's rolling batch of
 *		an internal queue ('@sql'), in the current transaction: the same
 *		rows in the same order, except that a row sorting before where the
 *		last claim of the transaction stopped, and not of a higher priority,
 *		comes after the rows that follow it (see ClaimPosition above).
 */
uint64
queue_rows_claim_rolling(const char *queue, int max_items, EngineClaim **claimed)
{
	RollingClaim c;
	bool		ended;

	Assert(strcmp(queue, "@sql") == 0);
	c.index = queue_index_oid("work_queue_claim");
	if (!claim_index_known(c.index, &c.ties_ordered))
	{
		/* not the index this reads: the claim that reads any */
		position.valid = false;
		return queue_rows_claim(queue, max_items, claimed);
	}
	queue_rows_begin(&c.r);
	*claimed = palloc0(sizeof(EngineClaim) * Max(max_items, 1));
	c.queue = CStringGetTextDatum(queue);
	c.now = GetCurrentTimestamp();
	c.claimed = *claimed;
	c.n = 0;
	c.max = (uint64) Max(max_items, 0);
	c.first_passed = c.max;

	if (!position.valid || position.lxid != MyProc->lxid || position.at_end)
	{
		/* from the start of the queue */
		position.valid = false;
		position.lxid = MyProc->lxid;
		ended = rolling_scan(&c, InvalidStrategy, InvalidStrategy, true, false);
	}
	else
	{
		int32		priority PG_USED_FOR_ASSERTS_ONLY = position.priority;

		/* 1. higher priorities (the index is in descending priority) */
		rolling_scan(&c, BTGreaterStrategyNumber, InvalidStrategy, false, false);
		/* 2. the position's priority, after it */
		ended = c.n < c.max && rolling_scan(&c, BTEqualStrategyNumber, BTGreaterEqualStrategyNumber,
											true, true);
		/* 3. lower priorities (2. moved within the position's priority) */
		Assert(position.priority == priority);
		if (ended)
			ended = c.n < c.max && rolling_scan(&c, BTLessStrategyNumber, InvalidStrategy, true, false);
		/* 4. still short: the whole queue, the rows claimed above passed over */
		if (ended)
		{
			c.first_passed = 0;
			ended = c.n < c.max && rolling_scan(&c, InvalidStrategy, InvalidStrategy, true, false);
		}
	}
	/* read to the end: the next claim starts from the start */
	position.at_end = ended;
	position.valid = true;
	rows_end(&c.r);
	return c.n;
}
