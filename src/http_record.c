/*-------------------------------------------------------------------------
 *
 * http_record.c
 *	  What a finished HTTP request means for its step: success, a retry, or
 *	  a failure (the transitions of engine.c), and what it tells the circuit
 *	  breaker of its host.
 *
 * The dispatcher records a batch of finished requests in one transaction
 * (_http_record() in 75_http.sql, which also applies the breakers);
 * _http_step_record() does one step's, on the run's partitions.
 *
 * A response is recorded when its lease is still the step's (not expired,
 * not superseded, the run still going); otherwise it is dropped.  2xx/3xx
 * succeed; 429 and 5xx are retried (after Retry-After, when given); other
 * 4xx fail the step; a network error or a timeout is retried, any other
 * error (an invalid or refused URL, a response too large) fails it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "engine.h"
#include "metrics.h"

PG_FUNCTION_INFO_V1(orchestrator_http_step_record);

extern Datum orchestrator_http_url_host(PG_FUNCTION_ARGS);

typedef struct HttpOutcome
{
	FunctionCallInfo fcinfo;
	MemoryContext caller_context;	/* where results go: the unit's memory
									 * is gone when it returns */
	Oid			owner;			/* of the breaker key; InvalidOid: none */
	char	   *host;
	bool		failed;
} HttpOutcome;

static char *
arg_text(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/* "host:port" of a URL, the breaker's key (NULL when it does not parse) */
static char *
url_host(const char *url)
{
	LOCAL_FCINFO(fc, 1);
	Datum		d;

	if (url == NULL)
		return NULL;
	InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
	fc->args[0].value = CStringGetTextDatum(url);
	fc->args[0].isnull = false;
	d = orchestrator_http_url_host(fc);
	return fc->isnull ? NULL : TextDatumGetCString(d);
}

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

/* The response body as JSON: parsed when it is JSON, else a string. */
static char *
body_json(const char *body, const char *body_kind)
{
	StringInfoData s;

	if (body == NULL)
		return "null";
	if (body_kind != NULL && strcmp(body_kind, "json") == 0)
		return JsonbToCString(NULL, &DatumGetJsonbP(jsonb_of(body))->root, 0);
	initStringInfo(&s);
	escape_json(&s, body);
	return s.data;
}

static void
record_work(void *arg)
{
	HttpOutcome *o = arg;
	FunctionCallInfo fcinfo = o->fcinfo;
	Datum		run_id = PG_GETARG_DATUM(0);
	char	   *step = arg_text(fcinfo, 1);
	bool		has_status = !PG_ARGISNULL(3);
	int32		status = has_status ? PG_GETARG_INT32(3) : 0;
	char	   *headers = PG_ARGISNULL(4) ? NULL : JsonbToCString(NULL, &PG_GETARG_JSONB_P(4)->root, 0);
	char	   *body = arg_text(fcinfo, 5);
	char	   *body_kind = arg_text(fcinfo, 6);
	char	   *error_kind = arg_text(fcinfo, 7);
	char	   *error = arg_text(fcinfo, 8);
	double		elapsed_ms = PG_ARGISNULL(9) ? 0 : PG_GETARG_FLOAT8(9);
	EngineRun	run;
	Datum		values[3] = {run_id, CStringGetTextDatum(step), PG_GETARG_DATUM(2)};
	char	   *url = NULL;
	int32		attempt = 0;
	bool		circuits;
	StringInfoData s;

	if (!engine_lock_run(run_id, NULL, false, &run) ||
		!(engine_run_active(&run) || run.status == RUN_COMPENSATING))
		return;
	/* stale: the lease expired or was superseded */
	if (engine_stmt(S_HTTP_LEASE, NULL, values, NULL) != 1)
		return;
	orchestrator_metrics_http(false, has_status ? status : 0, error_kind);
	if (engine_stmt(S_HTTP_STEP, &run.leaves, values, NULL) == 1)
	{
		attempt = engine_col_int32("attempt");
		url = engine_col_text("url");
		circuits = engine_col_bool("circuits");
	}
	else
		circuits = false;
	engine_rows_done();

	/* step.http: what came back */
	initStringInfo(&s);
	appendStringInfo(&s, "{\"attempt\": %d", attempt);
	if (has_status)
		appendStringInfo(&s, ", \"status\": %d", status);
	appendStringInfo(&s, ", \"elapsed_ms\": %.1f", elapsed_ms);
	json_key_string(&s, "error", error);
	json_key_string(&s, "error_kind", error_kind);
	appendStringInfoChar(&s, '}');
	engine_emit(&run, "step.http", step, s.data);

	/* the breaker key, unless a success meets no breaker at all (the usual case) */
	if (!has_status || status >= 500 || circuits)
	{
		char	   *host = url_host(url);

		o->host = host ? MemoryContextStrdup(o->caller_context, host) : NULL;
		o->owner = run.owner;
	}

	if (!has_status)
	{
		o->failed = error_kind != NULL &&
			(strcmp(error_kind, "network") == 0 || strcmp(error_kind, "timeout") == 0);
		if (!o->failed)
			o->host = NULL;
		resetStringInfo(&s);
		appendStringInfoChar(&s, '{');
		json_key_string(&s, "message", error);
		json_key_string(&s, "kind", error_kind);
		json_key_string(&s, "url", url);
		appendStringInfoChar(&s, '}');
		engine_attempt_failed(&run, step, jsonb_of(s.data), o->failed, (Datum) 0, true);
		return;
	}

	if (status >= 400)
	{
		char	   *message = psprintf("HTTP %d from %s", status, url ? url : "");

		resetStringInfo(&s);
		appendStringInfoString(&s, "{\"message\": ");
		escape_json(&s, message);
		appendStringInfo(&s, ", \"status\": %d", status);
		if (body != NULL && strlen(body) <= 4096)
			appendStringInfo(&s, ", \"body\": %s", body_json(body, body_kind));
		appendStringInfoChar(&s, '}');
		if (status == 429 || status >= 500)
		{
			Datum		retry_after = (Datum) 0;
			bool		retry_after_isnull = true;
			char	   *value = NULL;

			if (headers != NULL)
			{
				Jsonb	   *h = PG_GETARG_JSONB_P(4);
				JsonbValue *v = getKeyJsonValueFromContainer(&h->root, "retry-after", 11, NULL);

				if (v != NULL && v->type == jbvString)
					value = pnstrdup(v->val.string.val, v->val.string.len);
			}
			if (value != NULL)
			{
				Datum		r[1] = {CStringGetTextDatum(value)};

				engine_stmt(S_RETRY_AFTER, NULL, r, NULL);
				retry_after = engine_col("delay", &retry_after_isnull);
				engine_rows_done();
			}
			engine_attempt_failed(&run, step, jsonb_of(s.data), true, retry_after, retry_after_isnull);
			o->failed = status >= 500;
			if (status == 429)
				o->host = NULL;		/* rate limited, not down */
		}
		else
		{
			engine_attempt_failed(&run, step, jsonb_of(s.data), false, (Datum) 0, true);
			o->failed = false;
		}
		return;
	}

	resetStringInfo(&s);
	appendStringInfo(&s, "{\"status\": %d, \"headers\": %s, \"body\": %s", status,
					 headers ? headers : "null", body_json(body, body_kind));
	if (body_kind != NULL && strcmp(body_kind, "base64") == 0)
		appendStringInfoString(&s, ", \"body_encoding\": \"base64\"");
	appendStringInfoChar(&s, '}');
	engine_step_succeeded(&run, step, jsonb_of(s.data), false);
	o->failed = false;
}

/*
 * _http_step_record(run_id, step, token, status, headers, body, body_kind,
 *		error_kind, error, elapsed_ms, OUT owner, OUT host, OUT failed)
 *		Record one finished attempt of an http step.  Returns the breaker's
 *		key and whether the attempt counts as a failure of the host (NULL
 *		host: no effect on the breaker, or a stale response that was
 *		dropped).
 */
Datum
orchestrator_http_step_record(PG_FUNCTION_ARGS)
{
	HttpOutcome o;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id, step and lease token must not be null")));
	memset(&o, 0, sizeof(o));
	o.fcinfo = fcinfo;
	o.caller_context = CurrentMemoryContext;
	engine_unit(record_work, &o);
	if (o.host != NULL)
	{
		values[0] = ObjectIdGetDatum(o.owner);
		values[1] = CStringGetTextDatum(o.host);
		values[2] = BoolGetDatum(o.failed);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
