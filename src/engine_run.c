/*-------------------------------------------------------------------------
 *
 * engine_run.c
 *	  What the policies and the transitions do to a run without deciding
 *	  anything: claim queue rows, lock and read a run (a pending run
 *	  starts), put a step on a queue, render a template over the run's
 *	  context, its trace.  Below the policies (admission.c, rate_limit.c,
 *	  compose.c) and the transitions (engine.c); calls neither.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/md5.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "caller.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_run.h"
#include "engine_stmt.h"
#include "leaf.h"
#include "relay.h"
#include "rights.h"
#include "run_rows.h"
#include "wake.h"

/*
 * engine_claim
 *		Lock up to max_items due rows of a queue, in index order, skipping
 *		locked ones; with workflows (a text[]), only rows of those workflows.
 *		Their runs are locked one by one afterwards (engine_lock_run()).
 *		Returns how many, in *claimed (in the current memory context).
 */
uint64
engine_claim(const char *queue, int max_items, Datum workflows, EngineClaim **claimed)
{
	/* through the access methods (run_rows.c) */
	return queue_rows_claim_of(queue, max_items, workflows, claimed);
}

/*
 * engine_claim_rolling
 *		engine_claim() of an internal queue for the claims of a dispatcher's
 *		rolling batch: each goes on from where the last one of the
 *		transaction stopped instead of reading again what the transaction
 *		claimed (queue_rows_claim_rolling()).
 */
uint64
engine_claim_rolling(const char *queue, int max_items, EngineClaim **claimed)
{
	return queue_rows_claim_rolling(queue, max_items, claimed);
}

/* A run read and locked by run_row_lock(), into an EngineRun. */
void
engine_run_from_row(EngineRun *run, const RunRowLocked *row)
{
	run->status = row->status;
	run->owner = row->owner;
	run->started_by = row->started_by;
	run->name = row->name;
	run->version = row->version;
	run->priority = row->priority;
	run->has_deadline = row->has_deadline;
	run->deadline = row->deadline;
	run->attempt = row->attempt;
	run->trace_id = row->trace_id;
	run->trace_parent = row->trace_parent;
	run->admission = row->admission;
}

/*
 * load_run
 *		Read (and lock, unless RUN_LOCK_NONE) a run into *run, with the
 *		attempts so far of "step"; start: a pending run starts
 *		(workflow.started).  False when it is locked (RUN_LOCK_SKIP) or gone.
 */
static bool
load_run(RunLock lock, bool start, Datum run_id, const char *step, EngineRun *run)
{
	RunRowLocked row;

	run->id = run_id;
	if (!orchestrator_run_leaves(run_id, &run->leaves, true))
		return false;
	if (!run_row_lock(run, step, lock, start, &row))
		return false;
	engine_run_from_row(run, &row);
	if (row.started)
		engine_append_event(run, "workflow.started", NULL, row.started_at, engine_empty_object());
	return true;
}

/*
 * engine_traceparent
 *		The W3C traceparent of an attempt of a step: the run's trace (its id
 *		for runs created before 0.4), the attempt's span, the flags the run's
 *		caller sent (else sampled).  The span id is derived, not stored
 *		(_span_id()), so HTTP headers, claims and exported spans agree.
 */
char *
engine_traceparent(EngineRun *run, const char *step, int32 attempt)
{
	char	   *id = engine_uuid_text(run->id);
	char	   *seed = psprintf("%s/%s/%d", id, step ? step : "", attempt);
	char		md5[33];
	const char *errstr = NULL;
	char		trace[33];
	int			n = 0;

	if (!pg_md5_hash(seed, strlen(seed), md5, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a span id: %s", errstr ? errstr : "md5 failed")));
	if (run->trace_id)
		strlcpy(trace, run->trace_id, sizeof(trace));
	else
	{
		for (const char *c = id; *c && n < 32; c++)
			if (*c != '-')
				trace[n++] = *c;
		trace[n] = '\0';
	}
	return psprintf("00-%s-%.16s-%s", trace, md5,
					run->trace_parent && strlen(run->trace_parent) >= 2
					? run->trace_parent + strlen(run->trace_parent) - 2 : "01");
}

/*
 * engine_lock_run
 *		Lock a run (skip_locked: false at once when another transaction
 *		holds it) and read it, with the attempts so far of one of its steps
 *		(step NULL: not needed).  False when it is locked or does not exist
 *		(a run removed by retention has no partition any more either).
 */
bool
engine_lock_run(Datum run_id, const char *step, bool skip_locked, EngineRun *run)
{
	return load_run(skip_locked ? RUN_LOCK_SKIP : RUN_LOCK_WAIT, false, run_id, step, run);
}

/*
 * engine_lock_run_to_start
 *		engine_lock_run() (skipping a locked run) for a step that is about to
 *		run: a pending run starts in the same statement (engine_run_started()).
 */
bool
engine_lock_run_to_start(Datum run_id, const char *step, EngineRun *run)
{
	return load_run(RUN_LOCK_SKIP, true, run_id, step, run);
}

/* Read a run whose row the caller has locked. */
bool
engine_read_run(Datum run_id, EngineRun *run)
{
	return load_run(RUN_LOCK_NONE, false, run_id, NULL, run);
}

/* Is the run still going (pending or running)? */
bool
engine_run_active(EngineRun *run)
{
	return run->status == RUN_PENDING || run->status == RUN_RUNNING;
}

/*
 * engine_require_work_right
 *		42501 unless the caller may work external steps of the run's
 *		workflow (its owner, a role granted "work", an admin).
 */
void
engine_require_work_right(EngineRun *run)
{
	/*
	 * The owner (or a role with its privileges) first, from the run: a
	 * workflow's owner never changes, and the run keeps it.
	 */
	if (!has_privs_of_role(orchestrator_current_caller(), run->owner) &&
		!caller_workflow_right(run->name, "work"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to work steps of workflow \"%s\"", run->name),
				 errdetail("External steps are worked by the owner of their workflow, by roles it was granted to with privilege \"work\", and by members of orchestrator_admin."),
				 errhint("The owner can run: SELECT orchestrator.grant_workflow(%s, '<role>', 'work');",
						 quote_literal_cstr(run->name))));
}

/* A pending run starts with its first step. */
void
engine_run_started(EngineRun *run)
{
	RunRowLocked row;

	if (run->status != RUN_PENDING)
		return;
	engine_flush_deferred_start(run);
	if (run_row_lock(run, NULL, RUN_LOCK_NONE, true, &row) && row.started)
		engine_append_event(run, "workflow.started", NULL, row.started_at, engine_empty_object());
	run->status = RUN_RUNNING;
}

/*
 * engine_enqueue
 *		Put a step on a queue (again): internal queues wake the dispatchers
 *		at commit, external queues with due work are announced on channel
 *		orchestrator_queue.  Timers have no priority.
 */
void
engine_enqueue(EngineRun *run, const char *step, const char *queue, TimestampTz available_at)
{
	bool		timer = strcmp(queue, "@timer") == 0;

	queue_row_enqueue(run, step, queue,
					  timer ? 0 : run->priority, available_at);

	/*
	 * Work due now wakes the dispatchers for its kind (or announces its
	 * external queue).  A timer always wakes them: they learn when it is due.
	 * Sql and http work due later is found by the timer pass and the HTTP
	 * turn's next wake (a retry wakes for timers itself).
	 */
	if (timer)
		orchestrator_wake_dispatchers_at_commit(WAKE_TIMER);
	else if (available_at > GetCurrentTransactionStartTimestamp())
		return;
	else if (strcmp(queue, "@sql") == 0)
		orchestrator_wake_dispatchers_at_commit(WAKE_SQL);
	else if (strcmp(queue, "@http") == 0)
		orchestrator_wake_dispatchers_at_commit(WAKE_HTTP);
	else if (queue[0] == '@')
		orchestrator_wake_dispatchers_at_commit(WAKE_TIMER);
	else
		orchestrator_notify(RELAY_QUEUES, queue);
}

/* The run's context, which templates and conditions read (read once). */
Datum
engine_run_context(EngineRun *run, Datum *context, bool *context_ready)
{
	if (!*context_ready)
	{
		Datum		values[1] = {run->id};
		bool		isnull;

		engine_stmt(S_CONTEXT, &run->leaves, values, NULL);
		*context = engine_col("context", &isnull);
		engine_rows_done();
		*context_ready = true;
	}
	return *context;
}

/*
 * step_context
 *		The context of a step's templates: the run's, and for an element of
 *		a for_each step also $.item and $.index (read once).
 */
static Datum
step_context(EngineRun *run, StepDef *def, Datum *context, bool *context_ready)
{
	if (def == NULL || def->element_of == NULL)
		return engine_run_context(run, context, context_ready);
	if (!*context_ready)
	{
		Datum		values[2] = {run->id, CStringGetTextDatum(def->step)};
		bool		isnull;

		engine_stmt(S_CONTEXT_ITEM, &run->leaves, values, NULL);
		*context = engine_col("context", &isnull);
		engine_rows_done();
		*context_ready = true;
	}
	return *context;
}

/*
 * render_over
 *		A template with every {"$path": "<jsonpath>"} replaced by the first
 *		match of the path over a context (JSON null where nothing matches).
 */
static Datum
render_over(Datum template, Datum context)
{
	Datum		values[2] = {template, context};
	bool		isnull;
	Datum		rendered;

	engine_stmt(S_RENDER, NULL, values, NULL);
	rendered = engine_col("rendered", &isnull);
	engine_rows_done();
	return isnull ? engine_jsonb("null") : rendered;
}

/*
 * engine_render_step
 *		A template of a step with every {"$path": "<jsonpath>"} replaced by
 *		the first match of the path over the step's context.
 */
Datum
engine_render_step(EngineRun *run, StepDef *def, Datum template, Datum *context, bool *context_ready)
{
	return render_over(template, step_context(run, def, context, context_ready));
}

/*
 * engine_render
 *		A template with every {"$path": "<jsonpath>"} replaced by the first
 *		match of the path over the run's context.
 */
Datum
engine_render(EngineRun *run, Datum template, Datum *context, bool *context_ready)
{
	return render_over(template, engine_run_context(run, context, context_ready));
}

/*
 * engine_lock_runs
 *		The runs of rows (run_ids[i], steps[i]) in one partition set,
 *		locked (waiting for them, in the order given: the caller's is that
 *		of their ids) and read as engine_lock_run() does, with the attempts
 *		so far of each row's step (steps[i] NULL: not read, 0): runs[i],
 *		found[i] (false: the run is gone).
 */
void
engine_lock_runs(const RunLeaves *leaves, int n, const Datum *run_ids, char *const *steps,
				 bool *found, EngineRun *runs)
{
	for (int i = 0; i < n; i++)
	{
		EngineRun  *run = &runs[i];
		RunRowLocked row;

		memset(run, 0, sizeof(EngineRun));
		run->id = run_ids[i];
		run->leaves = *leaves;
		found[i] = run_row_lock(run, steps[i], RUN_LOCK_WAIT, false, &row);
		if (found[i])
			engine_run_from_row(run, &row);
	}
}
