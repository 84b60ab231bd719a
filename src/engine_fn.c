/*-------------------------------------------------------------------------
 *
 * engine_fn.c
 *	  SQL-callable entry points of the state machine (engine.c), and the
 *	  dispatchers' pass over timers and expired leases.
 *
 * What PL/pgSQL still reaches of the engine, through internal functions
 * granted to nobody, with the run's row locked: _emit() and
 * _attempt_failed() (the HTTP responses' batch, 75_http.sql), and the
 * journal's _sql_attempt_lost() (journal.c); each is a unit of work of its
 * own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "admission.h"
#include "engine.h"
#include "engine_timer.h"
#include "sql_steps.h"
#include "guc.h"

PG_FUNCTION_INFO_V1(orchestrator_sql_attempt_lost);
PG_FUNCTION_INFO_V1(orchestrator_dispatch);

/*
 * The arguments of a call, for its unit of work.  Results must be passed by
 * value: the unit's memory (its SPI connection's) is gone when it returns.
 */
typedef struct Call
{
	FunctionCallInfo fcinfo;
	EngineRun	run;
	Datum		result;
	bool		result_isnull;
} Call;

static void
require_args(FunctionCallInfo fcinfo, int n)
{
	for (int i = 0; i < n; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of %s must not be null", i + 1,
							get_func_name(fcinfo->flinfo->fn_oid))));
}

static char *
arg_text(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

static Datum
call_unit(FunctionCallInfo fcinfo, int required, void (*work) (void *arg), bool *isnull)
{
	Call		c;

	require_args(fcinfo, required);
	memset(&c, 0, sizeof(c));
	c.fcinfo = fcinfo;
	c.result_isnull = true;
	engine_unit(work, &c);
	*isnull = c.result_isnull;
	return c.result;
}


/*
 * _sql_attempt_lost(run_id, step, attempt, error) returns text
 *		An attempt of a sql step that was lost outside its statement's own
 *		error handling (journal.c): the dispatcher's transaction failed while
 *		handling the step, or its process died while the step ran.  Nothing
 *		of the attempt committed; it is counted now, and retried or
 *		dead-lettered like any failed attempt.  A step that has moved on since
 *		is left alone.  Returns 'recorded', 'stale' (nothing to do) or 'busy'
 *		(the run is locked: try again later).
 */
static void
sql_attempt_lost_work(void *arg)
{
	Call	   *c = arg;
	FunctionCallInfo fcinfo = c->fcinfo;
	char	   *step = arg_text(fcinfo, 1);
	int32		attempt = PG_GETARG_INT32(2);
	const char *outcome = "stale";
	Datum		values[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};

	if (!engine_lock_run(PG_GETARG_DATUM(0), NULL, true, &c->run))
	{
		if (orchestrator_run_leaves(PG_GETARG_DATUM(0), &c->run.leaves, true))
		{
			engine_stmt(S_RUN_EXISTS, &c->run.leaves, values, NULL);
			if (engine_col_bool("exist"))
				outcome = "busy";
			engine_rows_done();
		}
	}
	else if (engine_run_active(&c->run) || c->run.status == RUN_COMPENSATING)
	{
		bool		lost = false;

		if (engine_stmt(S_STEP_STATE, &c->run.leaves, values, NULL) == 1)
			lost = strcmp(engine_col_text("status"), "ready") == 0 &&
				engine_col_int32("attempt") == attempt - 1 && engine_col_bool("queued");
		engine_rows_done();
		if (lost)
		{
			engine_step_started(&c->run, step, "dispatcher");
			engine_attempt_failed(&c->run, step, PG_GETARG_DATUM(3), true, (Datum) 0, true);
			outcome = "recorded";
		}
	}
	/* an int: the text is made by the caller, outside the unit's memory */
	c->result = Int32GetDatum(strcmp(outcome, "recorded") == 0 ? 0 : strcmp(outcome, "busy") == 0 ? 1 : 2);
	c->result_isnull = false;
}

Datum
orchestrator_sql_attempt_lost(PG_FUNCTION_ARGS)
{
	static const char *const outcomes[] = {"recorded", "busy", "stale"};
	bool		isnull;
	Datum		d = call_unit(fcinfo, 4, sql_attempt_lost_work, &isnull);

	PG_RETURN_TEXT_P(cstring_to_text(outcomes[DatumGetInt32(d)]));
}

/* ----------------------------------------------------------------
 * The dispatchers' pass over timers and leases
 * ---------------------------------------------------------------- */

/*
 * fire_contained
 *		Fire a timer in a subtransaction: an error of the engine itself fails
 *		the step (or drops a run's own timer) rather than the whole pass,
 *		which would otherwise retry it forever.
 */
typedef struct Timer
{
	EngineRun  *run;
	const char *step;
} Timer;

static void
fire(void *arg)
{
	Timer	   *t = arg;

	engine_fire_timer(t->run, t->step);
}

static void
fire_contained(EngineRun *run, const char *step)
{
	Timer		t = {run, step};
	ErrorData  *e;
	Datum		values[2] = {run->id, CStringGetTextDatum(step)};
	StringInfoData err;

	if (engine_try(fire, &t, &e))
		return;
	ereport(WARNING,
			(errmsg("orchestrator: timer \"%s\" of run %s failed in the dispatcher: %s", step,
					DatumGetCString(DirectFunctionCall1(uuid_out, run->id)), e->message)));
	/* the subtransaction's changes to the run are gone: read it again */
	if (!engine_read_run(run->id, run))
		return;
	if (step[0] == '@')
	{
		engine_stmt(S_DEQUEUE, NULL, values, NULL);
		return;
	}
	initStringInfo(&err);
	appendStringInfoString(&err, "{\"message\": ");
	escape_json(&err, e->message ? e->message : "");
	appendStringInfo(&err, ", \"sqlstate\": \"%s\", \"internal\": true}",
					 unpack_sql_state(e->sqlerrcode));
	engine_attempt_failed(run, step, DirectFunctionCall1(jsonb_in, CStringGetDatum(err.data)),
						  false, (Datum) 0, true);
}

typedef struct DispatchPass
{
	int			max_steps;
	int			processed;
	bool		has_next_wake;
	TimestampTz next_wake;
} DispatchPass;

static void
dispatch_work(void *arg)
{
	DispatchPass *pass = arg;
	MemoryContext item_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator timer",
													   ALLOCSET_DEFAULT_SIZES);
	EngineClaim *claimed;
	uint64		n;

	n = engine_claim("@timer", pass->max_steps, (Datum) 0, &claimed);
	for (uint64 i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(item_context);
		EngineRun	run;

		if (engine_lock_run(UUIDPGetDatum(&claimed[i].run_id), NULL, true, &run))
		{
			if (claimed[i].leased)
				engine_lease_expired(&run, claimed[i].step, claimed[i].worker);
			else
				fire_contained(&run, claimed[i].step);
			pass->processed++;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(item_context);
	}

	if (pass->processed < pass->max_steps)
	{
		Datum		values[1] = {Int32GetDatum(pass->max_steps - pass->processed)};
		EngineClaim *expired;
		TupleDesc	desc;

		n = engine_stmt(S_EXPIRED_LEASES, NULL, values, NULL);
		desc = SPI_tuptable->tupdesc;
		expired = palloc0(sizeof(EngineClaim) * Max(n, 1));
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			memcpy(&expired[i].run_id,
				   DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], desc, SPI_fnumber(desc, "run_id"), &isnull)),
				   sizeof(pg_uuid_t));
			expired[i].step = SPI_getvalue(SPI_tuptable->vals[i], desc, SPI_fnumber(desc, "step"));
			expired[i].worker = SPI_getvalue(SPI_tuptable->vals[i], desc, SPI_fnumber(desc, "worker"));
		}
		engine_rows_done();
		for (uint64 i = 0; i < n; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(item_context);
			EngineRun	run;

			if (engine_lock_run(UUIDPGetDatum(&expired[i].run_id), NULL, true, &run))
			{
				engine_lease_expired(&run, expired[i].step, expired[i].worker);
				pass->processed++;
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(item_context);
		}
	}

	/* queued runs that fit now (admission.c) */
	if (admission_queued_runs(pass->processed == 0))
		engine_admit_waiting(&(AdmitWhere) {.all = true});

	if (pass->processed == 0)
	{
		Datum		ahead[1] = {Int32GetDatum(orchestrator_partitions_ahead)};
		bool		exists;
		bool		isnull;
		Datum		d;

		/*
		 * Idle: keep orchestrator.partitions_ahead days of partitions ahead
		 * (a lookup of one name), even where maintain() is not scheduled.
		 */
		engine_stmt(S_PARTITION_AHEAD, NULL, ahead, NULL);
		exists = engine_col_bool("exist");
		engine_rows_done();
		if (!exists)
		{
			engine_stmt(S_CREATE_PARTITIONS, NULL, ahead, NULL);
			engine_rows_done();
		}
		engine_stmt(S_NEXT_WAKE, NULL, NULL, NULL);
		d = engine_col("next_wake", &isnull);
		orchestrator_sql_steps_waiting = engine_col_bool("sql_waiting");
		engine_rows_done();
		pass->has_next_wake = !isnull;
		if (!isnull)
		{
			/*
			 * Work that is due but locked belongs to another dispatcher's
			 * open transaction: look again shortly rather than spin.
			 */
			TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 20);

			pass->next_wake = Max(DatumGetTimestampTz(d), soon);
		}
	}
}

/*
 * _dispatch(max_steps, OUT processed, OUT next_wake)
 *		One dispatcher pass after the sql steps: timers and expired leases.
 *		Returns how many items it processed and when the next timer, retry
 *		or lease expiry is due (NULL: nothing is scheduled).
 */
Datum
orchestrator_dispatch(PG_FUNCTION_ARGS)
{
	DispatchPass pass = {0};
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	pass.max_steps = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	if (pass.max_steps > 0)
		engine_unit(dispatch_work, &pass);
	values[0] = Int32GetDatum(pass.processed);
	values[1] = TimestampTzGetDatum(pass.next_wake);
	nulls[1] = !pass.has_next_wake;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ----------------------------------------------------------------
 * Admission limits (admission.c keeps them; queued runs are admitted here)
 * ---------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(orchestrator_admission_configure);
PG_FUNCTION_INFO_V1(orchestrator_admission_sweep);

typedef struct Configure
{
	char	   *scope;
	char	   *key;
	int32		limit;
} Configure;

static void
configure_work(void *arg)
{
	Configure  *c = arg;
	AdmitWhere	where;

	admission_configure(c->scope, c->key, c->limit, &where);
	/* a raised or removed limit lets queued runs in */
	engine_admit_waiting(&where);
}

/*
 * orchestrator._admission_configure(scope text, key text, max_active integer)
 *		Set (NULL or 0: remove) the limit of a workflow or tenant scope; the
 *		caller checked the right.  A new limit counts the scope's active
 *		runs; queued runs that now fit are admitted.
 */
Datum
orchestrator_admission_configure(PG_FUNCTION_ARGS)
{
	Configure	c;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scope and key must not be null")));
	c.scope = text_to_cstring(PG_GETARG_TEXT_PP(0));
	c.key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	c.limit = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
	if (strcmp(c.scope, "workflow") != 0 && strcmp(c.scope, "tenant") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown admission scope \"%s\"", c.scope)));
	engine_unit(configure_work, &c);
	PG_RETURN_VOID();
}

static void
sweep_work(void *arg)
{
	engine_admit_waiting(&(AdmitWhere) {.all = true});
}

/*
 * orchestrator._admission_sweep(): admit the queued runs that fit (what
 * the dispatchers' pass does), for tests and operators.
 */
Datum
orchestrator_admission_sweep(PG_FUNCTION_ARGS)
{
	engine_unit(sweep_work, NULL);
	PG_RETURN_VOID();
}

/*
 * orchestrator._step_succeeded(), _emit(), _attempt_failed() and _notify() of
 * versions 0.3 and before: the install scripts of released versions name them, so
 * the library keeps the symbols (creating those versions, to update them,
 * must work); the API refuses their schema.
 */
static Datum
refuse_old_schema(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the orchestrator extension must be updated before it can be used"),
			 errhint("Run ALTER EXTENSION orchestrator UPDATE in this database.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(orchestrator_step_succeeded);
PG_FUNCTION_INFO_V1(orchestrator_emit);
PG_FUNCTION_INFO_V1(orchestrator_attempt_failed);
PG_FUNCTION_INFO_V1(orchestrator_notify_sql);

Datum
orchestrator_step_succeeded(PG_FUNCTION_ARGS)
{
	return refuse_old_schema();
}

Datum
orchestrator_emit(PG_FUNCTION_ARGS)
{
	return refuse_old_schema();
}

Datum
orchestrator_attempt_failed(PG_FUNCTION_ARGS)
{
	return refuse_old_schema();
}

Datum
orchestrator_notify_sql(PG_FUNCTION_ARGS)
{
	return refuse_old_schema();
}
