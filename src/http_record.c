/*-------------------------------------------------------------------------
 *
 * http_record.c
 *	  What finished HTTP requests mean: for an http step a success, a retry
 *	  or a failure (the transitions of engine.c) and what it tells the
 *	  circuit breaker of its host (breaker.c); for a webhook delivery,
 *	  delivered or tried again (webhook.c).
 *
 * The dispatcher records a batch of finished requests in one transaction
 * (http_record_batch()): the runs of its http steps are locked together,
 * in the order of their ids, and their leases taken (their queue rows
 * deleted), then each item is recorded.  The batch is tried in one subtransaction; only
 * when that fails is it redone item by item, each guarded by its own
 * subtransaction (an error recording one fails that step, not retried, and
 * leaves the others).  One subtransaction per item always would overflow
 * the backend's subxid cache with large batches, which slows every snapshot
 * in the server.
 *
 * A response is recorded when its lease is still the step's (not expired,
 * not superseded, the run still going): the queue row is taken (deleted)
 * at once; otherwise the response is dropped.  2xx/3xx succeed; 429 and
 * 5xx are retried (after Retry-After, when given); other 4xx fail the step;
 * a network error or a timeout is retried, any other error (an invalid or
 * refused URL, a response too large) fails it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "breaker.h"
#include "engine.h"
#include "http_record.h"
#include "http_util.h"
#include "metrics.h"
#include "run_rows.h"
#include "webhook.h"

PG_FUNCTION_INFO_V1(orchestrator_http_step_record);
PG_FUNCTION_INFO_V1(orchestrator_retry_after);

/* A batch being recorded. */
typedef struct RecordBatch
{
	HttpResult *items;
	int			n;
	bool		circuits;		/* some breaker row exists */
	BreakerOutcome *outcomes;	/* of the items, for breaker_apply() */
	int			noutcomes;
	MemoryContext item_context; /* reset after each item */
	HttpResult *current;		/* the item in hand (guarded mode) */
} RecordBatch;

static void
json_key_string(StringInfo s, const char *key, const char *value)
{
	if (value == NULL)
		return;
	if (s->len > 1)
		appendStringInfoString(s, ", ");
	escape_json(s, key);
	appendStringInfoString(s, ": ");
	escape_json(s, value);
}

static Datum
jsonb_of(const char *json)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

/* The response body as JSON text: as it is when it is JSON, else a string. */
static void
append_body(StringInfo s, const char *body, const char *body_kind)
{
	if (body == NULL)
		appendStringInfoString(s, "null");
	else if (body_kind != NULL && strcmp(body_kind, "json") == 0)
		appendStringInfoString(s, body);
	else
		escape_json(s, body);
}

/* Is the run still going (or compensating): may a response be recorded? */
static bool
run_takes_responses(EngineRun *run)
{
	return engine_run_active(run) || run->status == RUN_COMPENSATING;
}

/*
 * record_taken
 *		Record the outcome of one http step's request, whose run is locked
 *		and whose lease was taken.  Returns true when it tells the host's
 *		circuit breaker something, in *outcome (its strings in "keep").
 */
static bool
record_taken(const HttpResult *r, EngineRun *run, bool circuits, BreakerOutcome *outcome,
			 MemoryContext keep)
{
	bool		has_status = r->status > 0;
	int32		status = r->status;
	StepDef    *def;
	StringInfoData s;
	bool		failed = false;
	bool		counts = false;

	orchestrator_metrics_http(false, status, r->error_kind);
	def = engine_step_def(run->name, run->version, r->step);
	if (!def->found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step \"%s\" is not defined in workflow \"%s\" version %d",
						r->step, run->name, run->version)));

	/* step.http: what came back */
	initStringInfo(&s);
	appendStringInfo(&s, "{\"attempt\": %d", run->attempt);
	if (has_status)
		appendStringInfo(&s, ", \"status\": %d", status);
	appendStringInfo(&s, ", \"elapsed_ms\": %.1f", r->elapsed_ms);
	json_key_string(&s, "error", r->error);
	json_key_string(&s, "error_kind", r->error_kind);
	appendStringInfoChar(&s, '}');
	engine_emit(run, "step.http", r->step, s.data);

	if (!has_status)
	{
		/* a network error or a timeout is the host's failure, and retried */
		failed = r->error_kind != NULL &&
			(strcmp(r->error_kind, "network") == 0 || strcmp(r->error_kind, "timeout") == 0);
		counts = failed;
		resetStringInfo(&s);
		appendStringInfoChar(&s, '{');
		json_key_string(&s, "message", r->error);
		json_key_string(&s, "kind", r->error_kind);
		json_key_string(&s, "url", r->url);
		appendStringInfoChar(&s, '}');
		engine_attempt_failed(run, r->step, jsonb_of(s.data), failed, (Datum) 0, true);
	}
	else if (status >= 400)
	{
		char	   *message = psprintf("HTTP %d from %s", status, r->url ? r->url : "");

		resetStringInfo(&s);
		appendStringInfoString(&s, "{\"message\": ");
		escape_json(&s, message);
		appendStringInfo(&s, ", \"status\": %d", status);
		if (r->body != NULL && strlen(r->body) <= 4096)
		{
			appendStringInfoString(&s, ", \"body\": ");
			append_body(&s, r->body, r->body_kind);
		}
		appendStringInfoChar(&s, '}');
		if (status == 429 || status >= 500)
		{
			Datum		retry_after = (Datum) 0;
			bool		has_retry_after = http_retry_after(r->retry_after, &retry_after);

			engine_attempt_failed(run, r->step, jsonb_of(s.data), true, retry_after,
								  !has_retry_after);
			failed = status >= 500;
			counts = status >= 500 || circuits;
			/* 429: rate limited, not down */
			if (status == 429)
				counts = false;
		}
		else
		{
			engine_attempt_failed(run, r->step, jsonb_of(s.data), false, (Datum) 0, true);
			counts = circuits;
		}
	}
	else
	{
		resetStringInfo(&s);
		appendStringInfo(&s, "{\"status\": %d, \"headers\": %s, \"body\": ", status,
						 r->headers ? r->headers : "null");
		append_body(&s, r->body, r->body_kind);
		if (r->body_kind != NULL && strcmp(r->body_kind, "base64") == 0)
			appendStringInfoString(&s, ", \"body_encoding\": \"base64\"");
		appendStringInfoChar(&s, '}');
		engine_record_success(run, def, r->step, jsonb_of(s.data), false, false);
		engine_step_done(run, def);
		/* a success meets no breaker at all, in the usual case */
		counts = circuits;
	}

	if (counts)
	{
		char	   *host = orchestrator_http_breaker_key(r->url);

		if (host == NULL)
			return false;
		outcome->owner = run->owner;
		outcome->host = MemoryContextStrdup(keep, host);
		outcome->failed = failed;
		outcome->run_id = r->run_id;
		outcome->step = MemoryContextStrdup(keep, r->step);
		return true;
	}
	return false;
}

/*
 * record_step
 *		Record the outcome of one http step's request: its run locked, its
 *		lease taken, one statement each (the guarded, item-by-item path).
 */
static bool
record_step(const HttpResult *r, bool circuits, BreakerOutcome *outcome, MemoryContext keep)
{
	EngineRun	run;

	if (!engine_lock_run(UUIDPGetDatum(&r->run_id), r->step, false, &run) ||
		!run_takes_responses(&run))
		return false;
	/* stale (the lease expired or was superseded): dropped */
	if (!engine_take_leased(&run, r->step, UUIDPGetDatum(&r->token)))
		return false;
	return record_taken(r, &run, circuits, outcome, keep);
}

/* Record item i of the batch (its memory is reset afterwards). */
static void
record_item(RecordBatch *b, HttpResult *r)
{
	MemoryContext keep = CurrentMemoryContext;

	MemoryContextSwitchTo(b->item_context);
	if (r->is_webhook)
		webhook_record(r);
	else if (record_step(r, b->circuits, &b->outcomes[b->noutcomes], keep))
		b->noutcomes++;
	MemoryContextSwitchTo(keep);
	MemoryContextReset(b->item_context);
}

/* http steps of a batch in the order of their runs' ids (then as given) */
static int
item_order(const void *x, const void *y, void *arg)
{
	const HttpResult *items = arg;
	int			i = *(const int *) x;
	int			j = *(const int *) y;
	int			c = memcmp(&items[i].run_id, &items[j].run_id, sizeof(pg_uuid_t));

	return c != 0 ? c : (i > j) - (i < j);
}

/*
 * lock_and_take
 *		The runs of the batch's http steps are locked, in the order of their
 *		ids (engine_lock_runs(), per partition set), and then the leases
 *		still held of those whose run takes responses are taken
 *		(queue_row_take_leased()): taken[i] says which.  Items of one run
 *		share its EngineRun (*run_of[i]), so that what one does to the run
 *		(ends it) the next one sees; attempts[i] is the attempt of item i's
 *		step (the one its request carries, else read with the lock).
 */
static void
lock_and_take(RecordBatch *b, EngineRun **run_of, int32 *attempts, bool *taken)
{
	int			n = b->n;
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	RunLeaves  *leaves = palloc(sizeof(RunLeaves) * Max(n, 1));
	bool	   *has_leaves = palloc0(sizeof(bool) * Max(n, 1));
	EngineRun  *runs = palloc0(sizeof(EngineRun) * Max(n, 1));
	bool	   *found = palloc0(sizeof(bool) * Max(n, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	char	  **steps = palloc(sizeof(char *) * Max(n, 1));
	Datum	   *tokens = palloc(sizeof(Datum) * Max(n, 1));
	int		   *which = palloc(sizeof(int) * Max(n, 1));
	int			nsteps = 0;
	int			ntake = 0;

	for (int i = 0; i < n; i++)
	{
		run_of[i] = NULL;
		taken[i] = false;
		if (!b->items[i].is_webhook)
			order[nsteps++] = i;
	}
	qsort_arg(order, nsteps, sizeof(int), item_order, b->items);
	for (int k = 0; k < nsteps; k++)
	{
		HttpResult *r = &b->items[order[k]];

		has_leaves[k] = orchestrator_run_leaves(UUIDPGetDatum(&r->run_id), &leaves[k], true);
	}

	/* runs of one partition set are next to each other in the order of ids */
	for (int first = 0; first < nsteps;)
	{
		int			end = first + 1;

		while (end < nsteps && has_leaves[end] == has_leaves[first] &&
			   (!has_leaves[first] || memcmp(&leaves[end], &leaves[first], sizeof(RunLeaves)) == 0))
			end++;
		if (has_leaves[first])
		{
			for (int k = first; k < end; k++)
			{
				ids[k - first] = UUIDPGetDatum(&b->items[order[k]].run_id);
				/* the attempt its lease is for is known: not read again */
				steps[k - first] = b->items[order[k]].attempt > 0 ? NULL : (char *) b->items[order[k]].step;
			}
			engine_lock_runs(&leaves[first], end - first, ids, steps, found + first, runs + first);
		}
		first = end;
	}

	for (int k = 0; k < nsteps; k++)
	{
		int			i = order[k];
		HttpResult *r = &b->items[i];
		int			rep = k;

		if (!found[k])
			continue;
		/* the first item of its run holds the run for all of them */
		if (k > 0 && run_of[order[k - 1]] != NULL &&
			memcmp(&b->items[order[k - 1]].run_id, &r->run_id, sizeof(pg_uuid_t)) == 0)
			rep = (int) (run_of[order[k - 1]] - runs);
		run_of[i] = &runs[rep];
		attempts[i] = r->attempt > 0 ? r->attempt : runs[k].attempt;
		if (!run_takes_responses(run_of[i]))
			continue;
		ids[ntake] = UUIDPGetDatum(&r->run_id);
		steps[ntake] = (char *) r->step;
		tokens[ntake] = UUIDPGetDatum(&r->token);
		which[ntake] = i;
		ntake++;
	}
	/* the leases still held, unexpired, are taken (their queue rows deleted) */
	for (int k = 0; k < ntake; k++)
		taken[which[k]] = queue_row_take_leased(ids[k], steps[k], tokens[k]);
}

/*
 * record_all
 *		The whole batch, in the subtransaction of engine_try(): the runs of
 *		its http steps locked and their leases taken together, then each
 *		item recorded in turn.  A response whose run is gone or no longer
 *		going, or whose lease is stale, is dropped.
 */
static void
record_all(void *arg)
{
	RecordBatch *b = arg;
	EngineRun **run_of = palloc(sizeof(EngineRun *) * Max(b->n, 1));
	int32	   *attempts = palloc0(sizeof(int32) * Max(b->n, 1));
	bool	   *taken = palloc(sizeof(bool) * Max(b->n, 1));

	b->noutcomes = 0;
	lock_and_take(b, run_of, attempts, taken);
	for (int i = 0; i < b->n; i++)
	{
		HttpResult *r = &b->items[i];
		MemoryContext keep = CurrentMemoryContext;

		if (!r->is_webhook)
		{
			/* another response of its run may have ended it meanwhile */
			if (!taken[i] || !run_takes_responses(run_of[i]))
				continue;
			run_of[i]->attempt = attempts[i];
			MemoryContextSwitchTo(b->item_context);
			if (record_taken(r, run_of[i], b->circuits, &b->outcomes[b->noutcomes], keep))
				b->noutcomes++;
			MemoryContextSwitchTo(keep);
			MemoryContextReset(b->item_context);
		}
		else
			record_item(b, r);
	}
	if (b->noutcomes > 0)
		breaker_apply(b->outcomes, b->noutcomes);
}

static void
record_current(void *arg)
{
	RecordBatch *b = arg;

	record_item(b, b->current);
}

static void
apply_breakers(void *arg)
{
	RecordBatch *b = arg;

	breaker_apply(b->outcomes, b->noutcomes);
}

/*
 * fail_internal
 *		Recording a step's response failed: the attempt fails, not retried,
 *		unless its lease is gone (then nothing).
 */
static void
fail_internal(void *arg)
{
	RecordBatch *b = arg;
	HttpResult *r = b->current;
	ErrorData  *e = r->record_error;
	EngineRun	run;
	Datum		values[3] = {UUIDPGetDatum(&r->run_id), CStringGetTextDatum(r->step),
	UUIDPGetDatum(&r->token)};
	bool		held;
	StringInfoData s;

	if (!engine_lock_run(values[0], r->step, false, &run))
		return;
	engine_stmt(S_HTTP_LEASE_HELD, NULL, values, NULL);
	held = engine_col_bool("held");
	engine_rows_done();
	if (!held)
		return;
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"message\": ");
	escape_json(&s, e->message ? e->message : "");
	appendStringInfoString(&s, ", \"sqlstate\": ");
	escape_json(&s, unpack_sql_state(e->sqlerrcode));
	appendStringInfoString(&s, ", \"internal\": true}");
	engine_attempt_failed(&run, r->step, jsonb_of(s.data), false, (Datum) 0, true);
}

/* Item by item, each in a subtransaction of its own. */
static void
record_guarded(RecordBatch *b)
{
	ErrorData  *error;

	b->noutcomes = 0;
	for (int i = 0; i < b->n; i++)
	{
		HttpResult *r = &b->items[i];

		b->current = r;
		if (engine_try(record_current, b, &error))
			continue;
		MemoryContextReset(b->item_context);
		if (r->is_webhook)
		{
			/* its lease expires and the delivery is tried again */
			ereport(WARNING,
					(errmsg("orchestrator: recording webhook delivery %s failed: %s",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&r->id))),
							error->message)));
			continue;
		}
		ereport(WARNING,
				(errmsg("orchestrator: recording the response of step \"%s\" of run %s failed: %s",
						r->step,
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&r->run_id))),
						error->message)));
		r->record_error = error;
		/* when this fails too, its lease expires and the attempt is retried */
		(void) engine_try(fail_internal, b, &error);
	}
	if (b->noutcomes > 0 && !engine_try(apply_breakers, b, &error))
		ereport(WARNING,
				(errmsg("orchestrator: updating circuit breakers failed: %s", error->message)));
}

static void
record_batch_work(void *arg)
{
	RecordBatch *b = arg;
	ErrorData  *error;

	engine_stmt(S_CIRCUITS_EXIST, NULL, NULL, NULL);
	b->circuits = engine_col_bool("exist");
	engine_rows_done();
	b->outcomes = palloc0(sizeof(BreakerOutcome) * Max(b->n, 1));
	b->item_context = AllocSetContextCreate(CurrentMemoryContext, "orchestrator http record",
											ALLOCSET_DEFAULT_SIZES);
	if (!engine_try(record_all, b, &error))
		record_guarded(b);
}

/*
 * http_record_batch
 *		Record n finished requests in the caller's transaction.
 */
void
http_record_batch(HttpResult *items, int n)
{
	RecordBatch b;

	memset(&b, 0, sizeof(b));
	b.items = items;
	b.n = n;
	engine_unit(record_batch_work, &b);
}

/* _http_step_record(): one step, guarded by nothing (for tests) */
typedef struct StepRecordCall
{
	HttpResult *r;
	MemoryContext caller_context;
	bool		has_outcome;
	BreakerOutcome outcome;
} StepRecordCall;

static void
step_record_work(void *arg)
{
	StepRecordCall *c = arg;
	bool		circuits;

	RunLeaves	leaves;

	engine_stmt(S_CIRCUITS_EXIST, NULL, NULL, NULL);
	circuits = engine_col_bool("exist");
	engine_rows_done();
	/* the URL the step's request was rendered with */
	if (orchestrator_run_leaves(UUIDPGetDatum(&c->r->run_id), &leaves, true))
	{
		Datum		values[2] = {UUIDPGetDatum(&c->r->run_id), CStringGetTextDatum(c->r->step)};
		bool		isnull;

		if (engine_stmt(S_STEP_INPUT, &leaves, values, NULL) == 1)
		{
			Datum		input = engine_col("input", &isnull);
			Jsonb	   *jb = isnull ? NULL : DatumGetJsonbP(input);
			JsonbValue *url = jb != NULL && JB_ROOT_IS_OBJECT(jb)
				? getKeyJsonValueFromContainer(&jb->root, "url", 3, NULL) : NULL;

			if (url != NULL && url->type == jbvString)
				c->r->url = pnstrdup(url->val.string.val, url->val.string.len);
		}
		engine_rows_done();
	}
	c->has_outcome = record_step(c->r, circuits, &c->outcome, c->caller_context);
}

static char *
arg_text(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/*
 * _http_step_record(run_id, step, token, status, headers, body, body_kind,
 *		error_kind, error, elapsed_ms, OUT owner, OUT host, OUT failed)
 *		Record one finished attempt of an http step, as the dispatcher
 *		does.  Returns the breaker's key
 *		and whether the attempt counts as a failure of the host (NULL host:
 *		no effect on the breaker, or a stale response that was dropped).
 */
Datum
orchestrator_http_step_record(PG_FUNCTION_ARGS)
{
	StepRecordCall c;
	HttpResult	r;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id, step and lease token must not be null")));
	memset(&r, 0, sizeof(r));
	memcpy(&r.run_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	r.step = arg_text(fcinfo, 1);
	memcpy(&r.token, PG_GETARG_UUID_P(2), sizeof(pg_uuid_t));
	r.status = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	if (!PG_ARGISNULL(4))
	{
		Jsonb	   *h = PG_GETARG_JSONB_P(4);
		JsonbValue *v = JB_ROOT_IS_OBJECT(h)
			? getKeyJsonValueFromContainer(&h->root, "retry-after", 11, NULL) : NULL;

		r.headers = JsonbToCString(NULL, &h->root, 0);
		if (v != NULL && v->type == jbvString)
			r.retry_after = pnstrdup(v->val.string.val, v->val.string.len);
	}
	r.body = arg_text(fcinfo, 5);
	r.body_kind = arg_text(fcinfo, 6);
	r.error_kind = arg_text(fcinfo, 7);
	r.error = arg_text(fcinfo, 8);
	r.elapsed_ms = PG_ARGISNULL(9) ? 0 : PG_GETARG_FLOAT8(9);

	memset(&c, 0, sizeof(c));
	c.r = &r;
	c.caller_context = CurrentMemoryContext;
	engine_unit(step_record_work, &c);
	if (c.has_outcome)
	{
		values[0] = ObjectIdGetDatum(c.outcome.owner);
		values[1] = CStringGetTextDatum(c.outcome.host);
		values[2] = BoolGetDatum(c.outcome.failed);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * _retry_after(value): seconds or an HTTP date in a Retry-After header, as
 * a delay of at most a day (NULL: none, or it does not parse).
 */
Datum
orchestrator_retry_after(PG_FUNCTION_ARGS)
{
	Datum		delay;

	if (!http_retry_after(text_to_cstring(PG_GETARG_TEXT_PP(0)), &delay))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(delay);
}
