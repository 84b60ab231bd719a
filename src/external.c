/*-------------------------------------------------------------------------
 *
 * external.c
 *	  External workers' claims and completions, through engine.c.
 *
 * claim_steps() validates its arguments in PL/pgSQL and claims through
 * _claim_external(); complete_step() and complete_steps() are this file's
 * functions themselves.  They do what the PL/pgSQL versions of 0.1 did, with
 * statements on the run's partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(orchestrator_claim_external);
PG_FUNCTION_INFO_V1(orchestrator_complete_step);
PG_FUNCTION_INFO_V1(orchestrator_complete_steps);

/* A fresh version 4 UUID: a lease token (as gen_random_uuid()). */
Datum
engine_random_uuid(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random lease token")));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return UUIDPGetDatum(uuid);
}

/*
 * orchestrator_claim_external
 *		_claim_external(queue, worker, max_steps, lease, workflows): claim up
 *		to max_steps due steps of an external queue with a lease, as
 *		claim_steps() returns them; only steps of the workflows named
 *		(NULL: all).  The caller validated the arguments.
 */
/* What _claim_external() works on in its unit of work. */
typedef struct ClaimExternal
{
	ReturnSetInfo *rsinfo;
	char	   *queue;
	char	   *worker;
	int32		max_steps;
	Datum		lease;
	Datum		workflows;		/* text[] of the workflows it may work; 0: all */
	Datum		lease_end;		/* now() + lease */
} ClaimExternal;

static void
claim_external_work(void *arg)
{
	ClaimExternal *a = arg;
	EngineClaim *claimed;
	uint64		nclaimed = engine_claim(a->queue, a->max_steps, a->workflows, &claimed);

	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineClaim *c = &claimed[i];
		EngineRun	run;
		Datum		values[8];
		bool		nulls[8] = {false, false, false, false, false, false, false, false};
		Datum		token;
		int32		attempt;
		TimestampTz deadline = DatumGetTimestampTz(a->lease_end);
		TimestampTz attempt_end;

		/* a run another transaction holds is left for the next claim */
		if (!engine_lock_run(UUIDPGetDatum(&c->run_id), NULL, true, &run))
			continue;
		if (c->leased)
		{
			engine_lease_expired(&run, c->step, c->worker);
			continue;
		}
		token = engine_random_uuid();
		attempt = engine_step_claimed(&run, c->step, a->worker, token, a->lease,
									  &values[4], &nulls[4], &attempt_end);

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
}

Datum
orchestrator_claim_external(PG_FUNCTION_ARGS)
{
	ClaimExternal a;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue, worker, max_steps and lease must not be null")));
	InitMaterializedSRF(fcinfo, 0);
	a.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	a.workflows = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	a.queue = text_to_cstring(PG_GETARG_TEXT_PP(0));
	a.worker = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a.max_steps = PG_GETARG_INT32(2);
	a.lease = PG_GETARG_DATUM(3);
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
/* The last workflow the caller was found allowed to work, in one call. */
typedef struct WorkRights
{
	const char *workflow;
} WorkRights;

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
	if (rights->workflow == NULL || strcmp(rights->workflow, run.name) != 0)
	{
		engine_require_work_right(&run);
		rights->workflow = run.name;
	}
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
	WorkRights	rights = {NULL};

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
	WorkRights	rights = {NULL};

	for (int i = 0; i < a->n; i++)
	{
		Completion *c = &a->items[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = c->run_id;
		values[1] = CStringGetTextDatum(c->step);
		values[2] = BoolGetDatum(complete_one(c->run_id, c->step, c->token, c->result, &rights));
		tuplestore_putvalues(a->rsinfo->setResult, a->rsinfo->setDesc, values, nulls);
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
