/*-------------------------------------------------------------------------
 *
 * compose.c
 *	  Fan-out (steps with "for_each") and child workflows (steps of kind
 *	  "workflow"): their rows and decisions.  A policy under the
 *	  transitions: it writes and counts the elements and hands work over
 *	  between runs; the transitions it leads to are the engine's (the
 *	  fan-out's in engine.c, a child's start and end in engine_timer.c).
 *
 * Fan-out.  A step with "for_each" renders its path when it becomes ready;
 * it must select an array.  Each element is a step row of its own, named
 * "<step>[<index>]" (a name no defined step can have), of the step's kind,
 * with the element in workflow_steps.item: the element goes through the
 * ordinary paths of its kind (the @sql batch, the HTTP claim, claim_steps,
 * timers, leases, retries), and engine_step_def() gives it its step's
 * definition (step_element_def()).  The step itself is running while
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
 * child run there (engine_timer.c), in the parent's transaction, as its
 * owner would with start_workflow().  Nothing ever locks both runs: a child
 * that ends queues a due timer for its parent's step (S_HAND_OFF, here),
 * which the timer pass turns into the step's success or failed attempt with
 * the parent locked; a parent that ends queues "@cancel" for each active
 * child the same way.  So a child finishing while its parent is cancelled
 * cannot deadlock, and both hand-overs are rows committed with the
 * transition that caused them: a crash or restart loses none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "compose.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_stmt.h"
#include "wake.h"

/* ----------------------------------------------------------------
 * Elements of a for_each step
 * ---------------------------------------------------------------- */

static char *
element_name(const char *step, int32 index)
{
	return psprintf("%s[%d]", step, index);
}

/*
 * compose_item_done
 *		One more element of a for_each step done (failed: for good, the step
 *		going on regardless); true when it was the last.
 */
bool
compose_item_done(EngineRun *run, StepDef *def, bool failed)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(def->step), BoolGetDatum(failed)};
	bool		last = false;

	if (engine_stmt(S_ITEM_DONE, &run->leaves, values, NULL) == 1)
		last = engine_col_int32("done") >= engine_col_int32("items");
	engine_rows_done();
	return last;
}

/*
 * compose_items_finished
 *		Every element of a for_each step is done: true when all succeeded,
 *		with their results in order (the step succeeds with them).  Else,
 *		when some failed and it goes on regardless ("on_error": "continue"),
 *		it ends failed here with the results it has (NULL for a failed
 *		element) and the failures as its error (step.failed); false.
 */
bool
compose_items_finished(EngineRun *run, StepDef *def, Datum *results)
{
	Datum		values[4] = {run->id, CStringGetTextDatum(def->step)};
	bool		isnull;
	Datum		failed;
	int			nfailed;
	StringInfoData e;

	engine_stmt(S_ITEMS_RESULT, &run->leaves, values, NULL);
	*results = engine_col("results", &isnull);
	failed = engine_col("failed", &isnull);
	engine_rows_done();
	nfailed = JB_ROOT_COUNT(DatumGetJsonbP(failed));
	if (nfailed == 0)
		return true;
	initStringInfo(&e);
	appendStringInfo(&e, "{\"message\": \"%d of %d elements failed\", \"failed\": %s}", nfailed,
					 JB_ROOT_COUNT(DatumGetJsonbP(*results)), engine_json_text(failed, false));
	values[2] = *results;
	values[3] = engine_jsonb(e.data);
	engine_stmt(S_ITEMS_FINISH, &run->leaves, values, NULL);
	engine_emit_jsonb(run, "step.failed", def->step,
					  engine_jsonb(psprintf("{\"attempt\": 1, \"error\": %s}", e.data)), false);
	return false;
}

/*
 * compose_next_element
 *		The next element of a for_each step to make ready while the limit
 *		allows, released (elements a resumed run kept as succeeded count as
 *		done at once); NULL when there is none now, with *last set when the
 *		one counted done here was the step's last.
 */
char *
compose_next_element(EngineRun *run, StepDef *def, bool *last)
{
	*last = false;
	for (;;)
	{
		Datum		values[2] = {run->id, CStringGetTextDatum(def->step)};
		char	   *element;
		bool		released;

		if (engine_stmt(S_ITEMS_NEXT, &run->leaves, values, NULL) != 1)
		{
			engine_rows_done();
			return NULL;
		}
		element = element_name(def->step, engine_col_int32("next"));
		engine_rows_done();
		values[1] = CStringGetTextDatum(element);
		released = engine_stmt(S_ITEM_RELEASE, &run->leaves, values, NULL) == 1;
		engine_rows_done();
		if (released)
			return element;
		if (compose_item_done(run, def, false))
		{
			*last = true;
			return NULL;
		}
	}
}

/*
 * compose_fan_out
 *		A for_each step started (its condition held) with "items", its path
 *		rendered over the run's context: it must select an array
 *		(FAN_OUT_INVALID, the attempt's *error, otherwise).  An empty array
 *		is FAN_OUT_EMPTY (the step succeeds with [] at once); else the
 *		elements are written (FAN_OUT_WRITTEN) and the caller makes the
 *		first ones ready.
 */
FanOut
compose_fan_out(EngineRun *run, StepDef *def, Datum items, Datum *error)
{
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
		*error = engine_jsonb(e.data);
		return FAN_OUT_INVALID;
	}
	n = JB_ROOT_COUNT(jb);
	if (n > FOR_EACH_MAX_ITEMS)
	{
		*error = engine_message_error(psprintf("for_each selected %d elements; at most %d are allowed",
											   n, FOR_EACH_MAX_ITEMS));
		return FAN_OUT_INVALID;
	}
	engine_emit(run, "step.fanned_out", def->step,
				psprintf("{\"items\": %d, \"max_parallel\": %s}", n,
						 def->max_parallel > 0 ? psprintf("%d", def->max_parallel) : "null"));
	if (n == 0)
		return FAN_OUT_EMPTY;
	{
		Datum		t[3] = {run->id, values[1], Int32GetDatum(n)};

		engine_stmt(S_ITEMS_TRIM, &run->leaves, t, NULL);
	}
	engine_stmt(S_ITEMS_CREATE, &run->leaves, values, NULL);
	values[2] = engine_jsonb(psprintf("{\"items\": %d, \"max_parallel\": %d, \"started\": 0, \"done\": 0, \"failed\": 0}",
									  n, def->max_parallel));
	engine_stmt(S_FAN_OUT, &run->leaves, values, NULL);
	return FAN_OUT_WRITTEN;
}

/*
 * compose_element_failed
 *		An element failed for good (failed or dead; its retries are its
 *		own) and its step does not go on regardless: the step ends with
 *		that status.  Returns the error the run fails with.
 */
Datum
compose_element_failed(EngineRun *run, StepDef *step, StepDef *element, StepStatus final,
					   Datum error)
{
	StringInfoData e;
	StringInfoData r;
	Datum		values[4];

	initStringInfo(&e);
	appendStringInfo(&e, "{\"message\": \"element %d failed\", \"index\": %d, \"step\": ",
					 element->element_index, element->element_index);
	escape_json(&e, element->step);
	appendStringInfo(&e, ", \"error\": %s}", engine_json_text(error, false));
	values[0] = run->id;
	values[1] = CStringGetTextDatum(step->step);
	values[2] = CStringGetTextDatum(step_status_names[final]);
	values[3] = engine_jsonb(e.data);
	engine_stmt(S_STEP_FINAL, &run->leaves, values, NULL);
	engine_emit_jsonb(run, psprintf("step.%s", step_status_names[final]), step->step,
					  engine_jsonb(psprintf("{\"attempt\": 1, \"error\": %s}", e.data)), false);
	initStringInfo(&r);
	appendStringInfoString(&r, "{\"step\": ");
	escape_json(&r, step->step);
	appendStringInfo(&r, ", \"status\": \"%s\", \"error\": %s}", step_status_names[final], e.data);
	return engine_jsonb(r.data);
}

/* ----------------------------------------------------------------
 * Hand-overs between a parent run and its child
 * ---------------------------------------------------------------- */

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
