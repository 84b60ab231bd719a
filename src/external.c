/*-------------------------------------------------------------------------
 *
 * external.c
 *	  External workers' claims, heartbeats, completions and failures,
 *	  through engine.c.
 *
 * claim_steps(), heartbeat_step(), complete_step(), complete_steps() and
 * fail_step() are this file's functions themselves: their arguments
 * checked, the run locked, the lease checked, then the transitions of
 * engine.c, with statements on the run's partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "caller.h"
#include "engine.h"
#include "leaf.h"
#include "quota.h"
#include "random_pool.h"
#include "rights.h"
#include "rows.h"

PG_FUNCTION_INFO_V1(orchestrator_api_claim_steps);
PG_FUNCTION_INFO_V1(orchestrator_api_heartbeat_step);
PG_FUNCTION_INFO_V1(orchestrator_complete_step);
PG_FUNCTION_INFO_V1(orchestrator_complete_steps);
PG_FUNCTION_INFO_V1(orchestrator_api_fail_step);

/* A fresh version 4 UUID: a lease token (as gen_random_uuid()). */
Datum
engine_random_uuid(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	random_pool_fill(uuid->data, UUID_LEN);
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return UUIDPGetDatum(uuid);
}

/*
 * orchestrator_api_claim_steps
 *		_api_claim_steps(queue, worker, max_steps, lease): claim up to
 *		max_steps due steps of an external queue with a lease (NULL:
 *		orchestrator.default_lease), only of the workflows the caller may
 *		work; a step of a run that another transaction holds is left for the
 *		next claim.  traceparent: the attempt's span in the run's trace, for
 *		the worker to continue.
 */
/* What claim_steps() works on in its unit of work. */
typedef struct ClaimExternal
{
	ReturnSetInfo *rsinfo;
	char	   *queue;
	char	   *worker;
	int32		max_steps;
	Datum		lease;
	Datum		lease_end;		/* now() + lease */
} ClaimExternal;

static void claim_one(ClaimExternal *a, EngineClaim *c);

/*
 * Has the queue a limit (a row of queue_limits, as committed now)?  Most
 * have none: then no statement is run.  A limit set by a transaction that
 * has not committed is not seen, as the statement would not see it.
 */
static bool
queue_has_limit(const char *queue)
{
	Relation	rel = table_open(orchestrator_table_oid("queue_limits"), AccessShareLock);
	Datum		key[1] = {CStringGetTextDatum(queue)};
	HeapTuple	t = rows_fetch(rel, 1, key);

	table_close(rel, AccessShareLock);
	return t != NULL;
}

static void
claim_external_work(void *arg)
{
	ClaimExternal *a = arg;
	EngineClaim *claimed;
	uint64		nclaimed;
	MemoryContext item_context;
	Datum		q[1] = {CStringGetTextDatum(a->queue)};
	Datum		workflows;

	/*
	 * A limited queue (set_queue_limit): at most max_running live leases.
	 * Updating its row makes claims of the queue follow one another; the
	 * count is a new snapshot, after the lock.
	 */
	if (queue_has_limit(a->queue))
	{
		if (engine_stmt(S_QUEUE_LIMIT, NULL, q, NULL) == 1)
		{
			bool		isnull;
			Datum		d = engine_col("max_running", &isnull);
			int64		limit = isnull ? 0 : DatumGetInt32(d);
			int64		running;

			engine_rows_done();
			engine_stmt(S_QUEUE_LEASED, NULL, q, NULL);
			running = DatumGetInt64(engine_col("running", &isnull));
			engine_rows_done();
			if (running >= limit)
				return;
			if (limit - running < a->max_steps)
				a->max_steps = (int32) (limit - running);
		}
		else
			engine_rows_done();
	}

	/* only steps of workflows the caller may work: others' rows are not even locked */
	workflows = workable_workflows(orchestrator_current_caller());
	nclaimed = engine_claim(a->queue, a->max_steps, workflows, &claimed);
	item_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator claim",
										 ALLOCSET_DEFAULT_SIZES);
	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineClaim *c = &claimed[i];
		MemoryContext outer = MemoryContextSwitchTo(item_context);

		claim_one(a, c);
		MemoryContextSwitchTo(outer);
		MemoryContextReset(item_context);
	}
}

/*
 * claim_one
 *		One claimed queue row (in a memory context of its own: the row for
 *		the caller is copied into the result).
 */
static void
claim_one(ClaimExternal *a, EngineClaim *c)
{
	EngineRun	run;
	Datum		values[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	Datum		token;
	int32		attempt;
	TimestampTz deadline = DatumGetTimestampTz(a->lease_end);
	TimestampTz attempt_end;

	/*
	 * A run another transaction holds is left for the next claim.  An
	 * expired lease is a lost attempt; otherwise the step starts, and a
	 * pending run with it: started by the read that locks it (not read
	 * again by engine_step_claimed()).
	 */
	if (c->leased)
	{
		if (engine_lock_run(UUIDPGetDatum(&c->run_id), NULL, true, &run))
			engine_lease_expired(&run, c->step, c->worker);
		return;
	}
	if (!engine_lock_run_to_start(UUIDPGetDatum(&c->run_id), NULL, &run))
		return;
	token = engine_random_uuid();
	attempt = engine_step_claimed(&run, c->step, a->worker, token, a->lease,
								  &values[4], &nulls[4], &attempt_end, &c->tid);

	values[0] = run.id;
	values[1] = CStringGetTextDatum(c->step);
	values[2] = Int32GetDatum(attempt);
	values[3] = token;
	values[5] = CStringGetTextDatum(run.name);
	/* least(now() + lease, the end of the attempt, the run's deadline) */
	if (attempt_end < deadline)
		deadline = attempt_end;
	if (run.has_deadline && run.deadline < deadline)
		deadline = run.deadline;
	values[6] = TimestampTzGetDatum(deadline);
	/* the attempt's span in the run's trace, for the worker to continue */
	values[7] = CStringGetTextDatum(engine_traceparent(&run, c->step, attempt));
	tuplestore_putvalues(a->rsinfo->setResult, a->rsinfo->setDesc, values, nulls);
}

/* Is an interval outside 1 second .. 1 day (as interval comparison has it)? */
static bool
lease_out_of_range(Datum lease)
{
	Datum		second = DirectFunctionCall3(interval_in, CStringGetDatum("1 second"),
											 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	Datum		day = DirectFunctionCall3(interval_in, CStringGetDatum("1 day"),
										  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));

	return DatumGetBool(DirectFunctionCall2(interval_lt, lease, second)) ||
		DatumGetBool(DirectFunctionCall2(interval_gt, lease, day));
}

static char *
interval_text(Datum interval)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, interval));
}

Datum
orchestrator_api_claim_steps(PG_FUNCTION_ARGS)
{
	ClaimExternal a;
	char	   *queue = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *worker = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			worker_len = worker ? pg_mbstrlen(worker) : 0;

	if (queue == NULL || !engine_valid_name(queue))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid queue name %s", queue ? quote_literal_cstr(queue) : "NULL"),
				 errdetail("A queue name is 1 to 63 letters, digits, \"_\", \".\", \":\" or \"-\", as in the step's \"queue\".")));
	if (worker == NULL || worker_len < 1 || worker_len > 255)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("worker must be a name of 1 to 255 characters"),
				 errhint("Name the worker so that its leases can be traced, for example host:pid.")));
	if (PG_ARGISNULL(2) || PG_GETARG_INT32(2) < 1 || PG_GETARG_INT32(2) > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_steps must be from 1 to 1000"),
				 errdetail("Got %s.", PG_ARGISNULL(2) ? "NULL" : psprintf("%d", PG_GETARG_INT32(2)))));
	/* no lease given: orchestrator.default_lease (5 minutes unless set) */
	if (PG_ARGISNULL(3))
		a.lease = DirectFunctionCall3(interval_in,
									  CStringGetDatum(GetConfigOptionByName("orchestrator.default_lease", NULL, false)),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	else
		a.lease = PG_GETARG_DATUM(3);
	if (lease_out_of_range(a.lease))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be from 1 second to 1 day"),
				 errdetail("Got %s.", interval_text(a.lease)),
				 errhint("Heartbeat with heartbeat_step() to keep a long task's lease.")));

	InitMaterializedSRF(fcinfo, 0);
	a.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	a.queue = queue;
	a.worker = worker;
	a.max_steps = PG_GETARG_INT32(2);
	a.lease_end = DirectFunctionCall2(timestamptz_pl_interval,
									  TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
									  a.lease);
	engine_unit(claim_external_work, &a);
	return (Datum) 0;
}

/*
 * complete_one
 *		Complete one claimed step (inside a unit of work); false when the
 *		lease is stale.
 */
/*
 * The workflows the caller was found allowed to work, in one call: checked
 * once each, not once per step (kept in the call's memory).
 */
typedef struct WorkRights
{
	MemoryContext context;
	List	   *workflows;
} WorkRights;

static void
require_work_right_once(WorkRights *rights, EngineRun *run)
{
	ListCell   *lc;
	MemoryContext outer;

	foreach(lc, rights->workflows)
		if (strcmp((const char *) lfirst(lc), run->name) == 0)
			return;
	engine_require_work_right(run);
	outer = MemoryContextSwitchTo(rights->context);
	rights->workflows = lappend(rights->workflows, pstrdup(run->name));
	MemoryContextSwitchTo(outer);
}

static bool
complete_one(Datum run_id, const char *step, Datum token, Datum result, WorkRights *rights)
{
	EngineRun	run;
	StepDef    *def;

	/*
	 * The run is locked first, then its queue row, as everywhere.  The lease
	 * token proves which attempt the caller works on; the caller must also
	 * be allowed to work the workflow's steps (a token may have leaked).
	 */
	if (!engine_lock_run(run_id, NULL, false, &run))
		return false;
	require_work_right_once(rights, &run);
	if (!(engine_run_active(&run) || run.status == RUN_COMPENSATING) ||
		!engine_take_leased(&run, step, token))
		return false;

	def = engine_step_def(run.name, run.version, step);
	engine_record_success(&run, def, step, result, false, false);
	engine_step_done(&run, def);
	return true;
}

/*
 * orchestrator_complete_step
 *		complete_step(run_id, step, lease_token, result): record the result
 *		of a claimed step; false (and nothing changed) when the lease is
 *		stale: expired, superseded, or of a run that has finished or is gone.
 */
/* What complete_step() works on in its unit of work. */
typedef struct CompleteStep
{
	Datum		run_id;
	char	   *step;
	Datum		token;
	Datum		result;
	bool		completed;
} CompleteStep;

static void
complete_step_work(void *arg)
{
	CompleteStep *a = arg;
	WorkRights	rights = {CurrentMemoryContext, NIL};

	a->completed = complete_one(a->run_id, a->step, a->token, a->result, &rights);
}

Datum
orchestrator_complete_step(PG_FUNCTION_ARGS)
{
	CompleteStep a;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run_id, step and lease_token must not be null"),
				 errhint("Pass the values claim_steps() returned.")));
	a.run_id = PG_GETARG_DATUM(0);
	a.step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a.token = PG_GETARG_DATUM(2);
	a.result = PG_ARGISNULL(3) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))
		: PG_GETARG_DATUM(3);
	a.completed = false;
	engine_unit(complete_step_work, &a);
	PG_RETURN_BOOL(a.completed);
}

/* One item of complete_steps(). */
typedef struct Completion
{
	Datum		run_id;
	char	   *step;
	Datum		token;
	Datum		result;
	int			position;
} Completion;

static int
completion_cmp(const void *a, const void *b)
{
	const Completion *x = a;
	const Completion *y = b;
	int			c = memcmp(DatumGetUUIDP(x->run_id)->data, DatumGetUUIDP(y->run_id)->data, UUID_LEN);

	return c != 0 ? c : x->position - y->position;
}

/* The elements of a one-dimensional array argument without NULLs. */
static void
array_arg(ArrayType *arr, Oid type, int16 typlen, bool typbyval, char typalign,
		  const char *name, bool nulls_allowed, Datum **elems, bool **elem_nulls, int *n)
{
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", name)));
	deconstruct_array(arr, type, typlen, typbyval, typalign, elems, elem_nulls, n);
	if (!nulls_allowed)
		for (int i = 0; i < *n; i++)
			if ((*elem_nulls)[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("%s must not contain nulls", name),
						 errhint("Pass the values claim_steps() returned.")));
}

/* What complete_steps() works on in its unit of work. */
typedef struct CompleteSteps
{
	ReturnSetInfo *rsinfo;
	Completion *items;			/* in run id order */
	int			n;
} CompleteSteps;

static void
complete_steps_work(void *arg)
{
	CompleteSteps *a = arg;
	WorkRights	rights = {CurrentMemoryContext, NIL};
	MemoryContext item_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator completion",
													   ALLOCSET_DEFAULT_SIZES);

	/* each completion in a memory context of its own; its row is copied */
	for (int i = 0; i < a->n; i++)
	{
		Completion *c = &a->items[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		MemoryContext outer = MemoryContextSwitchTo(item_context);

		values[0] = c->run_id;
		values[1] = CStringGetTextDatum(c->step);
		values[2] = BoolGetDatum(complete_one(c->run_id, c->step, c->token, c->result, &rights));
		tuplestore_putvalues(a->rsinfo->setResult, a->rsinfo->setDesc, values, nulls);
		MemoryContextSwitchTo(outer);
		MemoryContextReset(item_context);
	}
}

/*
 * orchestrator_complete_steps
 *		complete_steps(run_ids, steps, lease_tokens, results): complete_step()
 *		for each position of the arrays, in one call; returns (run_id, step,
 *		completed) for each.  Runs are locked in the order of their ids, so
 *		two workers completing steps of the same runs cannot deadlock.
 */
Datum
orchestrator_complete_steps(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *ids,
			   *steps,
			   *tokens,
			   *results;
	bool	   *id_nulls,
			   *step_nulls,
			   *token_nulls,
			   *result_nulls;
	int			n_ids,
				n_steps,
				n_tokens,
				n_results;
	Completion *items;
	Datum		json_null;
	CompleteSteps batch;

	/*
	 * All four NULL is nothing to complete: what array_agg() over a poll
	 * that claimed nothing gives, as in the documented polling statement.
	 */
	if (PG_ARGISNULL(0) && PG_ARGISNULL(1) && PG_ARGISNULL(2) && PG_ARGISNULL(3))
	{
		InitMaterializedSRF(fcinfo, 0);
		return (Datum) 0;
	}
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run_ids, steps, lease_tokens and results must not be null"),
				 errhint("Pass arrays of the values claim_steps() returned, and of the results (a NULL element is the JSON null).")));
	array_arg(PG_GETARG_ARRAYTYPE_P(0), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
			  "run_ids", false, &ids, &id_nulls, &n_ids);
	array_arg(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
			  "steps", false, &steps, &step_nulls, &n_steps);
	array_arg(PG_GETARG_ARRAYTYPE_P(2), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
			  "lease_tokens", false, &tokens, &token_nulls, &n_tokens);
	array_arg(PG_GETARG_ARRAYTYPE_P(3), JSONBOID, -1, false, TYPALIGN_INT,
			  "results", true, &results, &result_nulls, &n_results);
	if (n_steps != n_ids || n_tokens != n_ids || n_results != n_ids)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("run_ids, steps, lease_tokens and results must have the same length"),
				 errdetail("They have %d, %d, %d and %d elements.", n_ids, n_steps, n_tokens, n_results)));

	InitMaterializedSRF(fcinfo, 0);
	json_null = DirectFunctionCall1(jsonb_in, CStringGetDatum("null"));
	items = palloc(sizeof(Completion) * Max(n_ids, 1));
	for (int i = 0; i < n_ids; i++)
	{
		items[i].run_id = ids[i];
		items[i].step = TextDatumGetCString(steps[i]);
		items[i].token = tokens[i];
		items[i].result = result_nulls[i] ? json_null : results[i];
		items[i].position = i;
	}
	qsort(items, n_ids, sizeof(Completion), completion_cmp);

	batch.rsinfo = rsinfo;
	batch.items = items;
	batch.n = n_ids;
	engine_unit(complete_steps_work, &batch);

	return (Datum) 0;
}

/*
 * check_lease
 *		Lock the run of a claimed step and check the lease token (inside a
 *		unit of work): false when it is stale (expired, superseded, or of a
 *		run that has finished or is gone).  The run is locked first, then its
 *		queue row, as everywhere.  The token proves which attempt the caller
 *		works on; the caller must also be allowed to work the workflow's
 *		steps (a token may have leaked): 42501 otherwise, whatever the token.
 */
static bool
check_lease(Datum run_id, const char *step, Datum token, EngineRun *run)
{
	Datum		values[3] = {run_id, CStringGetTextDatum(step), token};
	bool		valid;

	if (!engine_lock_run(run_id, NULL, false, run))
		return false;
	engine_require_work_right(run);
	if (!(engine_run_active(run) || run->status == RUN_COMPENSATING))
		return false;
	valid = engine_stmt(S_CHECK_LEASE, NULL, values, NULL) == 1;
	engine_rows_done();
	return valid;
}

static void
require_lease_args(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run_id, step and lease_token must not be null"),
				 errhint("Pass the values claim_steps() returned.")));
}

/*
 * orchestrator_api_heartbeat_step
 *		_api_heartbeat_step(run_id, step, lease_token, lease, progress):
 *		extend a claimed step's lease, by its length or by a new length from
 *		now on, never past the end of its attempt (the step's timeout);
 *		progress (when not NULL) is kept on the step and appended as event
 *		step.progress.  False (and nothing changed) when the lease is stale.
 */
typedef struct Heartbeat
{
	Datum		run_id;
	char	   *step;
	Datum		token;
	Datum		lease;
	bool		lease_isnull;
	Datum		progress;
	bool		progress_isnull;
	bool		extended;
} Heartbeat;

static void
heartbeat_work(void *arg)
{
	Heartbeat  *h = arg;
	EngineRun	run;

	if (!check_lease(h->run_id, h->step, h->token, &run))
		return;
	/*
	 * Progress is a payload the worker writes into the owner's run, and an
	 * event each time: bounded as a result and as signals are (54000).
	 */
	if (!h->progress_isnull)
	{
		orchestrator_quota_check_worker_payload(run.owner, "the step's progress", h->progress, false);
		orchestrator_quota_check_events(run.owner, run.id);
	}
	engine_extend_lease(&run, h->step, h->lease, h->lease_isnull);
	if (!h->progress_isnull)
	{
		Datum		values[3] = {run.id, CStringGetTextDatum(h->step), h->progress};
		Datum		data;
		bool		isnull;

		engine_stmt(S_STEP_PROGRESS, &run.leaves, values, NULL);
		data = engine_col("data", &isnull);
		engine_rows_done();
		engine_emit_jsonb(&run, "step.progress", h->step, data, isnull);
	}
	h->extended = true;
}

Datum
orchestrator_api_heartbeat_step(PG_FUNCTION_ARGS)
{
	Heartbeat	h;

	h.lease_isnull = PG_ARGISNULL(3);
	h.lease = h.lease_isnull ? (Datum) 0 : PG_GETARG_DATUM(3);
	if (!h.lease_isnull && lease_out_of_range(h.lease))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be from 1 second to 1 day"),
				 errdetail("Got %s.", interval_text(h.lease)),
				 errhint("NULL extends the lease by the length it has.")));
	require_lease_args(fcinfo);
	h.run_id = PG_GETARG_DATUM(0);
	h.step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	h.token = PG_GETARG_DATUM(2);
	h.progress_isnull = PG_ARGISNULL(4);
	h.progress = h.progress_isnull ? (Datum) 0 : PG_GETARG_DATUM(4);
	h.extended = false;
	engine_unit(heartbeat_work, &h);
	PG_RETURN_BOOL(h.extended);
}

/*
 * orchestrator_api_fail_step
 *		_api_fail_step(run_id, step, lease_token, error, retryable): a failed
 *		attempt of a claimed step (error NULL: JSON null; retryable NULL:
 *		true), retried after a backoff while attempts remain and retryable,
 *		else the step is dead or failed and the run fails.  False (and
 *		nothing changed) when the lease is stale.
 */
typedef struct FailStep
{
	Datum		run_id;
	char	   *step;
	Datum		token;
	Datum		error;
	bool		retryable;
	bool		failed;
} FailStep;

static void
fail_step_work(void *arg)
{
	FailStep   *f = arg;
	EngineRun	run;

	if (!check_lease(f->run_id, f->step, f->token, &run))
		return;
	/* the error is the worker's payload, kept on the step, the events and the run */
	orchestrator_quota_check_worker_payload(run.owner, "the step's error", f->error, false);
	engine_attempt_failed(&run, f->step, f->error, f->retryable, (Datum) 0, true);
	f->failed = true;
}

Datum
orchestrator_api_fail_step(PG_FUNCTION_ARGS)
{
	FailStep	f;

	require_lease_args(fcinfo);
	f.run_id = PG_GETARG_DATUM(0);
	f.step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	f.token = PG_GETARG_DATUM(2);
	f.error = PG_ARGISNULL(3) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))
		: PG_GETARG_DATUM(3);
	f.retryable = PG_ARGISNULL(4) ? true : PG_GETARG_BOOL(4);
	f.failed = false;
	engine_unit(fail_step_work, &f);
	PG_RETURN_BOOL(f.failed);
}

/*
 * orchestrator._claim_external() of versions 0.3 and before: the install
 * scripts of released versions name it, so the library keeps the symbol
 * (creating those versions, to update them, must work); the API refuses
 * their schema.
 */
PG_FUNCTION_INFO_V1(orchestrator_claim_external);

Datum
orchestrator_claim_external(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the orchestrator extension must be updated before it can be used"),
			 errhint("Run ALTER EXTENSION orchestrator UPDATE in this database.")));
	PG_RETURN_VOID();
}
