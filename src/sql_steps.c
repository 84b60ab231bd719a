/*-------------------------------------------------------------------------
 *
 * sql_steps.c
 *	  The dispatcher's batch of sql steps: claim, run, record.
 *
 * Each claimed sql step whose run is locked is run here, and its
 * transitions recorded by engine.c; steps the hot path does not handle
 * (templates in their arguments, compensations, runs that are no longer
 * going, a dropped owner) are run by the PL/pgSQL engine (_exec_sql_step()).
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
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "engine.h"
#include "executor.h"
#include "guc.h"
#include "journal.h"
#include "sql_steps.h"

/*
 * run_in_subtransaction
 *		Execute the step's statement in a subtransaction.  On success
 *		returns true with the result; on error the subtransaction is rolled
 *		back and the error returned in *error.
 */
static bool
run_in_subtransaction(Oid owner, StepDef *def, Datum *result, bool *result_isnull,
					  ErrorData **error)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner_before = CurrentResourceOwner;
	volatile bool ok = true;
	int			nargs = 0;
	Datum	   *args = NULL;
	char	   *argnulls = NULL;

	if (!def->args_isnull)
		orchestrator_sql_step_args(DatumGetArrayTypeP(def->args), &nargs, &args, &argnulls);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		*result = orchestrator_execute_sql_step(owner, def->sql, nargs, args, argnulls,
												def->timeout_ms, result_isnull);
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

/*
 * run_one
 *		Run one claimed sql step whose run is locked.
 */
static void
run_one(EngineClaim *claim, EngineRun *run)
{
	StepDef    *def;
	Oid			owner;
	TimestampTz started_at;
	int64		started_seq;
	int64		seq;
	Datum		result;
	bool		result_isnull;
	ErrorData  *error = NULL;

	def = engine_step_def(run->name, run->version, claim->step);
	owner = def->plain_sql && SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run->owner))
		? run->owner : InvalidOid;
	if (!def->plain_sql || def->sql == NULL || !OidIsValid(owner) || !engine_run_active(run))
	{
		engine_slow_exec_sql_step(run, claim->step);
		return;
	}

	engine_run_started(run);
	started_at = GetCurrentTimestamp();
	started_seq = engine_step_started_event(run, claim->step, run->attempt + 1, "dispatcher");

	if (!run_in_subtransaction(owner, def, &result, &result_isnull, &error))
	{
		engine_sql_attempt_failed(run, claim->step, started_at, error);
		FreeErrorData(error);
		return;
	}

	seq = engine_record_success(run, def, claim->step, result, result_isnull, &started_at, true);

	/*
	 * Events between the step's start and its result were appended by the
	 * step's own statement through the API (it signalled, cancelled or
	 * started something in this run): the run may have changed, so the rest
	 * is left to the PL/pgSQL engine, which reads everything afresh.
	 */
	engine_step_done(run, def, claim->step, seq == started_seq + 1);
}

/*
 * handle_one
 *		Run one claimed sql step whose run is locked, in hand (an error
 *		escaping it, or the death of the process, is this step's failed
 *		attempt) and under the engine's time limit.
 */
static void
handle_one(EngineClaim *claim, EngineRun *run)
{
	if (claim->leased)
	{
		/* a lease on an internal queue: its holder is gone */
		engine_lease_expired(run, claim);
		return;
	}
	orchestrator_step_begin(&claim->run_id, claim->step, run->attempt + 1);
	orchestrator_engine_guard_arm(orchestrator_engine_timeout);
	run_one(claim, run);
	orchestrator_engine_guard_disarm();
	orchestrator_step_end();
}

/* The dispatcher's batch in its unit of work. */
typedef struct SqlBatch
{
	int			max_steps;
	int			processed;
} SqlBatch;

static void
sql_batch_work(void *arg)
{
	SqlBatch   *batch = arg;
	MemoryContext step_context;
	MemoryContext oldcontext;
	EngineClaim *claimed;
	uint64		nclaimed;

	step_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator sql step",
										 ALLOCSET_DEFAULT_SIZES);
	nclaimed = engine_claim("@sql", batch->max_steps, (Datum) 0, &claimed);
	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineRun	run;

		/* a lost attempt of it waits to be recorded: leave it alone */
		if (orchestrator_step_lost_pending(&claimed[i].run_id, claimed[i].step))
			continue;

		oldcontext = MemoryContextSwitchTo(step_context);
		if (engine_lock_run(UUIDPGetDatum(&claimed[i].run_id), claimed[i].step, true, &run))
		{
			handle_one(&claimed[i], &run);
			batch->processed++;
		}
		MemoryContextSwitchTo(oldcontext);
		MemoryContextReset(step_context);
		CHECK_FOR_INTERRUPTS();
	}
	orchestrator_batch_end();
}

/*
 * orchestrator_run_sql_steps
 *		Claim up to max_steps due sql steps and run them in the current
 *		transaction.  Returns how many were processed.
 */
int
orchestrator_run_sql_steps(int max_steps)
{
	SqlBatch	batch = {max_steps, 0};

	if (max_steps <= 0)
		return 0;
	engine_unit(sql_batch_work, &batch);
	return batch.processed;
}
