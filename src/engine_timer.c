/*-------------------------------------------------------------------------
 *
 * engine_timer.c
 *	  The transitions a due timer makes: a run's deadline passes, a sleep
 *	  ends, a wait times out, a rate-limited step's token is due, a step of
 *	  kind workflow starts its child run or learns that it ended, a child
 *	  is cancelled because its parent ended.  On top of the transitions of
 *	  engine.c, which never call back up here: what a child run or a parent
 *	  has to say to the other is handed over as a timer row (compose.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "admission.h"
#include "engine.h"
#include "engine_timer.h"
#include "lookup_cache.h"
#include "quota.h"
#include "rights.h"

extern Datum orchestrator_uuid_v7(PG_FUNCTION_ARGS);

/* The most runs in a chain of parents and children. */
#define MAX_NESTING 32

/* ----------------------------------------------------------------
 * Child runs
 * ---------------------------------------------------------------- */

/* What starting a child needs, and what it gives. */
typedef struct ChildStart
{
	EngineRun  *run;
	StepDef    *def;
	int32		attempt;
	bool		retryable;		/* when it fails */
	pg_uuid_t	child;
	int32		version;
} ChildStart;

static void
child_error(int code, const char *message, const char *detail)
{
	ereport(ERROR, (errcode(code), errmsg("%s", message), detail ? errdetail("%s", detail) : 0));
}

/*
 * start_child
 *		Start the child run of a step's attempt, as the parent's owner would
 *		with start_workflow(): the same right to start it, the owner's
 *		limits, the parent's tenant and priority, a deadline no later than
 *		the parent's (and the step's "timeout" from now, if any).  Runs in a
 *		subtransaction (engine_try()): an error is the attempt's.
 */
static void
start_child_work(void *arg)
{
	ChildStart *c = arg;
	EngineRun  *run = c->run;
	StepDef    *def = c->def;
	EngineRun	child;
	Datum		values[4];
	bool		isnull;
	Datum		input;
	char	   *tenant = NULL;

	memset(&child, 0, sizeof(child));

	/* the workflow and version, as start_workflow() finds them */
	values[0] = CStringGetTextDatum(def->child_workflow);
	c->retryable = false;
	if (!lookup_workflow(def->child_workflow, Max(def->child_version, 0), &child.version, &child.owner))
	{
		if (def->child_version > 0)
			child_error(ERRCODE_UNDEFINED_OBJECT,
						psprintf("workflow \"%s\" has no version %d", def->child_workflow, def->child_version), NULL);
		child_error(ERRCODE_UNDEFINED_OBJECT, psprintf("workflow \"%s\" is not defined", def->child_workflow), NULL);
	}
	c->version = child.version;

	/* started by the parent's owner: its right to start the workflow */
	if (child.owner != run->owner && !workflow_right(def->child_workflow, "start", run->owner))
		child_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
					psprintf("permission denied to start workflow \"%s\"", def->child_workflow),
					psprintf("Child runs are started by the owner of the parent's workflow (%s), which needs the right to start \"%s\".",
							 DatumGetCString(DirectFunctionCall1(regroleout, ObjectIdGetDatum(run->owner))),
							 def->child_workflow));

	/* a chain of children has an end */
	values[0] = run->id;
	engine_stmt(S_NESTING, NULL, values, NULL);
	if (engine_col_int32("depth") + 1 >= MAX_NESTING)
	{
		engine_rows_done();
		child_error(ERRCODE_INVALID_RECURSION,
					psprintf("child runs are nested more than %d deep", MAX_NESTING),
					"A workflow that starts itself, directly or through others, needs a condition that ends it.");
	}
	engine_rows_done();

	/* its input (rendered when the step became ready), the parent's tenant */
	values[1] = CStringGetTextDatum(def->step);
	engine_stmt(S_STEP_INPUT, &run->leaves, values, NULL);
	input = engine_col("input", &isnull);
	engine_rows_done();
	if (isnull)
		input = engine_empty_object();
	engine_stmt(S_PARENT_TENANT, &run->leaves, values, NULL);
	tenant = engine_col_text("tenant");
	engine_rows_done();

	/* the owner's limits (a full quota may have room later) */
	c->retryable = true;
	orchestrator_quota_check_start(child.owner, input, false);
	c->retryable = false;

	{
		LOCAL_FCINFO(fc, 0);

		InitFunctionCallInfoData(*fc, NULL, 0, InvalidOid, NULL, NULL);
		c->child = *DatumGetUUIDP(orchestrator_uuid_v7(fc));
	}
	child.id = UUIDPGetDatum(&c->child);
	child.name = def->child_workflow;
	child.priority = run->priority;
	child.has_deadline = run->has_deadline;
	child.deadline = run->deadline;
	if (!def->timeout_isnull)
	{
		TimestampTz due = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																  TimestampTzGetDatum(GetCurrentTimestamp()),
																  def->timeout));

		if (!child.has_deadline || due < child.deadline)
			child.deadline = due;
		child.has_deadline = true;
	}
	/* the child's trace continues the parent's, under the step's span */
	{
		char	   *tp = engine_traceparent(run, def->step, c->attempt);

		child.trace_id = pnstrdup(tp + 3, 32);
		child.trace_parent = tp;
	}
	child.has_parent = true;
	child.parent_id = run->id;
	child.parent_step = def->step;
	engine_run_created(&child, run->owner, tenant, input, NULL);

	values[0] = run->id;
	values[1] = CStringGetTextDatum(def->step);
	values[2] = child.id;
	engine_stmt(S_SET_CHILD, &run->leaves, values, NULL);
}

/*
 * child_run_timer
 *		The timer of a step of kind workflow: a ready step (new, or a retry
 *		that is due) starts its child; a running one learns that its child
 *		ended: the child's result is the step's, a failed child fails the
 *		attempt (retried per the step's policy), a cancelled one fails the
 *		step.  A notice of a child that is not the step's latest, or not
 *		ended, is let go.
 */
static void
child_run_timer(EngineRun *run, StepDef *def, const char *status)
{
	Datum		values[2] = {run->id, CStringGetTextDatum(def->step)};
	bool		isnull;

	engine_stmt(S_DEQUEUE, NULL, values, NULL);
	if (!engine_run_active(run))
		return;

	if (strcmp(status, "ready") == 0)
	{
		ChildStart	c;
		ErrorData  *e;

		memset(&c, 0, sizeof(c));
		c.run = run;
		c.def = def;
		c.attempt = engine_step_started(run, def->step, NULL);
		if (!engine_try(start_child_work, &c, &e))
		{
			StringInfoData err;
			const char *state = unpack_sql_state(e->sqlerrcode);

			initStringInfo(&err);
			engine_error_fields(&err, e);
			appendStringInfoString(&err, ", \"workflow\": ");
			escape_json(&err, def->child_workflow);
			appendStringInfoChar(&err, '}');
			engine_attempt_failed(run, def->step, engine_jsonb(err.data),
								  c.retryable && strncmp(state, "42", 2) != 0, (Datum) 0, true);
			return;
		}
		{
			StringInfoData data;

			initStringInfo(&data);
			appendStringInfo(&data, "{\"run_id\": \"%s\", \"workflow\": ", engine_uuid_text(UUIDPGetDatum(&c.child)));
			escape_json(&data, def->child_workflow);
			appendStringInfo(&data, ", \"version\": %d, \"attempt\": %d}", c.version, c.attempt);
			engine_emit(run, "workflow.child_started", def->step, data.data);
		}
		return;
	}

	if (strcmp(status, "running") == 0)
	{
		Datum		child;
		RunLeaves	leaves;
		char	   *child_status = NULL;
		Datum		result = (Datum) 0;
		bool		result_isnull = true;
		Datum		error = (Datum) 0;
		bool		error_isnull = true;
		StringInfoData s;

		engine_stmt(S_CHILD_OF_STEP, &run->leaves, values, NULL);
		child = engine_col("child_id", &isnull);
		engine_rows_done();
		if (isnull)
			return;
		if (orchestrator_run_leaves(child, &leaves, true))
		{
			Datum		c[1] = {child};

			if (engine_stmt(S_CHILD_RUN, &leaves, c, NULL) == 1)
			{
				child_status = engine_col_text("status");
				result = engine_col("result", &result_isnull);
				error = engine_col("error", &error_isnull);
			}
			engine_rows_done();
		}
		if (child_status == NULL)
			child_status = "removed";
		else if (strcmp(child_status, "succeeded") != 0 && strcmp(child_status, "failed") != 0 &&
				 strcmp(child_status, "cancelled") != 0)
			return;				/* still going: a stale notice */

		initStringInfo(&s);
		appendStringInfo(&s, "{\"run_id\": \"%s\", \"status\": \"%s\"}", engine_uuid_text(child), child_status);
		engine_emit(run, "workflow.child_finished", def->step, s.data);
		if (strcmp(child_status, "succeeded") == 0)
		{
			engine_step_succeeded(run, def->step, result_isnull ? engine_jsonb("null") : result, false);
			return;
		}
		resetStringInfo(&s);
		appendStringInfo(&s, "{\"message\": \"child run %s\", \"run_id\": \"%s\", \"workflow\": ",
						 child_status, engine_uuid_text(child));
		escape_json(&s, def->child_workflow);
		appendStringInfo(&s, ", \"status\": \"%s\", \"error\": %s}", child_status, engine_json_text(error, error_isnull));
		/* a failed child is retried with a new one; a cancelled one is not */
		engine_attempt_failed(run, def->step, engine_jsonb(s.data), strcmp(child_status, "failed") == 0,
							  (Datum) 0, true);
	}
}

/*
 * parent_ended
 *		A run's "@cancel" timer (compose_cancel_child()): its parent ended.
 *		False for any other timer.
 */
static bool
parent_ended(EngineRun *run, const char *step)
{
	Datum		values[2] = {run->id, CStringGetTextDatum(step)};

	if (strcmp(step, "@cancel") != 0)
		return false;
	engine_stmt(S_DEQUEUE, NULL, values, NULL);
	if (engine_run_active(run))
		engine_run_finish(run, RUN_CANCELLED,
						  engine_jsonb("{\"reason\": \"its parent run ended\", \"by\": \"orchestrator\"}"), false);
	return true;
}

/* ----------------------------------------------------------------
 * Timers
 * ---------------------------------------------------------------- */

/*
 * engine_fire_timer
 *		A timer is due: a run's deadline passes (a saga already under way is
 *		let finish), a sleep ends, or a wait times out.
 */
void
engine_fire_timer(EngineRun *run, const char *step)
{
	Datum		values[2] = {run->id, CStringGetTextDatum(step)};
	StepDef    *def;
	char	   *status = NULL;

	if (step[0] == '@' && parent_ended(run, step))
		return;
	if (strcmp(step, "@deadline") == 0)
	{
		engine_stmt(S_DEQUEUE, NULL, values, NULL);
		if (engine_run_active(run) || run->status == RUN_QUEUED)
		{
			StringInfoData e;

			initStringInfo(&e);
			appendStringInfo(&e, "{\"message\": \"deadline exceeded\", \"deadline\": %s}",
							 engine_json_time(run->deadline));
			engine_run_finish(run, RUN_FAILED, engine_jsonb(e.data), false);
		}
		return;
	}

	if (engine_stmt(S_STEP_STATE, &run->leaves, values, NULL) == 1)
		status = engine_col_text("status");
	engine_rows_done();
	def = engine_step_def(run->name, run->version, step);
	if (status != NULL && strcmp(status, "scheduled") == 0 && def->found &&
		(engine_run_active(run) || run->status == RUN_COMPENSATING))
	{
		/* its rate limit's token is due: ready on its own queue */
		rate_limit_token_due(run, def, step);
		return;
	}
	/* a child run to start, or one that ended */
	if (def->found && def->kind == KIND_WORKFLOW && status != NULL)
	{
		child_run_timer(run, def, status);
		return;
	}
	if (status == NULL || strcmp(status, "running") != 0 || !def->found)
	{
		engine_stmt(S_DEQUEUE, NULL, values, NULL);
		return;
	}
	if (def->kind == KIND_SLEEP)
	{
		char	   *now = engine_json_time(GetCurrentTransactionStartTimestamp());
		bool		timed_out = false;
		char	   *until = NULL;

		/*
		 * An "until" later than its timeout allows (a "duration" is at most
		 * the timeout: define_workflow checks).
		 */
		if (!def->timeout_isnull && def->duration_isnull)
		{
			Datum		t[3] = {run->id, values[1], def->timeout};

			if (engine_stmt(S_SLEEP_TIMED_OUT, &run->leaves, t, NULL) == 1)
			{
				bool		isnull;
				Datum		u;

				timed_out = engine_col_bool("timed_out");
				u = engine_col("until", &isnull);
				until = engine_json_text(u, isnull);
			}
			engine_rows_done();
		}
		if (timed_out)
			engine_attempt_failed(run, step,
								  engine_jsonb(psprintf("{\"message\": \"timed out\", \"timeout\": %s, \"until\": %s}",
															  engine_json_interval(def->timeout), until)),
								  false, (Datum) 0, true);
		else
			engine_step_succeeded(run, step, engine_jsonb(psprintf("{\"slept_until\": %s}", now)), false);
	}
	else if (def->kind == KIND_WAIT)
	{
		StringInfoData e;

		initStringInfo(&e);
		appendStringInfoString(&e, "{\"message\": \"timed out waiting for signal\", \"signal\": ");
		if (def->signal)
			escape_json(&e, def->signal);
		else
			appendStringInfoString(&e, "null");
		appendStringInfoChar(&e, '}');
		engine_attempt_failed(run, step, engine_jsonb(e.data), false, (Datum) 0, true);
	}
	else
		engine_stmt(S_DEQUEUE, NULL, values, NULL);
}
