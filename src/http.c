/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP steps and webhook deliveries of a dispatcher: the transactions of
 *	  its HTTP turn, around the transfers (http_transfer.c).
 *
 * A request goes through three phases, and libcurl runs only in the middle
 * one, outside any transaction:
 *
 *	1. claim (a short transaction, orchestrator_http_claim): http_claim.c
 *	   takes due '@http' queue rows, then webhook.c webhook deliveries;
 *	   counts the attempt, gives each a lease (timeout + margin) and returns
 *	   the rendered requests; deliveries are signed here; the transaction
 *	   commits before anything is sent;
 *	2. transfer (http_transfer.c): each request becomes an easy handle of
 *	   this dispatcher's libcurl multi handle;
 *	3. record (batched transactions, orchestrator_http_record): http_record.c
 *	   stores the outcomes of the finished requests, a batch per
 *	   transaction; a completion whose lease is stale is dropped there.
 *
 * A dispatcher that dies mid-request leaves leases behind; they expire (or
 * are recovered at once by the next dispatcher that starts, since the
 * holder's pid is recorded) and the attempt is retried.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "http.h"
#include "http_claim.h"
#include "http_record.h"
#include "http_transfer.h"
#include "http_util.h"
#include "secrets.h"
#include "webhook.h"

/* Most outcomes recorded in one transaction, and their body bytes. */
#define HTTP_RECORD_BATCH		1000
#define HTTP_RECORD_MAX_BYTES	(64 * 1024 * 1024)

/* Times a batch may fail to be recorded before it is given up. */
#define HTTP_RECORD_MAX_FAILURES	3

static int	record_batch = 0;		/* size of the batch being recorded */

/*
 * sign_delivery
 *		Sign a webhook delivery with its sealed secret (in req's context).
 *		Signed here, in the claiming transaction: the backend's HMAC needs a
 *		resource owner.  The timestamp is the claim's, milliseconds before
 *		the send.  When the secret cannot be opened (no key file, another
 *		key) the delivery is not sent: req->sign_error says why, and the
 *		attempt fails and is retried on the webhook schedule.
 */
static bool
sign_delivery(HttpRequest *req, bytea *sealed, SecretError *err)
{
	char	   *msg_id = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&req->id)));
	int64		ts = (int64) time(NULL);
	const char *body = req->what.body ? req->what.body : "";
	size_t		bodylen = req->what.body ? strlen(req->what.body) : 0;
	char	   *sig;

	memset(err, 0, sizeof(*err));
	if (sealed == NULL)
	{
		err->sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		err->message = pstrdup("the webhook has no secret");
		err->hint = pstrdup("Set one with orchestrator.rotate_webhook_secret().");
		sig = NULL;
	}
	else
		sig = orchestrator_webhook_sign_sealed(VARDATA_ANY(sealed), VARSIZE_ANY_EXHDR(sealed),
											   msg_id, ts, body, bodylen, err);
	if (sig == NULL)
	{
		req->sign_error = psprintf("not sent: %s%s%s", err->message,
								   err->hint ? ". " : "", err->hint ? err->hint : "");
		return false;
	}
	req->sign_headers[0] = psprintf("webhook-id: %s", msg_id);
	req->sign_headers[1] = psprintf("webhook-timestamp: " INT64_FORMAT, ts);
	req->sign_headers[2] = psprintf("webhook-signature: %s", sig);
	return true;
}

/*
 * orchestrator_http_claim
 *		Claim up to max_items due requests: http steps (http_claim.c), then
 *		webhook deliveries (webhook.c).  Runs in the dispatcher's
 *		transaction; the requests are started by
 *		orchestrator_http_start_claimed() once it committed.
 */
int
orchestrator_http_claim(int max_items, bool recover, bool *has_next_wake,
						TimestampTz *next_wake)
{
	char		worker[64];
	int			n;
	int			nhooks;
	WebhookClaim *hooks;
	int			sign_failures = 0;
	SecretError first_error = {0};
	HttpStepClaim *steps;

	*has_next_wake = false;
	snprintf(worker, sizeof(worker), "http:%d", MyProcPid);

	n = orchestrator_http_claim_steps(max_items, worker, recover, &steps);
	for (int k = 0; k < n; k++)
	{
		HttpRequest *req = http_request_new();
		MemoryContext old = MemoryContextSwitchTo(req->context);

		/* the claim, with its strings copied into the request's memory */
		req->what = steps[k];
		req->what.step = pstrdup(steps[k].step);
		req->what.method = pstrdup(steps[k].method);
		req->what.url = pstrdup(steps[k].url);
		req->what.headers = palloc0(sizeof(char *) * Max(steps[k].nheaders, 1));
		for (int j = 0; j < steps[k].nheaders; j++)
			req->what.headers[j] = pstrdup(steps[k].headers[j]);
		req->what.body = steps[k].body ? pstrdup(steps[k].body) : NULL;
		MemoryContextSwitchTo(old);
		http_request_claimed(req);
	}
	if (n >= max_items)
		return n;

	nhooks = webhook_claim(max_items - n, worker, recover, &hooks);
	n += nhooks;
	for (int k = 0; k < nhooks; k++)
	{
		HttpRequest *req = http_request_new();
		MemoryContext old = MemoryContextSwitchTo(req->context);
		SecretError err;
		bytea	   *sealed = NULL;

		req->is_webhook = true;
		req->what.run_id = hooks[k].run_id;
		req->id = hooks[k].id;
		req->what.token = hooks[k].token;
		req->what.method = pstrdup("POST");
		req->what.url = pstrdup(hooks[k].url);
		/* W3C trace context: the trace of the event's run, a span per attempt */
		req->what.headers = palloc0(sizeof(char *));
		if (hooks[k].traceparent)
			req->what.headers[req->what.nheaders++] = psprintf("traceparent: %s", hooks[k].traceparent);
		req->what.body = pstrdup(hooks[k].body);
		req->what.timeout_ms = hooks[k].timeout_ms;
		if (hooks[k].sealed_secret)
		{
			size_t		len = strlen(hooks[k].sealed_secret);

			sealed = palloc(VARHDRSZ + len);
			SET_VARSIZE(sealed, VARHDRSZ + len);
			memcpy(VARDATA(sealed), hooks[k].sealed_secret, len);
		}
		if (!sign_delivery(req, sealed, &err) && sign_failures++ == 0)
			first_error = err;
		MemoryContextSwitchTo(old);
		http_request_claimed(req);
	}

	/* once per claim, not per delivery: a missing key file fails them all */
	if (sign_failures > 0)
		ereport(WARNING,
				(errcode(first_error.sqlerrcode),
				 errmsg_plural("orchestrator: %d webhook delivery not sent: %s",
							   "orchestrator: %d webhook deliveries not sent: %s",
							   sign_failures, sign_failures, first_error.message),
				 first_error.detail ? errdetail_internal("%s", first_error.detail) : 0,
				 first_error.hint ? errhint("%s", first_error.hint) : 0));

	if (n < max_items)
		*has_next_wake = http_next_wake(next_wake);
	return n;
}

/*
 * body_as_text
 *		The response body as text for http_record.c, and how to read it:
 *		"json" (a JSON content type and valid JSON), "text" (valid in the
 *		database encoding) or "base64" (anything else).
 */
static char *
body_as_text(HttpRequest *req, const char **kind)
{
	char	   *data = req->response.data;
	int			len = req->response.len;
	char	   *out;
	int			enclen;

	if (pg_verifymbstr(data, len, true))
	{
		*kind = "text";
		/* jsonb cannot hold \u0000: such a body stays text */
		if (req->content_type && strstr(req->content_type, "json") != NULL && len > 0 &&
			strstr(data, "\\u0000") == NULL)
		{
			JsonLexContext *lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), false);

			if (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS)
				*kind = "json";
		}
		return data;
	}
	*kind = "base64";
	out = palloc(pg_b64_enc_len(len) + 1);
	enclen = pg_b64_encode(data, len, out, pg_b64_enc_len(len));
	out[Max(enclen, 0)] = '\0';
	return out;
}

/*
 * orchestrator_http_record
 *		Record the outcomes of the first finished requests (up to a batch of
 *		HTTP_RECORD_BATCH, or HTTP_RECORD_MAX_BYTES of bodies) in the
 *		caller's transaction (http_record.c).
 */
int
orchestrator_http_record(void)
{
	HttpResult *items;
	int			n = 0;
	Size		bytes = 0;
	int			max = Min(orchestrator_http_done_count(), HTTP_RECORD_BATCH);

	if (max == 0)
		return 0;
	record_batch = max;			/* until we know better */
	items = palloc0(sizeof(HttpResult) * max);
	for (HttpRequest *req = http_request_done_next(NULL); req != NULL;
		 req = http_request_done_next(req))
	{
		HttpResult *r = &items[n];

		if (n >= max || (n > 0 && bytes + req->response.len > HTTP_RECORD_MAX_BYTES))
			break;
		r->is_webhook = req->is_webhook;
		r->run_id = req->what.run_id;
		r->step = req->what.step;
		r->id = req->id;
		r->token = req->what.token;
		r->attempt = req->what.attempt;
		r->url = req->what.url;
		r->status = req->status;
		r->headers = psprintf("{%s}", req->resp_headers.data);
		r->retry_after = req->retry_after;
		if (req->status > 0)
			r->body = body_as_text(req, &r->body_kind);
		r->error_kind = req->error_kind;
		r->error = req->error;
		r->elapsed_ms = req->elapsed_ms;
		bytes += req->response.len;
		n++;
	}
	record_batch = n;
	http_record_batch(items, n);
	return n;
}

/*
 * orchestrator_http_recorded
 *		The recording transaction of the first n outcomes ended.  On success
 *		they are freed; on failure they are kept for another try, up to
 *		HTTP_RECORD_MAX_FAILURES times (then their leases expire and the
 *		attempts are retried).
 */
void
orchestrator_http_recorded(int n, bool ok)
{
	HttpRequest *next;
	int			i = 0;

	/* a failed transaction may not have returned how many it tried */
	if (!ok)
		n = Max(n, record_batch);
	record_batch = 0;
	for (HttpRequest *req = http_request_done_next(NULL); req != NULL; req = next)
	{
		next = http_request_done_next(req);
		if (i++ >= n)
			break;
		if (!ok && ++req->record_failures < HTTP_RECORD_MAX_FAILURES)
			continue;
		if (!ok)
			ereport(WARNING,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("orchestrator: giving up recording the outcome of an HTTP request to \"%s\"",
							req->what.url),
					 errdetail("Recording failed %d times.", req->record_failures),
					 errhint("The attempt is retried when its lease expires.")));
		http_request_forget(req);
	}
}
