/*-------------------------------------------------------------------------
 *
 * run_api.c
 *	  The API's transitions of a whole run: cancel_workflow() and
 *	  retry_run() (resume), and the run lock they (and signal_workflow())
 *	  take for the caller.
 *
 * Each is one unit of work on the run's partitions (engine_unit()): the run
 * is locked and checked here, then the transitions of engine.c are called
 * directly, with the run they keep current.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "admission.h"
#include "caller.h"
#include "engine.h"
#include "rights.h"

PG_FUNCTION_INFO_V1(orchestrator_api_cancel_workflow);
PG_FUNCTION_INFO_V1(orchestrator_api_retry_run);

/* The caller, as to_jsonb(_caller()) writes it: a JSON string. */
static void
append_caller_json(StringInfo s)
{
	escape_json(s, DatumGetCString(DirectFunctionCall1(regroleout,
													   ObjectIdGetDatum(orchestrator_current_caller()))));
}

/*
 * engine_lock_visible_run
 *		Lock a run for a transition the caller asks for (waiting for the
 *		lock).  22004 for a NULL id; 42704 when it does not exist or the
 *		caller may not see it: the two are indistinguishable on purpose.
 */
void
engine_lock_visible_run(Datum run_id, bool run_id_isnull, EngineRun *run)
{
	bool		visible = false;

	if (run_id_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id must not be null")));
	if (engine_lock_run(run_id, NULL, false, run))
	{
		Datum		values[1] = {run_id};

		if (engine_stmt(S_RUN_VISIBLE, &run->leaves, values, NULL) == 1)
			visible = engine_col_bool("visible");
		engine_rows_done();
	}
	if (!visible)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow run %s does not exist", engine_uuid_text(run_id)),
				 errhint("Runs are visible to the role that started them, to the owner of their workflow and to members of orchestrator_admin.")));
}

/* ----------------------------------------------------------------
 * cancel_workflow
 * ---------------------------------------------------------------- */

typedef struct Cancel
{
	Datum		run_id;
	bool		run_id_isnull;
	char	   *reason;			/* or NULL */
	bool		cancelled;
} Cancel;

static void
cancel_work(void *arg)
{
	Cancel	   *c = arg;
	EngineRun	run;
	StringInfoData e;

	engine_lock_visible_run(c->run_id, c->run_id_isnull, &run);
	if (!engine_run_active(&run) && run.status != RUN_QUEUED && run.status != RUN_COMPENSATING)
		return;
	/* {"by": caller, "reason": reason (when given)} */
	initStringInfo(&e);
	appendStringInfoString(&e, "{\"by\": ");
	append_caller_json(&e);
	if (c->reason != NULL)
	{
		appendStringInfoString(&e, ", \"reason\": ");
		escape_json(&e, c->reason);
	}
	appendStringInfoChar(&e, '}');
	engine_run_finish(&run, RUN_CANCELLED, DirectFunctionCall1(jsonb_in, CStringGetDatum(e.data)), false);
	c->cancelled = true;
}

/*
 * orchestrator_api_cancel_workflow
 *		_api_cancel_workflow(run_id, reason): true when the run was active
 *		(queued, pending, running, compensating) and is cancelled now; false
 *		when it had ended.
 */
Datum
orchestrator_api_cancel_workflow(PG_FUNCTION_ARGS)
{
	Cancel		c;

	c.run_id_isnull = PG_ARGISNULL(0);
	c.run_id = c.run_id_isnull ? (Datum) 0 : PG_GETARG_DATUM(0);
	c.reason = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	c.cancelled = false;
	engine_unit(cancel_work, &c);
	PG_RETURN_BOOL(c.cancelled);
}

/* ----------------------------------------------------------------
 * retry_run: resume a failed or cancelled run
 * ---------------------------------------------------------------- */

/*
 * Resume a failed or cancelled run after its cause was fixed.  Succeeded
 * and skipped steps keep their results and are not run again; every other
 * step (failed, dead, or cancelled by the run's end, whether it had started
 * or not) is to do again: it waits for its dependencies that are still to
 * do, with deps_open counted afresh, and the steps with none left are made
 * ready as when the run started.  A retried step keeps its attempt count
 * (the history numbers attempts on), and attempt_base records where its
 * fresh max_attempts tries begin (engine_attempt_failed() counts from
 * there).  Elements of a for_each step are redone by their step: its
 * fan-out keeps the elements that succeeded.
 */
typedef struct Resume
{
	Datum		run_id;
	bool		run_id_isnull;
	bool		has_steps;		/* steps named (else every failed one) */
	char	  **steps;			/* NULL elements for NULL names */
	int			nsteps;
	bool		resumed;
} Resume;

/* A step of the run (not an element), as the resume reads it. */
typedef struct RunStep
{
	char	   *step;
	char	   *status;
	int32		attempt;
	bool		redo;			/* not succeeded, not skipped */
} RunStep;

static RunStep *
find_step(RunStep *steps, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(steps[i].step, name) == 0)
			return &steps[i];
	return NULL;
}

static bool
named(Resume *r, const char *step)
{
	for (int i = 0; i < r->nsteps; i++)
		if (r->steps[i] != NULL && strcmp(r->steps[i], step) == 0)
			return true;
	return false;
}

/* The steps named must be steps of the run still to do, and every failed one. */
static void
check_named_steps(Resume *r, EngineRun *run, RunStep *steps, int n)
{
	char	   *id = engine_uuid_text(run->id);

	for (int i = 0; i < r->nsteps; i++)
		if (r->steps[i] == NULL || find_step(steps, n, r->steps[i]) == NULL)
		{
			StringInfoData all;

			initStringInfo(&all);
			for (int j = 0; j < n; j++)
				appendStringInfo(&all, "%s%s", j > 0 ? ", " : "", steps[j].step);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("workflow run %s has no step %s", id,
							r->steps[i] ? quote_literal_cstr(r->steps[i]) : "NULL"),
					 errdetail("Its steps are: %s.", all.data),
					 errhint("Name the failed steps to retry, or pass NULL to retry every failed step.")));
		}
	for (int i = 0; i < r->nsteps; i++)
	{
		RunStep    *s = find_step(steps, n, r->steps[i]);

		if (!s->redo)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %s of workflow run %s is %s, not failed",
							quote_literal_cstr(s->step), id, s->status),
					 errdetail("A resumed run keeps the results of its succeeded and skipped steps."),
					 errhint("Name only failed, dead or cancelled steps.")));
	}
	/* a run cannot go on past a failed step that stays failed */
	for (int i = 0; i < n; i++)
		if ((strcmp(steps[i].status, "failed") == 0 || strcmp(steps[i].status, "dead") == 0) &&
			!named(r, steps[i].step))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("step %s of workflow run %s failed and is not named",
							quote_literal_cstr(steps[i].step), id),
					 errdetail("A run cannot continue while one of its steps stays failed."),
					 errhint("Name every failed or dead step, or pass NULL to retry them all.")));
}

static void
resume_work(void *arg)
{
	Resume	   *r = arg;
	EngineRun	run;
	Datum		values[4];
	bool		isnull;
	RunStep    *steps;
	int			n;
	Datum	   *redo;
	int			nredo = 0;
	StringInfoData data;
	bool		first;

	engine_lock_visible_run(r->run_id, r->run_id_isnull, &run);
	if (run.status == RUN_COMPENSATING)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow run %s is compensating and cannot be resumed", engine_uuid_text(run.id)),
				 errdetail("Its failed steps are being undone by their compensations."),
				 errhint("Start a new run once the compensations are done.")));
	if (run.status != RUN_FAILED && run.status != RUN_CANCELLED)
		return;

	/*
	 * Resuming runs the owner's steps again, as starting does: seeing the
	 * run is not enough (a role whose "start" grant was revoked sees the
	 * runs it started).
	 */
	if (!caller_workflow_right(run.name, "start"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to resume a run of workflow \"%s\"", run.name),
				 errdetail("Resuming a run needs the right to start its workflow: its owner, roles granted \"start\", members of orchestrator_admin."),
				 errhint("The owner can run: SELECT orchestrator.grant_workflow(%s, %s);",
						 quote_literal_cstr(run.name),
						 quote_literal_cstr(DatumGetCString(DirectFunctionCall1(regroleout,
																				ObjectIdGetDatum(orchestrator_current_caller())))))));

	values[0] = run.id;
	values[1] = CStringGetTextDatum(run.name);
	values[2] = Int32GetDatum(run.version);
	engine_stmt(S_RESUME_COMPENSATED, &run.leaves, values, NULL);
	if (engine_col_bool("compensated"))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("workflow run %s was compensated and cannot be resumed", engine_uuid_text(run.id)),
				 errdetail("Its failure started the compensations of its succeeded steps: what they did was undone."),
				 errhint("Start a new run.")));
	engine_rows_done();
	if (run.has_deadline && run.deadline <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the deadline of workflow run %s has passed", engine_uuid_text(run.id)),
				 errdetail("Its deadline was %s.",
						   DatumGetCString(DirectFunctionCall1(timestamptz_out,
															   TimestampTzGetDatum(run.deadline)))),
				 errhint("A resumed run keeps its deadline; start a new run with a later one.")));

	/* every step that did not succeed and was not skipped is to do again */
	n = (int) engine_stmt(S_RESUME_STEPS_READ, &run.leaves, values, NULL);
	steps = palloc(sizeof(RunStep) * Max(n, 1));
	redo = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		steps[i].step = TextDatumGetCString(engine_col_at(i, "step", &isnull));
		steps[i].status = TextDatumGetCString(engine_col_at(i, "status", &isnull));
		steps[i].attempt = DatumGetInt32(engine_col_at(i, "attempt", &isnull));
		steps[i].redo = strcmp(steps[i].status, "succeeded") != 0 &&
			strcmp(steps[i].status, "skipped") != 0;
		if (steps[i].redo)
			redo[nredo++] = CStringGetTextDatum(steps[i].step);
	}
	engine_rows_done();
	if (r->has_steps)
		check_named_steps(r, &run, steps, n);

	engine_stmt(S_RESUME_RUN, &run.leaves, values, NULL);
	run.status = run_status_from_name(engine_col_text("status"));
	engine_rows_done();

	/* workflow.resumed: the steps that get a new attempt (those that had started) */
	initStringInfo(&data);
	appendStringInfoString(&data, "{\"by\": ");
	append_caller_json(&data);
	appendStringInfoString(&data, ", \"steps\": [");
	first = true;
	for (int i = 0; i < n; i++)
		if (steps[i].redo && steps[i].attempt > 0)
		{
			if (!first)
				appendStringInfoString(&data, ", ");
			escape_json(&data, steps[i].step);
			first = false;
		}
	appendStringInfoString(&data, "]}");
	engine_emit(&run, "workflow.resumed", NULL, data.data);

	/*
	 * Active again: it takes admission slots like a start, or waits queued
	 * (then no step is made ready below; its admission does that).
	 */
	admission_resumed(&run);
	if (run.has_deadline)
		engine_enqueue(&run, "@deadline", "@timer", run.deadline);

	values[3] = PointerGetDatum(construct_array(redo, nredo, TEXTOID, -1, false, TYPALIGN_INT));
	engine_stmt(S_RESUME_STEPS, &run.leaves, values, NULL);

	/* in position order; making a step ready may end the run (a sleep whose "until" is no time) */
	for (int i = 0; i < n && engine_run_active(&run); i++)
	{
		Datum		s[2] = {run.id, CStringGetTextDatum(steps[i].step)};
		bool		free_now;

		if (!steps[i].redo)
			continue;
		free_now = engine_stmt(S_STEP_FREE, &run.leaves, s, NULL) == 1 && engine_col_bool("free");
		engine_rows_done();
		if (free_now)
			engine_step_ready(&run, steps[i].step);
	}
	r->resumed = true;
}

/*
 * orchestrator_api_retry_run
 *		_api_retry_run(run_id, steps): true when the failed or cancelled run
 *		is resumed; false when it is of another status (queued, pending,
 *		running, succeeded).
 */
Datum
orchestrator_api_retry_run(PG_FUNCTION_ARGS)
{
	Resume		r;

	memset(&r, 0, sizeof(r));
	r.run_id_isnull = PG_ARGISNULL(0);
	r.run_id = r.run_id_isnull ? (Datum) 0 : PG_GETARG_DATUM(0);
	r.has_steps = !PG_ARGISNULL(1);
	if (r.has_steps)
	{
		Datum	   *elems;
		bool	   *nulls;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &r.nsteps);
		r.steps = palloc(sizeof(char *) * Max(r.nsteps, 1));
		for (int i = 0; i < r.nsteps; i++)
			r.steps[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	}
	engine_unit(resume_work, &r);
	PG_RETURN_BOOL(r.resumed);
}
