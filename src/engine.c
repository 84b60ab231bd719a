/*-------------------------------------------------------------------------
 *
 * engine.c
 *	  The state machine of runs and steps: every transition, in one place.
 *
 * Runs:   pending -> running -> succeeded | failed | cancelled
 *                            -> compensating -> failed
 * Steps:  waiting -> ready -> running -> succeeded | failed | dead
 *                          (ready again after a retryable failure)
 *         waiting -> skipped (condition false); open -> cancelled (run
 *         ended); succeeded -> compensated (its compensation succeeded)
 *
 * Every transition runs with the run's row locked (FOR UPDATE), which
 * serialises all changes to one run: two parallel branches finishing at once
 * cannot both miss, or both trigger, the step that joins them, and event
 * sequence numbers stay gap-free.  Claimers lock queue rows and run rows with
 * SKIP LOCKED and never wait, so the only waiters take the run lock first and
 * no lock cycle can form.
 *
 * Layers (docs/architecture.md, "The state machine in C"): this file holds
 * the transitions that call each other.  Below it, and never calling it:
 * an attempt's start (engine_attempt.c), the policies that decide
 * (admission.c, rate_limit.c, compose.c: they return decisions, the
 * transitions they lead to are here), the primitives (engine_run.c,
 * engine_events.c, engine_unit.c), the rows (run_rows.c) and definitions
 * (defcache.c), the model (run_model.h).  Above it: what a due timer does
 * (engine_timer.c) and the entry points: the dispatchers' sql steps
 * (sql_steps.c), timers (engine_fn.c) and HTTP steps (http_claim.c,
 * http_record.c), external workers (external.c), start_workflow (start.c),
 * cancel_workflow and retry_run (run_api.c), signal_workflow (signal.c).
 * docs/architecture.md tables every transition and its callers.
 * The EngineRun a transition is given is kept current: a transition that
 * changes the run's status changes run->status.
 *
 * Step and run timings use clock_timestamp(), not the transaction time: a
 * dispatcher runs many steps in one transaction, and their durations matter.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "admission.h"
#include "compose.h"
#include "engine.h"
#include "history.h"
#include "metrics.h"
#include "quota.h"
#include "relay.h"
#include "run_rows.h"
#include "wake.h"

/*
 * engine_run_created
 *		start_workflow(): the run, its steps, workflow.created, and its
 *		first steps made ready.  Plain first steps (sql, external without
 *		templates, no condition: plain_when_ready) are inserted ready and
 *		queued by the same statement; the others then go through
 *		engine_step_ready() in position order (one may end the run: a sleep
 *		whose "until" is no time fails it; the steps after it are then left
 *		alone).  The caller set run->id, name, version, owner, priority and
 *		deadline.
 */
void
engine_run_created(EngineRun *run, Oid started_by, const char *tenant, Datum input,
				   const char *idempotency_key)
{
	StringInfoData data;
	RunShape   *shape;
	int			nroots;
	char	  **roots;
	char	  **plain;
	char	  **queues;
	int			nplain = 0;
	bool	   *slow;
	int			wake = 0;
	Admission	admission;

	if (!orchestrator_run_leaves(run->id, &run->leaves, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no partition of orchestrator.workflow_runs for run %s", engine_uuid_text(run->id)),
				 errdetail("History is partitioned by day, and no partition holds today."),
				 errhint("Run orchestrator.maintain(), or keep the dispatchers running: they create partitions ahead.")));
	run->status = RUN_PENDING;
	run->started_by = started_by;
	run->attempt = 0;
	run->admission = 0;

	/* over an admission limit: queued, no step made ready (admission.c) */
	admission_at_start(run, tenant, &admission);

	shape = engine_run_shape(run->name, run->version);
	roots = shape->roots;
	nroots = admission.queued ? 0 : shape->nroots;
	plain = palloc(sizeof(char *) * Max(nroots, 1));
	queues = palloc(sizeof(char *) * Max(nroots, 1));
	slow = palloc0(sizeof(bool) * Max(nroots, 1));
	for (int i = 0; i < nroots; i++)
	{
		StepDef    *def = engine_step_def(run->name, run->version, roots[i]);

		if (!def->plain_when_ready)
		{
			slow[i] = true;
			continue;
		}
		plain[nplain] = roots[i];
		queues[nplain] = def->queue;
		nplain++;
		if (def->queue[0] == '@')
			wake |= strcmp(def->queue, "@sql") == 0 ? WAKE_SQL : WAKE_TIMER;
	}

	initStringInfo(&data);
	appendStringInfoString(&data, "{\"name\": ");
	escape_json(&data, run->name);
	appendStringInfo(&data, ", \"version\": %d", run->version);
	if (tenant)
	{
		appendStringInfoString(&data, ", \"tenant\": ");
		escape_json(&data, tenant);
	}
	if (run->has_parent)
	{
		appendStringInfo(&data, ", \"parent_id\": \"%s\", \"parent_step\": ", engine_uuid_text(run->parent_id));
		escape_json(&data, run->parent_step);
	}
	appendStringInfoChar(&data, '}');

	run_rows_create(run, started_by, tenant, input, idempotency_key, shape, nplain, plain, queues);
	engine_append_event(run, "workflow.created", NULL, GetCurrentTimestamp(), engine_jsonb(data.data));
	if (admission.limited)
		admission_created(run, tenant, &admission);

	/* the plain first steps' queues: dispatchers woken, workers told */
	if (wake)
		orchestrator_wake_dispatchers_at_commit(wake);
	for (int i = 0; i < nplain; i++)
		if (queues[i][0] != '@')
			orchestrator_notify(RELAY_QUEUES, queues[i]);

	if (run->has_deadline)
		engine_enqueue(run, "@deadline", "@timer", run->deadline);

	for (int i = 0; i < nroots && engine_run_active(run); i++)
		if (slow[i])
			engine_step_ready(run, roots[i]);
}

/*
 * engine_run_finish
 *		A run reaches a final status (succeeded, failed, cancelled).  Open
 *		steps are cancelled and the run's queued work removed (so leases
 *		held by external workers stop being valid).  A run that fails with
 *		succeeded steps that declare "compensate" first undoes them
 *		(compensating; see compensate_next()).  A run that was compensating
 *		keeps the error that started the saga.
 */
static void compensate_next(EngineRun *run);
static void run_left_slots(EngineRun *run, bool was_queued);

void
engine_run_finish(EngineRun *run, RunStatus status, Datum error, bool error_isnull)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		result = (Datum) 0;
	bool		result_isnull = true;
	Datum		data;
	uint64		n;
	Datum		parent_id;
	bool		parent_isnull;
	char	   *parent_step;

	values[0] = run->id;
	if (run->status == RUN_COMPENSATING)
	{
		/* a compensation failed, or the run was cancelled while compensating */
		Datum		saga_error;

		engine_stmt(S_RUN_ERROR, &run->leaves, values, NULL);
		saga_error = engine_col("error", &isnull);
		engine_rows_done();
		error = engine_json_object1("compensation", error, error_isnull);
		if (!isnull)
			error = DirectFunctionCall2(jsonb_concat, saga_error, error);
		error_isnull = false;
	}

	if (status != RUN_SUCCEEDED || run->has_deadline)
		engine_stmt(S_DELETE_RUN_QUEUE, NULL, values, NULL);

	if (status != RUN_SUCCEEDED)
	{
		char	  **cancelled;

		Datum	   *children;
		int			nchildren = 0;

		n = engine_stmt(S_CANCEL_OPEN_STEPS, &run->leaves, values, NULL);
		cancelled = palloc(sizeof(char *) * Max(n, 1));
		children = palloc(sizeof(Datum) * Max(n, 1));
		for (uint64 i = 0; i < n; i++)
		{
			Datum		child = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);

			cancelled[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			/* a step of kind workflow: its child run is cancelled too */
			if (!isnull)
				children[nchildren++] = datumCopy(child, false, UUID_LEN);
		}
		engine_rows_done();
		for (uint64 i = 0; i < n; i++)
			engine_emit(run, "step.cancelled", cancelled[i], NULL);
		for (int i = 0; i < nchildren; i++)
			compose_cancel_child(children[i]);
	}

	if (status == RUN_FAILED && run->status != RUN_COMPENSATING)
	{
		values[1] = CStringGetTextDatum(run->name);
		values[2] = Int32GetDatum(run->version);
		if (engine_stmt(S_ADD_COMPENSATIONS, &run->leaves, values, NULL) > 0)
		{
			Datum		c[2] = {run->id, error};
			char		cn[2] = {' ', error_isnull ? 'n' : ' '};

			engine_stmt(S_RUN_COMPENSATING, &run->leaves, c, cn);
			run->status = RUN_COMPENSATING;
			engine_emit_jsonb(run, "workflow.compensating", NULL,
							  engine_json_object1("error", error, error_isnull), false);
			compensate_next(run);
			return;
		}
	}

	if (status == RUN_SUCCEEDED)
	{
		Datum		t[2] = {CStringGetTextDatum(run->name), Int32GetDatum(run->version)};
		Datum		template;

		engine_stmt(S_RESULT_TEMPLATE, NULL, t, NULL);
		template = engine_col("template", &isnull);
		engine_rows_done();
		if (!isnull)
		{
			bool		context_ready = false;
			Datum		context = (Datum) 0;

			result = engine_render(run, template, &context, &context_ready);
		}
		else
		{
			engine_stmt(S_STEP_RESULTS, &run->leaves, values, NULL);
			result = engine_col("results", &isnull);
			engine_rows_done();
		}
		result_isnull = false;
	}

	values[1] = CStringGetTextDatum(run_status_names[status]);
	values[2] = result;
	nulls[2] = result_isnull ? 'n' : ' ';
	values[3] = error;
	nulls[3] = error_isnull ? 'n' : ' ';
	engine_stmt(S_RUN_FINISH, &run->leaves, values, nulls);
	data = engine_col("data", &isnull);
	parent_id = engine_col("parent_id", &parent_isnull);
	parent_step = engine_col_text("parent_step");
	engine_rows_done();
	{
		bool		was_queued = run->status == RUN_QUEUED;

		run->status = status;
		engine_emit_jsonb(run, psprintf("workflow.%s", run_status_names[status]), NULL, data, false);
		/* its admission slots go to the runs queued for them */
		if (run->admission != 0 || was_queued)
			run_left_slots(run, was_queued);
	}
	compose_run_ended(run, parent_id, parent_isnull, parent_step);
}

/*
 * compensate_next
 *		Saga: start the next compensation (that of the step which completed
 *		last, so dependents are undone before what they depended on), or,
 *		when none is left, finish the run as failed with the error that
 *		started it.
 */
static void
compensate_next(EngineRun *run)
{
	Datum		values[3] = {run->id, CStringGetTextDatum(run->name), Int32GetDatum(run->version)};
	char	   *next = NULL;
	bool		isnull;
	Datum		data;

	if (engine_stmt(S_NEXT_COMPENSATION, &run->leaves, values, NULL) == 1)
		next = engine_col_text("step");
	engine_rows_done();
	if (next != NULL)
	{
		engine_step_ready(run, next);
		return;
	}
	engine_stmt(S_RUN_COMPENSATED, &run->leaves, values, NULL);
	data = engine_col("data", &isnull);
	{
		bool		parent_isnull;
		Datum		parent_id = engine_col("parent_id", &parent_isnull);
		char	   *parent_step = engine_col_text("parent_step");

		engine_rows_done();
		run->status = RUN_FAILED;
		engine_emit_jsonb(run, "workflow.failed", NULL, data, false);
		if (run->admission != 0)
			run_left_slots(run, false);
		compose_run_ended(run, parent_id, parent_isnull, parent_step);
	}
}

/* ----------------------------------------------------------------
 * Queued runs admitted (admission.c decides and keeps the slots)
 * ---------------------------------------------------------------- */

/*
 * A run admitted here may end at once (and give its slots back): the
 * nested call only asks the outer one for another pass, over every scope.
 */
static int	admitting = 0;
static bool admit_again = false;

/* Passes over the queued runs, until one admits nothing more. */
static void
admit_passes(AdmitWhere where)
{
	bool		again;

	do
	{
		AdmitBatch *b;
		bool		any = false;

		admit_again = false;
		b = admission_candidates(&where);
		for (int i = 0; i < b->n && !admission_nothing_fits(b); i++)
		{
			EngineRun	q;
			char	  **roots;
			int			nroots;

			if (!admission_admit(b, i, &q, &roots, &nroots))
				continue;
			any = true;
			/* its steps with nothing to wait for */
			for (int r = 0; r < nroots && engine_run_active(&q); r++)
				engine_step_ready(&q, roots[r]);
		}
		/* a nested end freed slots anywhere; a full batch may have more */
		again = admit_again || (any && admission_batch_more(b));
		if (admit_again)
			where.all = true;
	} while (again);
}

/*
 * engine_admit_waiting
 *		Slots were freed ("where"): admit the queued runs that now fit,
 *		best first, and make their first steps ready.
 */
void
engine_admit_waiting(const AdmitWhere *where)
{
	if (admitting > 0)
	{
		admit_again = true;
		return;
	}
	admitting++;
	PG_TRY();
	{
		admit_passes(*where);
	}
	PG_FINALLY();
	{
		admitting--;
	}
	PG_END_TRY();
}

/* A run left the active statuses: its slots go to the runs queued for them. */
static void
run_left_slots(EngineRun *run, bool was_queued)
{
	AdmitWhere	where;

	if (admission_run_left(run, was_queued, &where))
		engine_admit_waiting(&where);
}

/* ----------------------------------------------------------------
 * Steps
 * ---------------------------------------------------------------- */

typedef struct UntilCast
{
	Datum		until;
	TimestampTz due;
	bool		isnull;
} UntilCast;

static void
until_cast(void *arg)
{
	UntilCast  *c = arg;
	Datum		values[1] = {c->until};

	engine_stmt(S_UNTIL, NULL, values, NULL);
	c->due = DatumGetTimestampTz(engine_col("due", &c->isnull));
	engine_rows_done();
}

/*
 * until_time
 *		A sleep's rendered "until" as a time; false (and *why) when it is not
 *		one.  The cast's error is the step's; any other error is raised.
 */
static bool
until_time(Datum until, TimestampTz *due, char **why)
{
	UntilCast	c = {until, 0, true};
	ErrorData  *e;

	if (strcmp(engine_json_text(until, false), "null") == 0)
	{
		*why = "\"until\" matched nothing";
		return false;
	}
	if (!engine_try(until_cast, &c, &e))
	{
		if (e->sqlerrcode != ERRCODE_INVALID_DATETIME_FORMAT &&
			e->sqlerrcode != ERRCODE_DATETIME_FIELD_OVERFLOW &&
			e->sqlerrcode != ERRCODE_INVALID_TEXT_REPRESENTATION)
			ReThrowError(e);
		*why = psprintf("\"until\" is not a timestamp: %s", engine_json_text(until, false));
		return false;
	}
	if (c.isnull)
	{
		*why = "\"until\" matched nothing";
		return false;
	}
	*due = c.due;
	return true;
}

/* ----------------------------------------------------------------
 * Fan-out: the elements of a for_each step (compose.c writes and counts
 * them; the transitions they lead to are here)
 * ---------------------------------------------------------------- */

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

/*
 * Every element of a for_each step is done: it succeeds with their results
 * in order, or ends failed (compose_items_finished()); the run goes on.
 */
static void
fan_out_finish(EngineRun *run, StepDef *def)
{
	Datum		results;

	if (compose_items_finished(run, def, &results))
		engine_record_success(run, def, def->step, results, false, false);
	engine_step_done(run, def);
}

/*
 * fill
 *		Make the next elements ready while the limit allows; finish the step
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
			bool		last;
			char	   *element = compose_next_element(run, def, &last);

			if (element == NULL)
			{
				if (last)
					fan_out_finish(run, def);
				break;
			}
			engine_step_ready(run, element);
		}
	}
	PG_FINALLY();
	{
		fills = me.next;
	}
	PG_END_TRY();
}

/*
 * fan_out
 *		A for_each step is ready (its condition held): it starts, its path
 *		is rendered over the run's context, and its elements are written and
 *		the first ones made ready.  An empty array succeeds with [] at once;
 *		anything but an array fails the attempt.
 */
static void
fan_out(EngineRun *run, StepDef *def, Datum *context, bool *context_ready)
{
	Datum		items = engine_render(run, def->for_each_path, context, context_ready);
	Datum		error;

	engine_step_started(run, def->step, NULL);
	switch (compose_fan_out(run, def, items, &error))
	{
		case FAN_OUT_INVALID:
			engine_attempt_failed(run, def->step, error, false, (Datum) 0, true);
			break;
		case FAN_OUT_EMPTY:
			engine_record_success(run, def, def->step, items, false, false);
			engine_step_done(run, def);
			break;
		case FAN_OUT_WRITTEN:
			fill(run, def);
			break;
	}
}

/*
 * element_done
 *		An element succeeded, or failed for good while its step goes on
 *		regardless ("on_error": "continue"): the next one is made ready, or
 *		the step finishes.
 */
static void
element_done(EngineRun *run, StepDef *element, bool failed)
{
	StepDef    *step = engine_step_def(run->name, run->version, element->element_of);

	if (!engine_run_active(run) || !step->found)
		return;
	if (compose_item_done(run, step, failed))
		fan_out_finish(run, step);
	else
		fill(run, step);
}

/*
 * element_final
 *		An element failed for good (failed or dead; its retries are its
 *		own).  Unless the step goes on regardless, the step fails with that
 *		status and the run with it (its other elements are cancelled).
 */
static void
element_final(EngineRun *run, StepDef *element, StepStatus final, Datum error)
{
	StepDef    *step;

	if (element->on_error_continue)
	{
		element_done(run, element, true);
		return;
	}
	step = engine_step_def(run->name, run->version, element->element_of);
	if (!engine_run_active(run) || !step->found)
		return;
	engine_run_finish(run, RUN_FAILED, compose_element_failed(run, step, element, final, error), false);
}

/*
 * engine_step_ready
 *		All of a step's dependencies are done: skip it (condition false) or
 *		start it according to its kind.  sql, external and http steps are
 *		queued; a sleep starts and queues its timer; a wait starts and
 *		succeeds at once with a signal already received, or queues its
 *		timeout.
 */
void
engine_step_ready(EngineRun *run, const char *step)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	Datum		values[3] = {run->id, CStringGetTextDatum(step), (Datum) 0};
	char		nulls[3] = {' ', ' ', 'n'};
	Datum		context = (Datum) 0;
	bool		context_ready = false;
	bool		isnull;

	if (!def->found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not defined in workflow \"%s\" version %d",
						step, run->name, run->version)));

	if (def->has_condition)
	{
		Datum		c[2] = {def->condition, engine_run_context(run, &context, &context_ready)};
		bool		holds;

		engine_stmt(S_CONDITION, NULL, c, NULL);
		holds = engine_col_bool("holds");
		engine_rows_done();
		if (!holds)
		{
			engine_stmt(S_STEP_SKIPPED, &run->leaves, values, NULL);
			engine_emit_jsonb(run, "step.skipped", step, engine_json_object1("when", def->when, false), false);
			engine_step_done(run, def);
			return;
		}
	}

	/* once per element of an array */
	if (def->for_each)
	{
		fan_out(run, def, &context, &context_ready);
		return;
	}

	switch (def->kind)
	{
		case KIND_SQL:
		case KIND_EXTERNAL:
		case KIND_HTTP:
		case KIND_WORKFLOW:
			/*
			 * external input, http request and a child's input rendered
			 * now; a child run is started by the dispatchers' timer pass
			 * (engine_timer.c), like a retry
			 */
			if (def->kind != KIND_SQL && !def->ready_input_isnull)
			{
				values[2] = def->templated
					? engine_render_step(run, def, def->ready_input, &context, &context_ready)
					: def->ready_input;
				nulls[2] = ' ';
			}
			/* no token of its rate limit yet: scheduled for when one is due */
			if (def->rate_key != NULL &&
				rate_limit_schedule(run, def, values[2], nulls[2] == 'n'))
				break;
			engine_stmt(S_MAKE_READY, &run->leaves, values, nulls);
			engine_enqueue(run, step, def->queue, GetCurrentTransactionStartTimestamp());
			break;

		case KIND_SLEEP:
			{
				TimestampTz due;
				char	   *why;

				engine_stmt(S_STEP_READY_AT, &run->leaves, values, NULL);
				engine_step_started(run, step, NULL);
				if (!def->duration_isnull)
				{
					Datum		d[1] = {def->duration};

					engine_stmt(S_DUE_AFTER, NULL, d, NULL);
					due = DatumGetTimestampTz(engine_col("due", &isnull));
					engine_rows_done();
				}
				else if (!until_time(def->templated
									 ? engine_render_step(run, def, def->ready_input, &context, &context_ready)
									 : def->ready_input, &due, &why))
				{
					engine_attempt_failed(run, step, engine_message_error(why), false, (Datum) 0, true);
					return;
				}
				values[2] = engine_jsonb(psprintf("{\"until\": %s}", engine_json_time(due)));
				nulls[2] = ' ';
				engine_stmt(S_SET_INPUT, &run->leaves, values, nulls);
				/* an "until" after the timeout: the timer is the timeout */
				if (!def->timeout_isnull && def->duration_isnull)
				{
					Datum		d[1] = {def->timeout};
					TimestampTz limit;

					engine_stmt(S_DUE_AFTER, NULL, d, NULL);
					limit = DatumGetTimestampTz(engine_col("due", &isnull));
					engine_rows_done();
					if (limit < due)
						due = limit;
				}
				engine_enqueue(run, step, "@timer", due);
				break;
			}

		case KIND_WAIT:
			{
				Datum		g[2] = {run->id, CStringGetTextDatum(def->signal ? def->signal : "")};
				Datum		payload = (Datum) 0;
				bool		received;

				engine_stmt(S_STEP_READY_AT, &run->leaves, values, NULL);
				engine_step_started(run, step, NULL);
				received = engine_stmt(S_FIRST_SIGNAL, NULL, g, NULL) == 1;
				if (received)
					payload = engine_col("payload", &isnull);
				engine_rows_done();
				if (received)
					engine_step_succeeded(run, step, payload, isnull);
				else if (!def->timeout_isnull)
				{
					Datum		d[1] = {def->timeout};
					TimestampTz due;

					engine_stmt(S_DUE_AFTER, NULL, d, NULL);
					due = DatumGetTimestampTz(engine_col("due", &isnull));
					engine_rows_done();
					engine_enqueue(run, step, "@timer", due);
				}
				break;
			}

		default:
			elog(ERROR, "unexpected step kind %d", (int) def->kind);
	}
}

/* Does a step result carry a numeric "cost" (added to the run's cost)? */
static bool
has_numeric_cost(Datum result)
{
	Jsonb	   *jb = DatumGetJsonbP(result);
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(jb))
		return false;
	v = getKeyJsonValueFromContainer(&jb->root, "cost", 4, NULL);
	return v != NULL && v->type == jbvNumeric;
}

/* A numeric "cost" in a step's result is added to the run's cost. */
static void
add_cost(EngineRun *run, Datum result, bool result_isnull)
{
	if (!result_isnull && has_numeric_cost(result))
	{
		Datum		k[2] = {run->id, result};

		engine_stmt(S_ADD_COST, &run->leaves, k, NULL);
	}
}

/*
 * engine_record_success
 *		A step succeeded: its queue row goes (dequeue false: the caller took
 *		it), its result is recorded, its cost added, step.succeeded
 *		appended.  Returns the event's sequence number.
 */
int64
engine_record_success(EngineRun *run, StepDef *def, const char *step,
					  Datum result, bool result_isnull, bool dequeue)
{
	Datum		values[2];
	StepRowTimes times;
	bool		found;

	orchestrator_quota_check_result(run->owner, result, result_isnull);
	values[0] = run->id;
	values[1] = CStringGetTextDatum(step);
	if (dequeue)
		engine_stmt(S_DEQUEUE, NULL, values, NULL);
	found = step_row_succeeded(run, step, result, result_isnull, &times);
	add_cost(run, result, result_isnull);
	if (!found)
		return engine_emit_event(run, true, "step.succeeded", step, result, result_isnull);
	return engine_emit_step_event(run, true, "step.succeeded", step, result, result_isnull, &times);
}

/* An event of a sql step's success, to be counted and announced. */
typedef struct AppendedEvent
{
	int64		seq;
	char	   *type;
	Datum		type_text;
	Datum		data;
	MetricsEvent metrics;
} AppendedEvent;

/*
 * engine_sql_step_succeeded
 *		A sql step run in this transaction succeeded: its row goes from ready
 *		to succeeded, and its step.started (unless started_appended: it was
 *		appended before the statement ran) and step.succeeded are appended,
 *		all in one statement.  step.started is appended afterwards so that
 *		the step costs one statement, not three; the step's own statement
 *		therefore does not see it (it commits with the rest).  dequeue: its
 *		queue row goes too (found at queue_tid, where the claim locked it,
 *		unless it moved).
 */
void
engine_sql_step_succeeded(EngineRun *run, StepDef *def, const char *step,
						  Datum result, bool result_isnull, TimestampTz started_at,
						  bool started_appended, bool dequeue, ItemPointer queue_tid)
{
	StepRowSucceeded row;
	AppendedEvent events[2];
	uint64		n = 0;

	orchestrator_quota_check_result(run->owner, result, result_isnull);
	if (dequeue)
		queue_row_delete(run->id, step, queue_tid);
	if (!step_row_sql_succeeded(run, step, started_at, result, result_isnull, def->args_json, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow run %s has no step \"%s\"", engine_uuid_text(run->id), step)));
	{
		int32		attempt = row.attempt;
		HistoryEvent appended[2];
		int64		first;

		if (!started_appended)
		{
			appended[n].type = "step.started";
			appended[n].step = step;
			appended[n].at = started_at;
			appended[n].data = engine_step_started_data(attempt, "dispatcher");
			n++;
		}
		appended[n].type = "step.succeeded";
		appended[n].step = step;
		appended[n].at = row.finished_at;
		appended[n].data = engine_json_object1("result", result, result_isnull);
		n++;
		first = history_append(run->leaves.events, run->id, (int) n, appended);
		for (uint64 i = 0; i < n; i++)
		{
			AppendedEvent *e = &events[i];

			e->seq = first + i;
			e->type = (char *) appended[i].type;
			e->type_text = CStringGetTextDatum(e->type);
			e->data = appended[i].data;
			memset(&e->metrics, 0, sizeof(MetricsEvent));
			e->metrics.type = e->type;
			e->metrics.run_id = engine_uuid_text(run->id);
			e->metrics.step = step;
			e->metrics.workflow = run->name;
			e->metrics.kind = "sql";
			e->metrics.started_at = started_at;
			e->metrics.ready_at = row.has_ready_at ? row.ready_at : 0;
			e->metrics.at = appended[i].at;
			e->metrics.trace_id = run->trace_id;
			e->metrics.trace_parent = run->trace_parent;
			e->metrics.attempt = attempt;
		}
	}
	for (uint64 i = 0; i < n; i++)
	{
		if (orchestrator_metrics_counts(events[i].type))
			orchestrator_metrics_event(&events[i].metrics);
		engine_announce_event(run, events[i].seq, events[i].type_text, events[i].type, step, events[i].data);
	}
	add_cost(run, result, result_isnull);
}

/*
 * engine_step_done
 *		A step is done (succeeded or skipped): a compensation marks its step
 *		compensated and the saga goes on; otherwise its dependents are
 *		released (those with no dependency left made ready), and the run
 *		succeeds when no step is left open.
 */
void
engine_step_done(EngineRun *run, StepDef *def)
{
	Datum	   *names;
	bool	   *name_nulls;
	int			n;
	bool		made_ready = false;

	/* an element of a for_each step: the step goes on */
	if (def->element_of != NULL)
	{
		element_done(run, def, false);
		return;
	}
	if (def->compensates != NULL)
	{
		Datum		values[2] = {run->id, CStringGetTextDatum(def->compensates)};

		engine_stmt(S_STEP_COMPENSATED, &run->leaves, values, NULL);
		engine_emit(run, "step.compensated", def->compensates, NULL);
		compensate_next(run);
		return;
	}
	if (!engine_run_active(run))
		return;

	deconstruct_array(DatumGetArrayTypeP(def->dependents), TEXTOID, -1, false, TYPALIGN_INT,
					  &names, &name_nulls, &n);
	for (int i = 0; i < n && engine_run_active(run); i++)
	{
		char	   *next = TextDatumGetCString(names[i]);
		StepDef    *next_def = engine_step_def(run->name, run->version, next);
		int32		open;
		int32		attempt;

		/* a plain dependent is made ready by the update that releases it */
		if (!step_row_release(run, next, next_def->plain_when_ready, next_def->ready_input,
							  next_def->ready_input_isnull, &open, &attempt))
			continue;
		if (open != 0)
			continue;
		if (next_def->plain_when_ready)
		{
			/* a sql step may be run at once by the dispatcher's batch */
			if (next_def->kind != KIND_SQL || !engine_chain_offer(run, next, attempt))
				engine_enqueue(run, next, next_def->queue, GetCurrentTransactionStartTimestamp());
			made_ready = true;
		}
		else
			engine_step_ready(run, next);
	}

	/* a step made ready here keeps the run open */
	if (made_ready || !engine_run_active(run))
		return;

	if (def->has_result_template)
	{
		Datum		values[1] = {run->id};
		bool		open;

		engine_stmt(S_OPEN_STEPS, &run->leaves, values, NULL);
		open = engine_col_bool("open");
		engine_rows_done();
		if (!open)
			engine_run_finish(run, RUN_SUCCEEDED, (Datum) 0, true);
		return;
	}
	else
	{
		Datum		values[1] = {run->id};
		RunRowSucceeded row;
		MetricsEvent e;

		engine_flush_deferred_start(run);
		if (!run_row_succeeded(run, &row))
			return;				/* a step is still open */
		memset(&e, 0, sizeof(e));
		e.type = "workflow.succeeded";
		e.run_id = engine_uuid_text(run->id);
		e.workflow = run->name;
		e.at = row.at;
		e.trace_id = row.trace_id;
		e.trace_parent = row.trace_parent;
		e.created_at = row.created_at;
		run->status = RUN_SUCCEEDED;
		/* a run succeeds only when no step is open: a deadline is left */
		if (run->has_deadline)
			engine_stmt(S_DELETE_RUN_QUEUE, NULL, values, NULL);
		engine_append_event(run, "workflow.succeeded", NULL, e.at, row.data);
		orchestrator_metrics_event(&e);
		if (run->admission != 0)
			run_left_slots(run, false);
		if (!row.parent_isnull)
			compose_run_ended(run, row.parent_id, false, row.parent_step);
	}
}

/*
 * engine_step_succeeded
 *		A step that is not run by the caller's own fast path succeeded (a
 *		sleep, a signal, an HTTP response): recorded, then done.
 */
void
engine_step_succeeded(EngineRun *run, const char *step, Datum result, bool result_isnull)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);

	if (!def->found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not defined in workflow \"%s\" version %d",
						step, run->name, run->version)));
	engine_record_success(run, def, step, result, result_isnull, true);
	engine_step_done(run, def);
}

/* {"attempt": n, "error": error[, extra: value]} */
static Datum
attempt_data(int32 attempt, Datum error, const char *extra_key, const char *extra_json)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "{\"attempt\": %d, \"error\": %s", attempt, engine_json_text(error, false));
	if (extra_key)
		appendStringInfo(&s, ", \"%s\": %s", extra_key, extra_json);
	appendStringInfoChar(&s, '}');
	return engine_jsonb(s.data);
}

/*
 * engine_attempt_failed
 *		An attempt failed.  Retried after a backoff (at least retry_after)
 *		while attempts remain and the error is retryable; otherwise the step
 *		is dead (out of attempts) or failed (not retryable), and the run
 *		fails.  Attempts count from the last resume (attempt_base).
 */
void
engine_attempt_failed(EngineRun *run, const char *step, Datum error, bool retryable,
					  Datum retry_after, bool retry_after_isnull)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int32		attempt;
	int32		base;
	bool		isnull;
	StepStatus	final;

	if (!def->found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not defined in workflow \"%s\" version %d",
						step, run->name, run->version)));
	values[0] = run->id;
	values[1] = CStringGetTextDatum(step);
	engine_stmt(S_STEP_ATTEMPTS, &run->leaves, values, NULL);
	attempt = engine_col_int32("attempt");
	base = engine_col_int32("attempt_base");
	engine_rows_done();

	if (retryable && attempt - base < def->max_attempts)
	{
		TimestampTz due;
		char	   *due_json;

		values[2] = error;
		values[3] = def->backoff;
		values[4] = Float8GetDatum(def->multiplier);
		values[5] = Float8GetDatum(def->jitter);
		values[6] = def->max_backoff;
		values[7] = retry_after;
		nulls[7] = retry_after_isnull ? 'n' : ' ';
		values[8] = Int32GetDatum(attempt - base);
		engine_stmt(S_RETRY_STEP, &run->leaves, values, nulls);
		due = DatumGetTimestampTz(engine_col("ready_at", &isnull));
		engine_rows_done();
		/* a retry of a rate-limited step waits for a token as well */
		if (def->rate_key != NULL)
			due = rate_limit_retry(run, def, step, due);
		/*
		 * queued again, lease gone (a child run's step waits on @timer; the
		 * step may have no queue row: a sql step chained by a dispatcher, a
		 * child run's step while its child ran)
		 */
		engine_enqueue(run, step, def->kind == KIND_WORKFLOW ? "@timer" : def->queue, due);
		/* due later: the dispatchers learn when from a wake for timers */
		if (def->kind == KIND_SQL)
			orchestrator_wake_dispatchers_at_commit(WAKE_TIMER);
		due_json = engine_json_time(due);
		engine_emit_jsonb(run, "step.retrying", step, attempt_data(attempt, error, "retry_at", due_json),
						  false);
		return;
	}

	final = retryable ? STEP_DEAD : STEP_FAILED;
	engine_stmt(S_DEQUEUE, NULL, values, NULL);
	values[2] = CStringGetTextDatum(step_status_names[final]);
	values[3] = error;
	engine_stmt(S_STEP_FINAL, &run->leaves, values, NULL);
	engine_emit_jsonb(run, psprintf("step.%s", step_status_names[final]), step,
					  attempt_data(attempt, error, NULL, NULL), false);
	/* an element of a for_each step: the step decides */
	if (def->element_of != NULL)
	{
		element_final(run, def, final, error);
		return;
	}
	/* "on_error": "continue": the run goes on, as after a success */
	if (def->on_error_continue && def->compensates == NULL && engine_run_active(run))
	{
		engine_step_done(run, def);
		return;
	}
	{
		StringInfoData e;

		initStringInfo(&e);
		appendStringInfoString(&e, "{\"step\": ");
		escape_json(&e, step);
		appendStringInfo(&e, ", \"status\": \"%s\", \"error\": %s}", step_status_names[final],
						 engine_json_text(error, false));
		engine_run_finish(run, RUN_FAILED, engine_jsonb(e.data), false);
	}
}

/*
 * engine_sql_attempt_failed
 *		The statement of a sql step failed: the step is marked running (it
 *		was ready until now) and the attempt fails.  Syntax and privilege
 *		errors (class 42) and unsupported features (0A) will not go away by
 *		themselves: no retry.
 */
void
engine_sql_attempt_failed(EngineRun *run, const char *step, TimestampTz started_at, ErrorData *error)
{
	Datum		r[3] = {run->id, CStringGetTextDatum(step), TimestampTzGetDatum(started_at)};
	const char *state = unpack_sql_state(error->sqlerrcode);
	StringInfoData e;

	engine_stmt(S_STEP_RUNNING, &run->leaves, r, NULL);
	initStringInfo(&e);
	engine_error_fields(&e, error);
	if (error->hint && error->hint[0])
	{
		appendStringInfoString(&e, ", \"hint\": ");
		escape_json(&e, error->hint);
	}
	appendStringInfoChar(&e, '}');
	engine_attempt_failed(run, step, engine_jsonb(e.data),
						  strncmp(state, "42", 2) != 0 && strncmp(state, "0A", 2) != 0,
						  (Datum) 0, true);
}

/*
 * engine_lease_expired
 *		A queue row whose lease expired: its holder died or gave up, so the
 *		attempt is lost; it is retried after a backoff, or the step is dead
 *		when attempts are used up.
 */
void
engine_lease_expired(EngineRun *run, const char *step, const char *worker)
{
	StepDef    *def = engine_step_def(run->name, run->version, step);
	bool		timed_out = false;
	StringInfoData e;

	/* the lease ran to the end of the attempt: its timeout, not a lost worker */
	if (def->found && def->kind == KIND_EXTERNAL && !def->timeout_isnull)
	{
		Datum		values[3] = {run->id, CStringGetTextDatum(step), def->timeout};

		if (engine_stmt(S_LEASE_TIMED_OUT, &run->leaves, values, NULL) == 1)
			timed_out = engine_col_bool("timed_out");
		engine_rows_done();
	}

	initStringInfo(&e);
	if (timed_out)
		appendStringInfo(&e, "{\"message\": \"timed out\", \"timeout\": %s, \"worker\": ",
						 engine_json_interval(def->timeout));
	else
		appendStringInfoString(&e, "{\"message\": \"lease expired\", \"worker\": ");
	if (worker)
		escape_json(&e, worker);
	else
		appendStringInfoString(&e, "null");
	appendStringInfoChar(&e, '}');
	engine_attempt_failed(run, step, engine_jsonb(e.data), true, (Datum) 0, true);
}
