/*-------------------------------------------------------------------------
 *
 * breaker.c
 *	  Circuit breakers of http steps, per workflow owner and host:port.
 *
 * A breaker is a row of orchestrator.http_circuits once its host failed:
 * closed (requests flow; failures counts consecutive failures), open
 * (requests wait until retry_at) or half_open (one probe request is in
 * flight until retry_at).  Per owner, so that one role's failing requests
 * (or a role provoking failures on purpose) never hold back another's.
 *
 * The claim (http_claim.c) asks breaker_admit() for each step while some
 * breaker is not closed; a step that may not go waits in its queue row,
 * tagged with its circuit, without counting an attempt.  The recording of a
 * batch of responses (http_record.c) applies the outcomes with
 * breaker_apply(), host by host in host order after all runs of the batch
 * are locked, so that recorders cannot deadlock.  Opening and closing are
 * events (circuit.opened, circuit.closed) of the run whose request decided.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "breaker.h"
#include "engine.h"
#include "guc.h"
#include "wake.h"

PG_FUNCTION_INFO_V1(orchestrator_http_circuit_admit);

/* An interval of ms milliseconds. */
static Datum
ms_interval(int64 ms)
{
	Interval   *i = palloc0(sizeof(Interval));

	i->time = ms * 1000;
	return IntervalPGetDatum(i);
}

/*
 * breaker_tag
 *		The worker tag of a queue row waiting for the circuit of owner and
 *		host: "circuit:<owner oid>:<host:port>".
 */
char *
breaker_tag(Oid owner, const char *host)
{
	return psprintf("circuit:%u:%s", owner, host);
}

/*
 * breaker_admit
 *		Does the circuit of owner and host let a request through now?  True
 *		when it does (and the request is the probe when the cool-down is
 *		over: the circuit is half open for probe_lease); false with *wait,
 *		when to look again.  Never waits for a lock: claimers must not block.
 */
bool
breaker_admit(Oid owner, const char *host, Datum probe_lease, TimestampTz *wait)
{
	Datum		values[3] = {ObjectIdGetDatum(owner), CStringGetTextDatum(host), probe_lease};
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	char	   *state;
	bool		isnull;
	Datum		retry_at;

	if (engine_stmt(S_CIRCUIT_GET, NULL, values, NULL) != 1)
	{
		engine_rows_done();
		return true;
	}
	state = engine_col_text("state");
	retry_at = engine_col("retry_at", &isnull);
	engine_rows_done();
	if (strcmp(state, "closed") == 0)
		return true;
	if (!isnull && DatumGetTimestampTz(retry_at) > now)
	{
		/* open: wait for the cool-down; half open: for the probe (look again soon) */
		*wait = strcmp(state, "open") == 0 ? DatumGetTimestampTz(retry_at)
			: Min(DatumGetTimestampTz(retry_at), TimestampTzPlusMilliseconds(now, 1000));
		return false;
	}
	/* the cool-down is over (or a probe was lost): this request is the probe */
	if (engine_stmt(S_CIRCUIT_PROBE_LOCK, NULL, values, NULL) != 1)
	{
		engine_rows_done();
		*wait = TimestampTzPlusMilliseconds(now, 1000);
		return false;
	}
	engine_rows_done();
	engine_stmt(S_CIRCUIT_PROBE, NULL, values, NULL);
	return true;
}

/* Outcomes in breaker order: owner, host, then as they came. */
static int
outcome_cmp(const void *a, const void *b)
{
	const BreakerOutcome *x = a;
	const BreakerOutcome *y = b;
	int			c;

	if (x->owner != y->owner)
		return x->owner < y->owner ? -1 : 1;
	c = strcmp(x->host, y->host);
	if (c != 0)
		return c;
	return x->order < y->order ? -1 : (x->order > y->order ? 1 : 0);
}

/* An event of the run whose request decided (locked by the recording). */
static void
circuit_event(BreakerOutcome *o, const char *type, const char *data)
{
	EngineRun	run;

	if (!engine_read_run(UUIDPGetDatum(&o->run_id), &run))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("workflow run %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&o->run_id))))));
	engine_emit(&run, type, o->step, data);
}

/* A request got through: a circuit that was not clean closes. */
static void
breaker_succeeded(BreakerOutcome *o)
{
	Datum		values[2] = {ObjectIdGetDatum(o->owner), CStringGetTextDatum(o->host)};
	char	   *state;
	int32		failures;
	bool		isnull;
	Datum		opened_at;
	StringInfoData s;

	/* the common case (no row, or closed with no failures) reads nothing more */
	if (engine_stmt(S_CIRCUIT_GET, NULL, values, NULL) != 1)
	{
		engine_rows_done();
		return;
	}
	state = engine_col_text("state");
	failures = engine_col_int32("failures");
	engine_rows_done();
	if (strcmp(state, "closed") == 0 && failures == 0)
		return;

	if (engine_stmt(S_CIRCUIT_LOCK, NULL, values, NULL) != 1)
	{
		engine_rows_done();
		return;
	}
	state = engine_col_text("state");
	failures = engine_col_int32("failures");
	opened_at = engine_col("opened_at", &isnull);
	engine_rows_done();
	engine_stmt(S_CIRCUIT_CLOSE, NULL, values, NULL);
	if (strcmp(state, "closed") == 0)
		return;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"host\": ");
	escape_json(&s, o->host);
	appendStringInfo(&s, ", \"failures\": %d, \"opened_at\": ", failures);
	if (isnull)
		appendStringInfoString(&s, "null");
	else
		appendStringInfoString(&s, engine_json_time(DatumGetTimestampTz(opened_at)));
	appendStringInfoChar(&s, '}');
	circuit_event(o, "circuit.closed", s.data);

	/* steps that waited for this host may go now */
	{
		Datum		tag[1] = {CStringGetTextDatum(breaker_tag(o->owner, o->host))};

		engine_stmt(S_CIRCUIT_RELEASE, NULL, tag, NULL);
	}
	orchestrator_wake_dispatchers_at_commit(WAKE_HTTP);
}

/* A request failed the host: counted; the circuit opens at the threshold. */
static void
breaker_failed(BreakerOutcome *o)
{
	Datum		values[4] = {ObjectIdGetDatum(o->owner), CStringGetTextDatum(o->host)};
	char	   *state;
	int32		failures;
	StringInfoData s;

	engine_stmt(S_CIRCUIT_ADD, NULL, values, NULL);
	if (engine_stmt(S_CIRCUIT_LOCK, NULL, values, NULL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the circuit breaker of %s is missing", o->host)));
	state = engine_col_text("state");
	failures = engine_col_int32("failures") + 1;
	engine_rows_done();
	values[2] = Int32GetDatum(failures);
	if (strcmp(state, "half_open") == 0 ||
		(strcmp(state, "closed") == 0 && failures >= orchestrator_http_breaker_threshold))
	{
		bool		isnull;
		TimestampTz retry_at;

		values[3] = ms_interval(orchestrator_http_breaker_cooldown);
		engine_stmt(S_CIRCUIT_OPEN, NULL, values, NULL);
		retry_at = DatumGetTimestampTz(engine_col("retry_at", &isnull));
		engine_rows_done();

		initStringInfo(&s);
		appendStringInfoString(&s, "{\"host\": ");
		escape_json(&s, o->host);
		appendStringInfo(&s, ", \"failures\": %d, \"retry_at\": ", failures);
		appendStringInfoString(&s, engine_json_time(retry_at));
		appendStringInfoChar(&s, '}');
		circuit_event(o, "circuit.opened", s.data);
	}
	else
		engine_stmt(S_CIRCUIT_FAILURE, NULL, values, NULL);
}

/*
 * breaker_apply
 *		Apply the outcomes of a recorded batch to the circuit breakers, host
 *		by host in (owner, host) order, each host's in the order they came.
 *		Sorts "outcomes".
 */
void
breaker_apply(BreakerOutcome *outcomes, int n)
{
	for (int i = 0; i < n; i++)
		outcomes[i].order = i;
	qsort(outcomes, n, sizeof(BreakerOutcome), outcome_cmp);
	for (int i = 0; i < n; i++)
	{
		if (!outcomes[i].failed)
			breaker_succeeded(&outcomes[i]);
		else if (orchestrator_http_breaker_threshold > 0)
			breaker_failed(&outcomes[i]);
	}
}

typedef struct AdmitCall
{
	Oid			owner;
	char	   *host;
	Datum		probe_lease;
	bool		admitted;
	TimestampTz wait;
} AdmitCall;

static void
admit_work(void *arg)
{
	AdmitCall  *a = arg;

	a->admitted = breaker_admit(a->owner, a->host, a->probe_lease, &a->wait);
}

/*
 * _http_circuit_admit(owner, host, probe_lease): NULL when the circuit of
 * owner and host lets a request through now (marking the probe when the
 * cool-down is over), else when to look again.
 */
Datum
orchestrator_http_circuit_admit(PG_FUNCTION_ARGS)
{
	AdmitCall	a;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("owner, host and probe lease must not be null")));
	memset(&a, 0, sizeof(a));
	a.owner = PG_GETARG_OID(0);
	a.host = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a.probe_lease = PG_GETARG_DATUM(2);
	engine_unit(admit_work, &a);
	if (a.admitted)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(a.wait);
}
