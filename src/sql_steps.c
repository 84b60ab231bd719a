/*-------------------------------------------------------------------------
 *
 * sql_steps.c
 *	  The dispatcher's batch of sql steps: claim, run, record.
 *
 * Each claimed sql step (or sql compensation) whose run is locked is run
 * here as the workflow's owner, and its transitions recorded by engine.c.
 *
 * All of a batch commits together, in the dispatcher's transaction; each
 * step's statement runs in its own subtransaction, so a failing step undoes
 * only itself.  The bookkeeping stays in the top-level transaction, which
 * holds the row locks (updating them in a subtransaction would create
 * multixacts).
 *
 * An error in the bookkeeping of a step therefore aborts the whole batch.
 * Each step is taken "in hand" while it is handled (journal.c): the
 * dispatcher then records a failed attempt for that step alone, in a
 * transaction of its own, and redoes the batch without it.  No
 * subtransaction per step is needed for that (with the statement's own,
 * two per step would overflow the 64 subtransactions a snapshot caches).
 * The same key goes to the slot's journal file before the statement runs,
 * so that a step that kills its process is counted too.  The engine's own
 * work for a step runs under orchestrator.engine_timeout.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "engine.h"
#include "executor.h"
#include "guc.h"
#include "journal.h"
#include "sql_steps.h"

/* A sql step's statement, run by engine_try(). */
typedef struct Statement
{
	Oid			owner;
	StepDef    *def;
	int			nargs;
	Datum	   *args;
	char	   *argnulls;
	Datum		result;
	bool		result_isnull;
} Statement;

static void
run_statement(void *arg)
{
	Statement  *st = arg;

	st->result = orchestrator_execute_sql_step(st->owner, st->def->sql, st->nargs, st->args,
											   st->argnulls,
											   st->def->timeout_ms > 0 ? st->def->timeout_ms
											   : orchestrator_default_step_timeout,
											   &st->result_isnull);
}

/*
 * step_args
 *		The step's arguments as a jsonb[] (NULL: none), and as the JSON
 *		array recorded as its input: rendered now when they hold templates.
 */
static ArrayType *
step_args(EngineRun *run, StepDef *def, Datum *args_json)
{
	Datum		context = (Datum) 0;
	bool		context_ready = false;
	Jsonb	   *rendered;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	Datum	   *elems;
	int			n = 0;
	int			size;

	*args_json = def->args_json;
	if (!def->args_isnull)
		return DatumGetArrayTypeP(def->args);
	*args_json = engine_render_step(run, def, def->args_json, &context, &context_ready);
	rendered = DatumGetJsonbP(*args_json);
	if (!JB_ROOT_IS_ARRAY(rendered) || JB_ROOT_IS_SCALAR(rendered))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the \"args\" of sql step \"%s\" are not an array", def->step)));
	size = JB_ROOT_COUNT(rendered);
	elems = palloc(sizeof(Datum) * Max(size, 1));
	it = JsonbIteratorInit(&rendered->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (token == WJB_ELEM)
			elems[n++] = JsonbPGetDatum(JsonbValueToJsonb(&v));
	return construct_array(elems, n, JSONBOID, -1, false, TYPALIGN_INT);
}

/*
 * run_one
 *		Run one claimed sql step (or compensation) whose run is locked.
 */
static void
run_one(EngineClaim *claim, EngineRun *run, bool chained)
{
	bool		started_appended;
	bool		ok;
	StepDef    *def;
	TimestampTz started_at;
	uint64		transitions;
	Statement	st;
	ErrorData  *error = NULL;
	ArrayType  *args;
	Datum		args_json;

	def = engine_step_def(run->name, run->version, claim->step);
	if (!def->found || def->sql == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not a sql step of workflow \"%s\" version %d",
						claim->step, run->name, run->version)));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run->owner)))
	{
		engine_step_started(run, claim->step, "dispatcher");
		engine_attempt_failed(run, claim->step,
							  DirectFunctionCall1(jsonb_in, CStringGetDatum(
								  psprintf("{\"message\": \"role %u that owns workflow %s does not exist\"}",
										   run->owner, run->name))),
							  false, (Datum) 0, true);
		return;
	}
	args = step_args(run, def, &args_json);

	engine_run_started(run);
	started_at = GetCurrentTimestamp();

	/*
	 * step.started is appended with the step's outcome (one statement), or
	 * before an event the statement appends to this run through the API
	 */
	engine_defer_step_started(run, claim->step, run->attempt + 1);
	transitions = engine_transitions;
	st.owner = run->owner;
	st.def = def;
	st.nargs = 0;
	st.args = NULL;
	st.argnulls = NULL;
	if (args != NULL)
		orchestrator_sql_step_args(args, &st.nargs, &st.args, &st.argnulls);
	/* only the statement runs in the subtransaction: its error is the attempt's */
	ok = engine_try(run_statement, &st, &error);
	started_appended = !engine_take_deferred_start();
	if (!ok)
	{
		/* any step.started the statement appended was rolled back with it */
		engine_step_started_event(run, claim->step, run->attempt + 1, "dispatcher");
		engine_sql_attempt_failed(run, claim->step, started_at, error);
		FreeErrorData(error);
		return;
	}

	/*
	 * The statement appended events through the API (it signalled,
	 * cancelled or started something, maybe in this run): read the run
	 * again before going on.
	 */
	if (engine_transitions != transitions && !engine_read_run(run->id, run))
		return;
	{
		StepDef		with_args = *def;

		with_args.args_json = args_json;
		engine_sql_step_succeeded(run, &with_args, claim->step, st.result, st.result_isnull,
								  started_at, started_appended, !chained, &claim->tid);
	}
	engine_step_done(run, def);
}

/*
 * handle_one
 *		Run one claimed sql step whose run is locked, in hand (an error
 *		escaping it, or the death of the process, is this step's failed
 *		attempt) and under the engine's time limit.
 */
static void
handle_one(EngineClaim *claim, EngineRun *run, bool chained)
{
	if (claim->leased)
	{
		/* a lease on an internal queue: its holder is gone */
		engine_lease_expired(run, claim->step, claim->worker);
		return;
	}
	if (!engine_run_active(run) && run->status != RUN_COMPENSATING)
	{
		/* a run's end removes its queue rows: a leftover, let go */
		Datum		values[2] = {run->id, CStringGetTextDatum(claim->step)};

		engine_stmt(S_DEQUEUE, NULL, values, NULL);
		return;
	}
	orchestrator_step_begin(&claim->run_id, claim->step, run->attempt + 1);
	orchestrator_engine_guard_arm(orchestrator_engine_timeout);
	run_one(claim, run, chained);
	orchestrator_engine_guard_disarm();
	orchestrator_step_end();
}

/*
 * Chaining: the sql steps that a step of the batch makes ready are run at
 * once, in the same transaction, while their run is locked, instead of
 * being queued for a later batch (each would cost a queue row written,
 * claimed and deleted, and the run locked again; and the wait for the
 * next turn).  At most max_steps of them per batch; the others are
 * queued.  A step whose lost attempt came to nothing is never chained
 * (journal.c, add_unchained).
 */
typedef struct ChainedStep
{
	char	   *step;
	int32		attempt;		/* so far */
} ChainedStep;

typedef struct Chain
{
	Datum		run_id;			/* of the step being run */
	int			room;			/* how many more this batch may chain */
	int			n;
	ChainedStep *steps;			/* n of them, to run in order */
} Chain;

static Chain chain;

static bool
chain_take(EngineRun *run, const char *step, int32 attempt)
{
	if (chain.room <= 0 || !DatumGetBool(DirectFunctionCall2(uuid_eq, run->id, chain.run_id)) ||
		orchestrator_step_unchained(DatumGetUUIDP(run->id), step))
		return false;
	if (chain.steps == NULL)
		chain.steps = palloc(sizeof(ChainedStep) * chain.room);
	chain.steps[chain.n].step = pstrdup(step);
	chain.steps[chain.n].attempt = attempt;
	chain.n++;
	chain.room--;
	return true;
}

bool		orchestrator_sql_steps_waiting = false;

/* The dispatcher's batch in its unit of work. */
typedef struct SqlBatch
{
	int			max_steps;
	int			processed;
	SqlBatchNext next;			/* how many to claim next (0: commit) */
	bool		more_due;		/* the last claim got all it asked for */
} SqlBatch;

/*
 * run_chained
 *		Run the steps the last step of a run made ready (and those they make
 *		ready in turn), while the run is locked.  A step left out when the
 *		run ended meanwhile was cancelled with it.
 */
static void
run_chained(SqlBatch *batch, EngineRun *run)
{
	for (int i = 0; i < chain.n && engine_run_active(run); i++)
	{
		EngineClaim claim;

		memcpy(&claim.run_id, DatumGetUUIDP(run->id), sizeof(pg_uuid_t));
		claim.step = chain.steps[i].step;
		claim.leased = false;
		claim.worker = NULL;
		ItemPointerSetInvalid(&claim.tid);
		run->attempt = chain.steps[i].attempt;
		handle_one(&claim, run, true);
		batch->processed++;
	}
}

static void
sql_batch_work(void *arg)
{
	SqlBatch   *batch = arg;
	MemoryContext step_context;
	MemoryContext oldcontext;
	EngineClaim *claimed;
	uint64		nclaimed;
	int			asked = batch->next(0, true);
	int			total = 0;

	step_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator sql step",
										 ALLOCSET_DEFAULT_SIZES);
	chain.room = 3 * batch->max_steps;
claim:
	nclaimed = engine_claim_rolling("@sql", asked, &claimed);
	total += (int) nclaimed;
	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineRun	run;

		/* a lost attempt of it waits to be recorded: leave it alone */
		if (orchestrator_step_lost_pending(&claimed[i].run_id, claimed[i].step))
			continue;

		oldcontext = MemoryContextSwitchTo(step_context);
		if (claimed[i].leased
			? engine_lock_run(UUIDPGetDatum(&claimed[i].run_id), claimed[i].step, true, &run)
			: engine_lock_run_to_start(UUIDPGetDatum(&claimed[i].run_id), claimed[i].step, &run))
		{
			chain.run_id = run.id;
			chain.n = 0;
			chain.steps = NULL;
			engine_set_chain_hook(chain_take);
			handle_one(&claimed[i], &run, false);
			batch->processed++;
			run_chained(batch, &run);
			engine_set_chain_hook(NULL);
		}
		MemoryContextSwitchTo(oldcontext);
		MemoryContextReset(step_context);
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * A rolling batch: while the dispatcher says so (more due, or work
	 * committed meanwhile), claim again in the same transaction instead of
	 * making that work wait for this commit (the claim takes what is due
	 * by the clock: work made ready after this transaction began too).
	 */
	batch->more_due = nclaimed > 0 && (int) nclaimed == asked;
	if (nclaimed > 0 && (asked = batch->next(total, batch->more_due)) > 0)
		goto claim;
	orchestrator_batch_end();
}

/*
 * orchestrator_run_sql_steps
 *		Claim due sql steps and run them in the current transaction, as
 *		many at a time as "next" says (at most max_steps are chained), until
 *		it says 0 or a claim finds none.  Returns how many were processed;
 *		*more_due: the last claim got all it asked for (more may be due).
 */
int
orchestrator_run_sql_steps(int max_steps, SqlBatchNext next, bool *more_due)
{
	SqlBatch	batch = {max_steps, 0, next, false};

	*more_due = false;
	if (max_steps <= 0)
		return 0;
	engine_unit(sql_batch_work, &batch);
	*more_due = batch.more_due;
	return batch.processed;
}
