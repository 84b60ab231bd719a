/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  The webhook outbox: deliveries claimed by the dispatchers' HTTP turn
 *	  (after http steps), sent by http_transfer.c, recorded with the batch
 *	  of responses (http_record.c).
 *
 * A delivery is a row of orchestrator.webhook_outbox, written in the
 * transaction of its event (engine.c).  The claim takes due rows, skipping
 * locked ones: a row still "delivering" when due again is a lease left by a
 * dispatcher that stopped (a failed attempt); a row whose webhook was
 * dropped is cancelled; one whose URL may not be used (any more) is dead.
 * The others get a lease (orchestrator.default_step_timeout plus a margin)
 * held by "http:<pid>", all in one statement, and go out signed with the
 * webhook's sealed secret (opened in C only, by http.c).  With "recover"
 * (a dispatcher's first claim) the leases of dispatchers that no longer run
 * expire at once.  A 2xx delivers; anything else is tried again after the
 * delay of orchestrator.webhook_retry_schedule for that attempt (at least
 * the response's Retry-After), or the delivery is dead after the last.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "engine.h"
#include "guc.h"
#include "http_util.h"
#include "metrics.h"
#include "webhook.h"

/* a delivery's lease: its timeout, plus this, to answer and be recorded */
#define WEBHOOK_LEASE_MARGIN_MS	30000

typedef struct DeliveryClaimArgs
{
	MemoryContext caller_context;
	int			max_items;
	const char *worker;
	bool		recover;
	WebhookClaim *claims;
	int			n;
} DeliveryClaimArgs;

/* A due row, as read by the claim. */
typedef struct DueRow
{
	pg_uuid_t	id;
	pg_uuid_t	run_id;
	bool		delivering;
	bool		subscribed;
	char	   *url;
	char	   *body;
	char	   *sealed_secret;
} DueRow;

static Datum
ms_interval(int64 ms)
{
	Interval   *i = palloc0(sizeof(Interval));

	i->time = ms * 1000;
	return IntervalPGetDatum(i);
}

static void
col_uuid(uint64 row, const char *name, pg_uuid_t *dest)
{
	bool		isnull;
	Datum		d = engine_col_at(row, name, &isnull);

	if (isnull)
		memset(dest, 0, sizeof(pg_uuid_t));
	else
		memcpy(dest, DatumGetUUIDP(d), sizeof(pg_uuid_t));
}

static char *
col_text_at(uint64 row, const char *name)
{
	bool		isnull;
	Datum		d = engine_col_at(row, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * webhook_failed
 *		An attempt failed (token: the lease it must still hold; NULL: any):
 *		tried again per the schedule, or dead.  True when the row was the
 *		lease's.
 */
static bool
webhook_failed(const pg_uuid_t *id, const pg_uuid_t *token, int status, const char *error,
			   const char *retry_after)
{
	Datum		values[5];
	char		nulls[5] = {' ', status > 0 ? ' ' : 'n', error ? ' ' : 'n', 'n', token ? ' ' : 'n'};

	values[0] = UUIDPGetDatum(id);
	values[1] = Int32GetDatum(status);
	values[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	values[3] = (Datum) 0;
	if (http_retry_after(retry_after, &values[3]))
		nulls[3] = ' ';
	values[4] = token ? UUIDPGetDatum(token) : (Datum) 0;
	return engine_stmt(S_WEBHOOK_FAILED, NULL, values, nulls) == 1;
}

/* The traceparent of a delivery attempt: a span of its run's trace. */
static char *
delivery_traceparent(const DueRow *row, int32 attempt)
{
	EngineRun	run;
	char	   *traceparent = NULL;
	Datum		values[1];

	memset(&run, 0, sizeof(run));
	run.id = UUIDPGetDatum(&row->run_id);
	if (!orchestrator_run_leaves(run.id, &run.leaves, true))
		return NULL;
	values[0] = run.id;
	if (engine_stmt(S_RUN_TRACE, &run.leaves, values, NULL) == 1)
	{
		run.trace_id = engine_col_text("trace_id");
		run.trace_parent = engine_col_text("trace_parent");
		traceparent = engine_traceparent(&run, psprintf("webhook:%s",
														DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&row->id)))),
										 attempt);
	}
	engine_rows_done();
	return traceparent;
}

static void
claim_work(void *arg)
{
	DeliveryClaimArgs *a = arg;
	Datum		values[4];
	uint64		n;
	DueRow	   *rows;
	Datum	   *ids;
	Datum	   *tokens;
	DueRow	  **leased_rows;
	int			nleased = 0;
	int			timeout_ms = Max(orchestrator_default_step_timeout, 1);

	if (a->recover)
		engine_stmt(S_WEBHOOK_RECOVER, NULL, NULL, NULL);

	values[0] = Int32GetDatum(a->max_items);
	n = engine_stmt(S_WEBHOOK_DUE, NULL, values, NULL);
	rows = palloc0(sizeof(DueRow) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		col_uuid(i, "id", &rows[i].id);
		col_uuid(i, "run_id", &rows[i].run_id);
		rows[i].delivering = strcmp(col_text_at(i, "status"), "delivering") == 0;
		rows[i].subscribed = DatumGetBool(engine_col_at(i, "subscribed", &isnull));
		rows[i].url = col_text_at(i, "url");
		rows[i].body = col_text_at(i, "body");
		rows[i].sealed_secret = col_text_at(i, "sealed_secret");
	}
	engine_rows_done();

	ids = palloc0(sizeof(Datum) * Max(n, 1));
	tokens = palloc0(sizeof(Datum) * Max(n, 1));
	leased_rows = palloc0(sizeof(DueRow *) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		DueRow	   *row = &rows[i];
		bool		invalid;
		char	   *why;

		if (row->delivering)
		{
			webhook_failed(&row->id, NULL, 0, "lease expired (the dispatcher stopped)", NULL);
			continue;
		}
		values[0] = UUIDPGetDatum(&row->id);
		if (!row->subscribed)
		{
			engine_stmt(S_WEBHOOK_CANCEL, NULL, values, NULL);
			continue;
		}
		why = orchestrator_http_check_url(row->url, &invalid, NULL, NULL);
		if (why != NULL)
		{
			values[1] = CStringGetTextDatum(psprintf("%s: %s", invalid ? "invalid" : "refused", why));
			engine_stmt(S_WEBHOOK_DEAD, NULL, values, NULL);
			continue;
		}
		leased_rows[nleased] = row;
		ids[nleased] = UUIDPGetDatum(&row->id);
		tokens[nleased] = engine_random_uuid();
		nleased++;
	}
	if (nleased == 0)
		return;

	/* the leases, in one statement */
	values[0] = PointerGetDatum(construct_array(ids, nleased, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(construct_array(tokens, nleased, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[2] = ms_interval((int64) timeout_ms + WEBHOOK_LEASE_MARGIN_MS);
	values[3] = CStringGetTextDatum(a->worker);
	n = engine_stmt(S_WEBHOOK_LEASE, NULL, values, NULL);
	a->claims = MemoryContextAllocZero(a->caller_context, sizeof(WebhookClaim) * Max(n, 1));
	{
		int32	   *ords = palloc(sizeof(int32) * Max(n, 1));
		int32	   *attempts = palloc(sizeof(int32) * Max(n, 1));

		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			ords[i] = DatumGetInt32(engine_col_at(i, "ord", &isnull));
			attempts[i] = DatumGetInt32(engine_col_at(i, "attempt", &isnull));
		}
		engine_rows_done();

		for (uint64 i = 0; i < n; i++)
		{
			DueRow	   *row = leased_rows[ords[i] - 1];
			pg_uuid_t  *token = DatumGetUUIDP(tokens[ords[i] - 1]);
			WebhookClaim *c = &a->claims[a->n];
			char	   *traceparent;
			MemoryContext unit_context;

			traceparent = delivery_traceparent(row, attempts[i]);

			/* the request, in the caller's memory */
			unit_context = MemoryContextSwitchTo(a->caller_context);
			c->run_id = row->run_id;
			c->id = row->id;
			memcpy(&c->token, token, sizeof(pg_uuid_t));
			c->url = pstrdup(row->url);
			c->traceparent = traceparent ? pstrdup(traceparent) : NULL;
			c->body = pstrdup(row->body);
			c->timeout_ms = timeout_ms;
			c->sealed_secret = row->sealed_secret ? pstrdup(row->sealed_secret) : NULL;
			MemoryContextSwitchTo(unit_context);
			a->n++;
		}
	}
}

/*
 * webhook_claim
 *		Claim up to max_items due webhook deliveries for this dispatcher
 *		("worker" holds their leases); returns how many, in *claims (in the
 *		current memory context).
 */
int
webhook_claim(int max_items, const char *worker, bool recover, WebhookClaim **claims)
{
	DeliveryClaimArgs a;

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
 * webhook_record
 *		Record one delivery attempt (in the unit of the batch, http_record.c).
 *		A stale lease is ignored; 2xx is delivered; anything else is tried
 *		again per the schedule.
 */
void
webhook_record(const HttpResult *r)
{
	bool		recorded;

	if (r->status >= 200 && r->status <= 299)
	{
		Datum		values[3] = {UUIDPGetDatum(&r->id), UUIDPGetDatum(&r->token), Int32GetDatum(r->status)};

		recorded = engine_stmt(S_WEBHOOK_DELIVERED, NULL, values, NULL) == 1;
	}
	else
		recorded = webhook_failed(&r->id, &r->token, r->status,
								  r->error ? r->error : psprintf("HTTP %d", r->status),
								  r->retry_after);
	if (recorded)
		orchestrator_metrics_http(true, r->status, r->error_kind);
}
