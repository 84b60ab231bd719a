/*-------------------------------------------------------------------------
 *
 * compose.c
 *	  Child workflows (steps of kind "workflow") and fan-out (steps with
 *	  "for_each"): the parts of the state machine (engine.c) they add.
 *
 * Fan-out.  A step with "for_each" renders its path when it becomes ready;
 * it must select an array.  Each element is a step row of its own, named
 * "<step>[<index>]" (a name no defined step can have), of the step's kind,
 * with the element in workflow_steps.item: the element goes through the
 * ordinary paths of its kind (the @sql batch, the HTTP claim, claim_steps,
 * timers, leases, retries), and engine_step_def() gives it its step's
 * definition (compose_element_def()).  The step itself is running while
 * its elements run; its "progress" counts them ({"items", "max_parallel",
 * "started", "done", "failed"}), so that each element that finishes makes
 * the next one ready (at most max_parallel at once) without a scan.  When
 * every element is done, the step succeeds with the array of their results,
 * in order.  An element that fails for good fails the step and the run,
 * unless the step says "on_error": "continue": then the other elements go
 * on, and the step ends failed with the results it has.
 *
 * Child runs.  A step of kind "workflow" is queued on @timer when it is
 * ready (and when a retry is due); the dispatchers' timer pass starts the
 * child run there (compose_fire()), in the parent's transaction, as its
 * owner would with start_workflow().  Nothing ever locks both runs: a child
 * that ends queues a due timer for its parent's step (S_HAND_OFF), which the
 * timer pass turns into the step's success or failed attempt with the
 * parent locked; a parent that ends queues "@cancel" for each active child
 * the same way.  So a child finishing while its parent is cancelled cannot
 * deadlock, and both hand-overs are rows committed with the transition that
 * caused them: a crash or restart loses none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "engine.h"
#include "lookup_cache.h"
#include "quota.h"
#include "wake.h"

extern Datum orchestrator_uuid_v7(PG_FUNCTION_ARGS);

/* The most runs in a chain of parents and children. */
#define MAX_NESTING 32

/* ----------------------------------------------------------------
 * Elements of a for_each step
 * ---------------------------------------------------------------- */

static char *
element_name(const char *step, int32 index)
{
	return psprintf("%s[%d]", step, index);
}

/* A for_each step's own definition, from one of its elements'. */
static StepDef *
step_of(EngineRun *run, StepDef *element)
{
	return engine_step_def(run->name, run->version, element->element_of);
}

/*
 * The fills under way in this process: an element made ready by a fill can
 * finish at once (a sleep whose "until" is no time) and would fill again
 * from inside; the outer fill goes on instead.
 */
typedef struct Fill
{
	pg_uuid_t	run;
	const char *step;
	struct Fill *next;
} Fill;

static Fill *fills = NULL;

static bool
filling(EngineRun *run, const char *step)
{
	for (Fill *f = fills; f != NULL; f = f->next)
		if (memcmp(f->run.data, DatumGetUUIDP(run->id)->data, UUID_LEN) == 0 && strcmp(f->step, step) == 0)
			return true;
	return false;
}

/* One more element done; true when it was the last. */
static bool
item_counted(EngineRun *run, StepDef *def, bool failed)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(def->step), BoolGetDatum(failed)};
	bool		last = false;

	if (engine_stmt(S_ITEM_DONE, &run->leaves, values, NULL) == 1)
		last = engine_col_int32("done") >= engine_col_int32("items");
	engine_rows_done();
	return last;
}

/*
 * finish_step
 *		Every element of a for_each step is done: the step succeeds with
 *		their results in order, or, when some failed and it goes on
 *		regardless ("on_error": "continue"), it ends failed with the results
 *		it has (NULL for a failed element) and the failures as its error.
 */
static void
finish_step(EngineRun *run, StepDef *def)
{
	Datum		values[4] = {run->id, CStringGetTextDatum(def->step)};
	bool		isnull;
	Datum		results;
	Datum		failed;
	int			nfailed;

	engine_stmt(S_ITEMS_RESULT, &run->leaves, values, NULL);
	results = engine_col("results", &isnull);
	failed = engine_col("failed", &isnull);
	engine_rows_done();
	nfailed = JB_ROOT_COUNT(DatumGetJsonbP(failed));
	if (nfailed == 0)
	{
		engine_record_success(run, def, def->step, results, false, false);
		engine_step_done(run, def);
		return;
	}
	{
		StringInfoData e;
		Datum		error;

		initStringInfo(&e);
		appendStringInfo(&e, "{\"message\": \"%d of %d elements failed\", \"failed\": %s}", nfailed,
						 JB_ROOT_COUNT(DatumGetJsonbP(results)), engine_json_text(failed, false));
		error = engine_jsonb(e.data);
		values[2] = results;
		values[3] = error;
		engine_stmt(S_ITEMS_FINISH, &run->leaves, values, NULL);
		engine_emit_jsonb(run, "step.failed", def->step,
						  engine_jsonb(psprintf("{\"attempt\": 1, \"error\": %s}", e.data)), false);
		engine_step_done(run, def);
	}
}

/*
 * fill
 *		Make the next elements ready while the limit allows (elements a
 *		resumed run kept as succeeded count as done at once); finish the step
 *		when the last one is done.
 */
static void
fill(EngineRun *run, StepDef *def)
{
	Fill		me;

	if (filling(run, def->step))
		return;
	memcpy(me.run.data, DatumGetUUIDP(run->id)->data, UUID_LEN);
	me.step = def->step;
	me.next = fills;
	fills = &me;
	PG_TRY();
	{
		while (engine_run_active(run))
		{
			Datum		values[2] = {run->id, CStringGetTextDatum(def->step)};
			int32		next;
			char	   *element;
			bool		released;

			if (engine_stmt(S_ITEMS_NEXT, &run->leaves, values, NULL) != 1)
			{
				engine_rows_done();
				break;
			}
			next = engine_col_int32("next");
			engine_rows_done();
			element = element_name(def->step, next);
			values[1] = CStringGetTextDatum(element);
			released = engine_stmt(S_ITEM_RELEASE, &run->leaves, values, NULL) == 1;
			engine_rows_done();
			if (released)
				engine_step_ready(run, element);
			else if (item_counted(run, def, false))
			{
				finish_step(run, def);
				break;
			}
		}
	}
	PG_FINALLY();
	{
		fills = me.next;
	}
	PG_END_TRY();
}

/*
 * compose_fan_out
 *		A for_each step is ready (its condition held): its path is rendered
 *		over the run's context and must select an array; the step starts,
 *		its elements are written, and the first ones made ready.  An empty
 *		array succeeds with [] at once; anything else fails the step.
 */
void
compose_fan_out(EngineRun *run, StepDef *def, Datum *context, bool *context_ready)
{
	Datum		items = engine_render(run, def->for_each_path, context, context_ready);
	Jsonb	   *jb = DatumGetJsonbP(items);
	Datum		values[3] = {run->id, CStringGetTextDatum(def->step), items};
	const char *path = "";
	int			n;

	{
		JsonbValue *v = getKeyJsonValueFromContainer(&DatumGetJsonbP(def->for_each_path)->root,
													 "$path", 5, NULL);

		if (v != NULL && v->type == jbvString)
			path = pnstrdup(v->val.string.val, v->val.string.len);
	}
	engine_step_started(run, def->step, NULL);
	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
	{
		StringInfoData e;
		char	   *got = engine_json_text(items, false);

		initStringInfo(&e);
		appendStringInfoString(&e, "{\"message\": ");
		escape_json(&e, psprintf("for_each must select an array; %s selected %s", path,
								 strcmp(got, "null") == 0 ? "nothing" : got));
		appendStringInfoString(&e, ", \"for_each\": ");
		escape_json(&e, path);
		appendStringInfoChar(&e, '}');
		engine_attempt_failed(run, def->step, engine_jsonb(e.data), false, (Datum) 0, true);
		return;
	}
	n = JB_ROOT_COUNT(jb);
	if (n > FOR_EACH_MAX_ITEMS)
	{
		engine_attempt_failed(run, def->step,
							  engine_message_error(psprintf("for_each selected %d elements; at most %d are allowed",
															n, FOR_EACH_MAX_ITEMS)),
							  false, (Datum) 0, true);
		return;
	}
	engine_emit(run, "step.fanned_out", def->step,
				psprintf("{\"items\": %d, \"max_parallel\": %s}", n,
						 def->max_parallel > 0 ? psprintf("%d", def->max_parallel) : "null"));
	if (n == 0)
	{
		engine_record_success(run, def, def->step, items, false, false);
		engine_step_done(run, def);
		return;
	}
	{
		Datum		t[3] = {run->id, values[1], Int32GetDatum(n)};

		engine_stmt(S_ITEMS_TRIM, &run->leaves, t, NULL);
	}
	engine_stmt(S_ITEMS_CREATE, &run->leaves, values, NULL);
	values[2] = engine_jsonb(psprintf("{\"items\": %d, \"max_parallel\": %d, \"started\": 0, \"done\": 0, \"failed\": 0}",
								  n, def->max_parallel));
	engine_stmt(S_FAN_OUT, &run->leaves, values, NULL);
	fill(run, def);
}

/*
 * compose_element_done
 *		An element succeeded (or failed with "on_error": "continue"): the
 *		next one is made ready, or the step finishes.
 */
void
compose_element_done(EngineRun *run, StepDef *def)
{
	StepDef    *step = step_of(run, def);

	if (!engine_run_active(run) || !step->found)
		return;
	if (item_counted(run, step, false))
		finish_step(run, step);
	else
		fill(run, step);
}

/*
 * compose_element_final
 *		An element failed for good (failed or dead; its retries are its
 *		own).  Unless the step goes on regardless, the step fails with that
 *		status and the run with it (its other elements are cancelled).
 */
void
compose_element_final(EngineRun *run, StepDef *def, StepStatus final, Datum error)
{
	StepDef    *step = step_of(run, def);
	StringInfoData e;
	Datum		values[4];

	if (!engine_run_active(run) || !step->found)
		return;
	if (def->on_error_continue)
	{
		if (item_counted(run, step, true))
			finish_step(run, step);
		else
			fill(run, step);
		return;
	}
	initStringInfo(&e);
	appendStringInfo(&e, "{\"message\": \"element %d failed\", \"index\": %d, \"step\": ",
					 def->element_index, def->element_index);
	escape_json(&e, def->step);
	appendStringInfo(&e, ", \"error\": %s}", engine_json_text(error, false));
	values[0] = run->id;
	values[1] = CStringGetTextDatum(step->step);
	values[2] = CStringGetTextDatum(step_status_names[final]);
	values[3] = engine_jsonb(e.data);
	engine_stmt(S_STEP_FINAL, &run->leaves, values, NULL);
	engine_emit_jsonb(run, psprintf("step.%s", step_status_names[final]), step->step,
					  engine_jsonb(psprintf("{\"attempt\": 1, \"error\": %s}", e.data)), false);
	{
		StringInfoData r;

		initStringInfo(&r);
		appendStringInfoString(&r, "{\"step\": ");
		escape_json(&r, step->step);
		appendStringInfo(&r, ", \"status\": \"%s\", \"error\": %s}", step_status_names[final], e.data);
		engine_run_finish(run, RUN_FAILED, engine_jsonb(r.data), false);
	}
}

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
	if (child.owner != run->owner)
	{
		bool		may;

		values[1] = ObjectIdGetDatum(run->owner);
		engine_stmt(S_MAY_START_AS, NULL, values, NULL);
		may = engine_col_bool("may");
		engine_rows_done();
		if (!may)
			child_error(ERRCODE_INSUFFICIENT_PRIVILEGE,
						psprintf("permission denied to start workflow \"%s\"", def->child_workflow),
						psprintf("Child runs are started by the owner of the parent's workflow (%s), which needs the right to start \"%s\".",
								 DatumGetCString(DirectFunctionCall1(regroleout, ObjectIdGetDatum(run->owner))),
								 def->child_workflow));
	}

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
		input = engine_jsonb("{}");
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
 * compose_fire
 *		The timer of a step of kind workflow: a ready step (new, or a retry
 *		that is due) starts its child; a running one learns that its child
 *		ended: the child's result is the step's, a failed child fails the
 *		attempt (retried per the step's policy), a cancelled one fails the
 *		step.  A notice of a child that is not the step's latest, or not
 *		ended, is let go.
 */
void
compose_fire(EngineRun *run, StepDef *def, const char *status)
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
			appendStringInfoString(&err, "{\"message\": ");
			escape_json(&err, e->message ? e->message : "");
			appendStringInfoString(&err, ", \"sqlstate\": ");
			escape_json(&err, state);
			if (e->detail && e->detail[0])
			{
				appendStringInfoString(&err, ", \"detail\": ");
				escape_json(&err, e->detail);
			}
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

/* Queue work for another run without locking it. */
static void
hand_off(Datum target, const char *step)
{
	RunLeaves	leaves;
	Datum		values[2] = {target, CStringGetTextDatum(step)};

	if (!orchestrator_run_leaves(target, &leaves, true))
		return;					/* retention removed it */
	if (engine_stmt(S_HAND_OFF, &leaves, values, NULL) > 0)
		orchestrator_wake_dispatchers_at_commit(WAKE_TIMER);
}

/* A parent ended while its step's child runs: the child is cancelled. */
void
compose_cancel_child(Datum child_id)
{
	hand_off(child_id, "@cancel");
}

/* A child run ended: its parent's step learns it through its timer. */
void
compose_run_ended(EngineRun *run, Datum parent_id, bool parent_isnull, const char *parent_step)
{
	if (parent_isnull || parent_step == NULL)
		return;
	hand_off(parent_id, parent_step);
}

/*
 * compose_fire_internal
 *		A run's own timers of this file: "@cancel", its parent ended.
 */
bool
compose_fire_internal(EngineRun *run, const char *step)
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
