/*-------------------------------------------------------------------------
 *
 * http_claim.c
 *	  The claim of due http steps: each becomes a request to send.
 *
 * A dispatcher's HTTP turn (http.c) claims in one short transaction: rows of
 * the '@http' queue in index order, skipping locked ones, then their runs,
 * skipping locked ones (nobody waits).  While every circuit breaker is
 * closed (usually), the steps start together: their runs are locked, the
 * pending ones started and the attempts counted, row by row through the
 * access methods (engine_steps_started()); then each step's request, read
 * from its rendered input, is checked (a URL that is not http(s) or not allowed
 * fails the attempt at once, not retryable).  While some breaker is not
 * closed, the steps go one at a time, the request checked and its host's
 * breaker asked before the attempt starts (an open circuit moves the row to
 * later without counting an attempt).  A started step's queue row gets a
 * lease for the step's timeout plus a margin, held by "http:<pid>" (the
 * leases of a claim given at its end).  A lease left by a dispatcher that
 * died is a lost attempt (engine_lease_expired); with "recover" (a
 * dispatcher's first claim) the leases of dispatchers that no longer run
 * expire at once.  Nothing is sent here: the caller commits first.
 * Webhook deliveries are claimed afterwards (webhook.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "breaker.h"
#include "engine.h"
#include "guc.h"
#include "http_claim.h"
#include "http_util.h"
#include "run_rows.h"

/* a request's lease: its timeout plus this, to answer and be recorded */
#define HTTP_LEASE_MARGIN_MS	30000

/* a lease to give (the claim's rows are leased together, at its end) */
typedef struct Lease
{
	Datum		run_id;
	const char *step;
	Datum		token;
	Datum		lease;
	ItemPointerData tid;		/* the queue row the claim locked (invalid: unknown) */
} Lease;

typedef struct ClaimArgs
{
	MemoryContext caller_context;	/* where the claims go */
	MemoryContext unit_context; /* the claim's own */
	Lease	   *leases;
	int			nleases;
	int			max_items;
	const char *worker;
	bool		recover;
	HttpStepClaim *claims;
	int			n;
	/* runs that this claim ended: their other rows are not started */
	Datum	   *ended;
	int			nended;
} ClaimArgs;

/* The value of key in a jsonb object, or NULL. */
static JsonbValue *
object_value(Jsonb *jb, const char *key)
{
	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return NULL;
	return getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
}

/* A JSON value as JSON text. */
static char *
json_text(JsonbValue *v)
{
	return JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
}

/* A JSON value as text (#>> '{}'): a string as is, null as "", else JSON. */
static char *
json_value_text(JsonbValue *v)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNull)
		return pstrdup("");
	return json_text(v);
}

/* ms in an interval, at least 1 (0: none) */
static int
interval_ms(Datum interval)
{
	Interval   *i = DatumGetIntervalP(interval);
	double		us = (double) i->time + (double) i->day * USECS_PER_DAY +
		(double) i->month * DAYS_PER_MONTH * USECS_PER_DAY;

	return (int) Max(1, Min(us / 1000.0, (double) INT_MAX));
}

/* A request's lease: its timeout, plus the margin to answer and be recorded. */
static Datum
lease_interval(int timeout_ms)
{
	Interval   *i = palloc0(sizeof(Interval));

	i->time = ((int64) timeout_ms + HTTP_LEASE_MARGIN_MS) * 1000;
	return IntervalPGetDatum(i);
}

/*
 * fail_unsendable
 *		A request that can never be sent (no string URL, headers that are not
 *		an object, a URL not http(s) or not allowed): the attempt fails, not
 *		retryable.
 */
static void
fail_unsendable(EngineRun *run, const char *step, const char *kind, const char *message,
				JsonbValue *url)
{
	StringInfoData e;

	initStringInfo(&e);
	appendStringInfoString(&e, "{\"message\": ");
	escape_json(&e, message);
	appendStringInfoString(&e, ", \"kind\": ");
	escape_json(&e, kind);
	appendStringInfoString(&e, ", \"url\": ");
	appendStringInfoString(&e, url != NULL ? json_text(url) : "null");
	appendStringInfoChar(&e, '}');
	engine_attempt_failed(run, step, DirectFunctionCall1(jsonb_in, CStringGetDatum(e.data)),
						  false, (Datum) 0, true);
}

/*
 * request_headers
 *		"Name: value" lines of the request's headers, then Idempotency-Key
 *		(the same on every attempt, so receivers can de-duplicate) and the
 *		W3C traceparent of the attempt, unless the step sets them.
 */
static void
request_headers(HttpStepClaim *c, Jsonb *headers, EngineRun *run, const char *step, int32 attempt)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	int			room = 2;
	bool		has_key = false;
	bool		has_trace = false;

	if (headers != NULL)
		room += JsonContainerSize(&headers->root);
	c->headers = palloc0(sizeof(char *) * room);
	c->nheaders = 0;
	if (headers != NULL)
	{
		char	   *name = NULL;

		it = JsonbIteratorInit(&headers->root);
		while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (r == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (r == WJB_VALUE && name != NULL)
			{
				has_key |= pg_strcasecmp(name, "idempotency-key") == 0;
				has_trace |= pg_strcasecmp(name, "traceparent") == 0;
				c->headers[c->nheaders++] = psprintf("%s: %s", name, json_value_text(&v));
				name = NULL;
			}
		}
	}
	if (!has_key)
		c->headers[c->nheaders++] = psprintf("Idempotency-Key: %s/%s",
											 DatumGetCString(DirectFunctionCall1(uuid_out, run->id)), step);
	if (!has_trace)
		c->headers[c->nheaders++] = psprintf("traceparent: %s", engine_traceparent(run, step, attempt));
}

/* A step's rendered request, read and checked. */
typedef struct RequestParts
{
	Jsonb	   *request;
	JsonbValue *url;
	JsonbValue *headers;
	char	   *url_text;
	char	   *host;			/* the URL's host (NULL: the URL is not valid) */
	char	   *why;			/* why it cannot be sent, or NULL */
	const char *why_kind;
	int			timeout_ms;
} RequestParts;

/* Read and check the request of a step (input: its rendered request). */
static void
request_parts(Jsonb *request, StepDef *def, RequestParts *p)
{
	memset(p, 0, sizeof(*p));
	p->request = request;
	p->why_kind = "invalid";
	p->timeout_ms = def->found && !def->timeout_isnull ? interval_ms(def->timeout)
		: Max(orchestrator_default_step_timeout, 1);

	p->url = object_value(request, "url");
	p->headers = object_value(request, "headers");
	if (p->headers != NULL && p->headers->type == jbvNull)
		p->headers = NULL;
	if (p->url == NULL || p->url->type != jbvString)
		p->why = psprintf("the rendered url is %s, not a string",
						  p->url == NULL ? "null" : json_text(p->url));
	else if (p->headers != NULL && !(p->headers->type == jbvBinary &&
									 JsonContainerIsObject(p->headers->val.binary.data)))
	{
		char	   *text = json_text(p->headers);

		p->why = psprintf("the rendered headers are %.*s, not an object",
						  pg_mbcliplen(text, strlen(text), 200), text);
	}
	else
	{
		bool		invalid;

		p->url_text = pnstrdup(p->url->val.string.val, p->url->val.string.len);
		p->why = orchestrator_http_check_url(p->url_text, &invalid, &p->host, NULL);
		p->why_kind = invalid ? "invalid" : "refused";
	}
}

/*
 * claim_started
 *		A step whose attempt started: turn it into a request (true, in *c),
 *		or fail the attempt when it cannot be sent (false).
 */
static bool
claim_started(ClaimArgs *a, EngineRun *run, const char *step, ItemPointer tid,
			  RequestParts *p, int32 attempt, HttpStepClaim *c)
{
	JsonbValue *method;
	JsonbValue *body;
	Jsonb	   *headers_jb = NULL;
	Datum		token;

	if (p->why != NULL)
	{
		fail_unsendable(run, step, p->why_kind, p->why, p->url);
		return false;
	}

	/* its lease, given with the others' at the end of the claim */
	{
		MemoryContext row_context = MemoryContextSwitchTo(a->unit_context);
		Lease	   *l = &a->leases[a->nleases++];

		token = engine_random_uuid();
		l->run_id = run->id;
		l->step = step;
		l->token = token;
		l->lease = lease_interval(p->timeout_ms);
		l->tid = *tid;
		MemoryContextSwitchTo(row_context);
	}

	/* the request, in the caller's memory */
	{
		MemoryContext unit_context = MemoryContextSwitchTo(a->caller_context);

		memcpy(&c->run_id, DatumGetUUIDP(run->id), sizeof(pg_uuid_t));
		memcpy(&c->token, DatumGetUUIDP(token), sizeof(pg_uuid_t));
		c->attempt = attempt;
		c->step = pstrdup(step);
		method = object_value(p->request, "method");
		c->method = method != NULL && method->type == jbvString
			? pnstrdup(method->val.string.val, method->val.string.len) : pstrdup("GET");
		c->url = pstrdup(p->url_text);
		if (p->headers != NULL)
			headers_jb = JsonbValueToJsonb(p->headers);
		request_headers(c, headers_jb, run, step, attempt);
		body = object_value(p->request, "body");
		c->body = body != NULL && strcmp(c->method, "GET") != 0 && strcmp(c->method, "HEAD") != 0
			? JsonbToCString(NULL, &JsonbValueToJsonb(body)->root, 0) : NULL;
		c->timeout_ms = p->timeout_ms;
		MemoryContextSwitchTo(unit_context);
	}
	return true;
}

/*
 * claim_one
 *		Turn one claimed step of a locked run into a request (true), or
 *		fail it, or let it wait for its host's circuit (false): one step at
 *		a time, while some circuit is not closed.
 */
static bool
claim_one(ClaimArgs *a, EngineRun *run, const char *step, ItemPointer tid, HttpStepClaim *c)
{
	Datum		values[5];
	bool		isnull;
	Jsonb	   *request = NULL;
	StepDef    *def = engine_step_def(run->name, run->version, step);
	RequestParts p;
	int32		attempt;

	values[0] = run->id;
	values[1] = CStringGetTextDatum(step);
	if (engine_stmt(S_STEP_INPUT, &run->leaves, values, NULL) == 1)
	{
		Datum		input = engine_col("input", &isnull);

		if (!isnull)
			request = DatumGetJsonbP(input);
	}
	engine_rows_done();
	request_parts(request, def, &p);

	if (p.why == NULL)
	{
		TimestampTz wait;
		const char *host = p.host != NULL ? p.host : "";

		if (!breaker_admit(run->owner, host, lease_interval(p.timeout_ms), &wait))
		{
			/* the host's circuit is open: wait without counting an attempt */
			Datum		w[4] = {run->id, CStringGetTextDatum(step), TimestampTzGetDatum(wait),
				CStringGetTextDatum(breaker_tag(run->owner, host))};

			engine_stmt(S_HTTP_CIRCUIT_WAIT, NULL, w, NULL);
			return false;
		}
	}

	attempt = engine_step_started(run, step, a->worker);
	return claim_started(a, run, step, tid, &p, attempt, c);
}

/* Did this claim end the run (a step's failure failed it)? */
static bool
ended_here(ClaimArgs *a, Datum run_id)
{
	for (int k = 0; k < a->nended; k++)
		if (memcmp(DatumGetUUIDP(a->ended[k]), DatumGetUUIDP(run_id), UUID_LEN) == 0)
			return true;
	return false;
}

/*
 * note_ended
 *		A row of the claim failed its step, and that changed its run's
 *		status (it failed, or compensates): the run's end cancelled its other
 *		steps and took their queue rows, so the claim's other rows of that
 *		run are left alone.
 */
static void
note_ended(ClaimArgs *a, EngineRun *run, RunStatus before)
{
	if (run->status != before && !ended_here(a, run->id))
		a->ended[a->nended++] = run->id;
}

/*
 * claim_batch
 *		With every circuit closed, the claimed steps start together: their
 *		runs are locked, started and the attempts counted, per partition set
 *		(engine_steps_started()), then each becomes a request or fails (in a
 *		memory context reset after each: the request is copied to the
 *		caller's).  A row whose run another row of the claim ended (an
 *		expired lease or a request that could not be sent failed it) is not
 *		started, or not sent: the run's end cancelled its step.
 */
static void
claim_batch(ClaimArgs *a, EngineClaim *claimed, int n)
{
	RunLeaves  *leaves = palloc(sizeof(RunLeaves) * Max(n, 1));
	bool	   *has_leaves = palloc0(sizeof(bool) * Max(n, 1));
	bool	   *grouped = palloc0(sizeof(bool) * Max(n, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	char	  **steps = palloc(sizeof(char *) * Max(n, 1));
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * Max(n, 1));
	EngineRun  *runs = palloc0(sizeof(EngineRun) * Max(n, 1));
	bool	   *started = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *inputs = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *inputs_isnull = palloc(sizeof(bool) * Max(n, 1));
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext row_context = AllocSetContextCreate(outer, "orchestrator http claim row",
													  ALLOCSET_DEFAULT_SIZES);

	for (int i = 0; i < n; i++)
		has_leaves[i] = !ended_here(a, UUIDPGetDatum(&claimed[i].run_id)) &&
			orchestrator_run_leaves(UUIDPGetDatum(&claimed[i].run_id), &leaves[i], true);

	for (int first = 0; first < n; first++)
	{
		int			m = 0;

		if (grouped[first] || !has_leaves[first])
			continue;
		/* the rows of runs in the same partitions as this one, in claim order */
		for (int i = first; i < n; i++)
		{
			if (grouped[i] || !has_leaves[i] || memcmp(&leaves[i], &leaves[first], sizeof(RunLeaves)) != 0)
				continue;
			grouped[i] = true;
			ids[m] = UUIDPGetDatum(&claimed[i].run_id);
			steps[m] = claimed[i].step;
			tids[m] = claimed[i].tid;
			m++;
		}
		engine_steps_started(&leaves[first], m, ids, steps, a->worker, started, runs, inputs, inputs_isnull);
		for (int k = 0; k < m; k++)
		{
			EngineRun  *run = &runs[k];
			RunStatus	before = run->status;
			RequestParts p;

			if (!started[k] || ended_here(a, run->id))
				continue;
			MemoryContextSwitchTo(row_context);
			request_parts(inputs_isnull[k] ? NULL : DatumGetJsonbP(inputs[k]),
						  engine_step_def(run->name, run->version, steps[k]), &p);
			if (claim_started(a, run, steps[k], &tids[k], &p, run->attempt + 1, &a->claims[a->n]))
				a->n++;
			else
				note_ended(a, run, before);
			MemoryContextSwitchTo(outer);
			MemoryContextReset(row_context);
		}
	}
	MemoryContextDelete(row_context);
}

static void
claim_work(void *arg)
{
	ClaimArgs  *a = arg;
	EngineClaim *claimed;
	EngineClaim *fresh;
	uint64		nclaimed;
	int			nfresh = 0;
	bool		circuits;

	if (a->recover)
		engine_stmt(S_HTTP_RECOVER, NULL, NULL, NULL);

	/* breakers are looked at only while one is not closed (usually never) */
	engine_stmt(S_HTTP_CIRCUITS_OPEN, NULL, NULL, NULL);
	circuits = engine_col_bool("open");
	engine_rows_done();

	nclaimed = engine_claim("@http", a->max_items, (Datum) 0, &claimed);
	a->claims = MemoryContextAllocZero(a->caller_context, sizeof(HttpStepClaim) * Max(nclaimed, 1));
	a->ended = palloc(sizeof(Datum) * Max(nclaimed, 1));
	a->unit_context = CurrentMemoryContext;
	a->leases = palloc(sizeof(Lease) * Max(nclaimed, 1));
	fresh = palloc(sizeof(EngineClaim) * Max(nclaimed, 1));
	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineRun	run;
		RunStatus	before;

		if (!claimed[i].leased && !circuits)
		{
			fresh[nfresh++] = claimed[i];	/* started together, below */
			continue;
		}
		if (ended_here(a, UUIDPGetDatum(&claimed[i].run_id)) ||
			!engine_lock_run(UUIDPGetDatum(&claimed[i].run_id), NULL, true, &run))
			continue;
		before = run.status;
		if (claimed[i].leased)
		{
			/* a lease left by a dispatcher that died or lost track */
			engine_lease_expired(&run, claimed[i].step, claimed[i].worker);
			note_ended(a, &run, before);
			continue;
		}
		if (claim_one(a, &run, claimed[i].step, &claimed[i].tid, &a->claims[a->n]))
			a->n++;
		else
			note_ended(a, &run, before);
	}
	if (nfresh > 0)
		claim_batch(a, fresh, nfresh);

	/*
	 * the leases, held by this dispatcher (the queue rows are locked): one
	 * after another, so that the queue's pages are visited together, each
	 * written where the claim locked its row when that is known
	 */
	for (int k = 0; k < a->nleases; k++)
		queue_row_lease(a->leases[k].run_id, a->leases[k].step, a->leases[k].token,
						a->leases[k].lease, a->worker, DT_NOEND, &a->leases[k].tid);
}

/*
 * orchestrator_http_claim_steps
 *		Claim up to max_items due http steps for this dispatcher ("worker"
 *		holds their leases); returns how many requests, in *claims (in the
 *		current memory context).
 */
int
orchestrator_http_claim_steps(int max_items, const char *worker, bool recover, HttpStepClaim **claims)
{
	ClaimArgs	a;

	memset(&a, 0, sizeof(a));
	a.caller_context = CurrentMemoryContext;
	a.max_items = max_items;
	a.worker = worker;
	a.recover = recover;
	engine_unit(claim_work, &a);
	*claims = a.claims;
	return a.n;
}

/*
 * http_next_wake
 *		When a dispatcher should next look for HTTP work (retries, leases'
 *		expiry, breaker waits, webhook deliveries); false when none is
 *		scheduled.  In the caller's transaction.
 */
static void
next_wake_work(void *arg)
{
	TimestampTz *next_wake = arg;
	bool		isnull;
	Datum		d;

	engine_stmt(S_HTTP_NEXT_WAKE, NULL, NULL, NULL);
	d = engine_col("next_wake", &isnull);
	engine_rows_done();
	*next_wake = isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

bool
http_next_wake(TimestampTz *next_wake)
{
	engine_unit(next_wake_work, next_wake);
	return *next_wake != DT_NOEND;
}
