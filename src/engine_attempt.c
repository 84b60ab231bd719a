/*-------------------------------------------------------------------------
 *
 * engine_attempt.c
 *	  A step's attempt starts (ready -> running): by the engine itself (a
 *	  sleep, a wait, a fan-out, a child run: engine_step_started()), claimed
 *	  by an external worker with a lease, or a batch claimed by a
 *	  dispatcher.  Counted, timed, announced; the run starts with its first
 *	  step.  Calls no other transition: the transitions of engine.c and
 *	  the entry points above call these.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "defcache.h"
#include "engine_attempt.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_run.h"
#include "engine_stmt.h"
#include "history.h"
#include "metrics.h"
#include "run_rows.h"

/*
 * engine_step_started
 *		A step starts an attempt: counted, timed, announced; the run becomes
 *		running at its first step.  Returns the attempt's number.
 */
int32
engine_step_started(EngineRun *run, const char *step, const char *worker)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(step), worker ? CStringGetTextDatum(worker) : (Datum) 0};
	char		nulls[3] = {' ', ' ', worker ? ' ' : 'n'};
	int32		attempt;

	engine_run_started(run);
	if (engine_stmt(S_STEP_STARTED, &run->leaves, values, nulls) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow run %s has no step \"%s\"", engine_uuid_text(run->id), step)));
	attempt = engine_col_int32("attempt");
	engine_rows_done();
	engine_step_started_event(run, step, attempt, worker);
	return attempt;
}

/*
 * engine_step_claimed
 *		An external worker claimed a step: the attempt starts, and the queue
 *		row carries the lease.  Returns the attempt and the step's input, and
 *		when the attempt ends (its "timeout" after the claim; DT_NOEND
 *		without one): the lease never outlasts that, whatever heartbeats
 *		ask, so the token stops being accepted then.  queue_tid: where the
 *		claim found (and locked) the queue row, when known.
 */
int32
engine_step_claimed(EngineRun *run, const char *step, const char *worker,
					Datum lease_token, Datum lease, Datum *input, bool *input_isnull,
					TimestampTz *attempt_end, ItemPointer queue_tid)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	StepRowClaimed row;

	engine_run_started(run);
	if (!step_row_claimed(run, step, worker, def->timeout, !(def->found && !def->timeout_isnull), &row))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("step \"%s\" of a claimed queue row does not exist", step)));
	*input = row.input;
	*input_isnull = row.input_isnull;
	*attempt_end = row.attempt_end;

	engine_emit_step_event(run, false, "step.started", step,
						   engine_step_started_data(row.times.attempt, worker), false, &row.times);

	queue_row_lease(run->id, step, lease_token, lease,
					worker, row.attempt_end, queue_tid);
	return row.times.attempt;
}

/*
 * engine_extend_lease
 *		heartbeat_step: the lease of a claimed step (its token checked, the
 *		run locked) runs on from now, by a new length or the one it has; no
 *		further than the end of the attempt (its "timeout" after the claim).
 */
void
engine_extend_lease(EngineRun *run, const char *step, Datum lease, bool lease_isnull)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	Datum		values[4] = {run->id, CStringGetTextDatum(step), lease, def->timeout};
	char		nulls[4] = {' ', ' ', lease_isnull ? 'n' : ' ',
	def->found && !def->timeout_isnull ? ' ' : 'n'};

	engine_stmt(S_EXTEND_LEASE, &run->leaves, values, nulls);
}

/*
 * engine_take_leased
 *		Is the lease token still the one of the step's queue row, and
 *		unexpired (the run is locked and active)?  Then the row is deleted
 *		(the first thing engine_record_success() does).
 */
bool
engine_take_leased(EngineRun *run, const char *step, Datum lease_token)
{
	return queue_row_take_leased(run->id, step, lease_token);
}

/* ----------------------------------------------------------------
 * Batches of claimed steps
 *
 * A dispatcher's HTTP claim (http_claim.c) starts the attempts of many
 * steps at once, with the same effect as engine_step_started() above: the rows through the
 * access methods (run_rows.c), the events of a row appended together.
 * ---------------------------------------------------------------- */


/*
 * engine_steps_started
 *		Claimed queue rows (run_ids[i], steps[i]) of runs in one partition
 *		set start an attempt each, as engine_lock_run_to_start() and
 *		engine_step_started() would one at a time: the run is locked
 *		(started[i] false for a run another transaction holds, or one that
 *		is gone), a pending one starts, the step's attempt is counted, held
 *		by "worker", through the access methods (run_row_lock(),
 *		step_row_claimed()); in the order given, each row's workflow.started
 *		(the first row of a run that started here) and step.started are
 *		appended, announced and counted.  runs[i] is the row's run (its
 *		"attempt" the one before); inputs[i] the step's input.  Each row is
 *		worked in a memory context reset after it (what the caller gets is
 *		copied out): a claim of hundreds of rows would otherwise grow the
 *		unit's memory by megabytes, fresh pages the kernel zeroes for every
 *		claim.
 */
void
engine_steps_started(const RunLeaves *leaves, int n, const Datum *run_ids, char *const *steps,
					 const char *worker, bool *started, EngineRun *runs, Datum *inputs,
					 bool *inputs_isnull)
{
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext row_context = AllocSetContextCreate(outer, "orchestrator steps started",
													  ALLOCSET_DEFAULT_SIZES);
	bool	   *tried = palloc0(sizeof(bool) * Max(n, 1));

	memset(started, 0, sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		EngineRun  *run = &runs[i];
		RunRowLocked row;
		StepRowClaimed step;
		HistoryEvent ev[2];
		int			nev = 0;
		int			same = -1;
		int64		seq;

		/* a run of an earlier row of the claim is locked (and running) already */
		for (int k = 0; k < i && same < 0; k++)
			if (tried[k] && memcmp(DatumGetUUIDP(run_ids[k]), DatumGetUUIDP(run_ids[i]), UUID_LEN) == 0)
				same = k;
		tried[i] = true;
		memset(run, 0, sizeof(EngineRun));
		if (same >= 0 && !started[same])
			continue;
		MemoryContextSwitchTo(row_context);
		if (same >= 0)
		{
			*run = runs[same];
			row.started = false;
		}
		else
		{
			run->id = run_ids[i];
			run->leaves = *leaves;
			if (!run_row_lock(run, NULL, RUN_LOCK_SKIP, true, &row))
			{
				MemoryContextSwitchTo(outer);
				MemoryContextReset(row_context);
				continue;
			}
			engine_run_from_row(run, &row);
			/* what the caller keeps */
			run->name = MemoryContextStrdup(outer, row.name);
			run->trace_id = row.trace_id ? MemoryContextStrdup(outer, row.trace_id) : NULL;
			run->trace_parent = row.trace_parent ? MemoryContextStrdup(outer, row.trace_parent) : NULL;
		}
		if (!step_row_claimed(run, steps[i], worker, (Datum) 0, true, &step))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("workflow run %s has no step \"%s\"", engine_uuid_text(run_ids[i]), steps[i])));
		run->attempt = step.times.attempt - 1;
		inputs_isnull[i] = step.input_isnull;
		inputs[i] = (Datum) 0;
		if (!step.input_isnull)
		{
			MemoryContextSwitchTo(outer);
			inputs[i] = datumCopy(step.input, false, -1);
			MemoryContextSwitchTo(row_context);
		}
		started[i] = true;

		/* the run's workflow.started comes before its first step.started */
		if (row.started)
		{
			ev[nev].type = "workflow.started";
			ev[nev].step = NULL;
			ev[nev].at = row.started_at;
			ev[nev].data = engine_empty_object();
			nev++;
		}
		ev[nev].type = "step.started";
		ev[nev].step = steps[i];
		ev[nev].at = GetCurrentTimestamp();
		ev[nev].data = engine_step_started_data(step.times.attempt, worker);
		nev++;
		seq = history_append(run->leaves.events, run->id, nev, ev);
		for (int k = 0; k < nev; k++)
		{
			const char *type = ev[k].type;

			/* step.started is counted, from what its row said */
			if (ev[k].step != NULL && orchestrator_metrics_counts(type))
			{
				MetricsEvent e;

				memset(&e, 0, sizeof(e));
				e.type = type;
				e.run_id = engine_uuid_text(run->id);
				e.workflow = run->name;
				e.step = ev[k].step;
				e.kind = step.times.kind;
				e.started_at = step.times.started_at;
				e.ready_at = step.times.ready_at;
				e.at = ev[k].at;
				e.attempt = step.times.attempt;
				e.trace_id = run->trace_id;
				e.trace_parent = run->trace_parent;
				orchestrator_metrics_event(&e);
			}
			engine_announce_event(run, seq + k, CStringGetTextDatum(type), type, ev[k].step, ev[k].data);
		}
		MemoryContextSwitchTo(outer);
		MemoryContextReset(row_context);
	}
	MemoryContextDelete(row_context);
}
