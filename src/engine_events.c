/*-------------------------------------------------------------------------
 *
 * engine_events.c
 *	  The events of a run: appended to its history (history.c), announced
 *	  (relay.c, after commit), queued for webhooks, counted for metrics()
 *	  and the spans.  A primitive of the engine, below the policies and
 *	  the transitions: every change of a run says itself through here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "caller.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_stmt.h"
#include "guc.h"
#include "history.h"
#include "lookup_cache.h"
#include "metrics.h"
#include "otlp.h"
#include "relay.h"
#include "wake.h"

/* Private channels of run events: "orchestrator_events_" and 32 hex digits. */
#define EVENTS_CHANNEL_PREFIX "orchestrator_events"

PG_FUNCTION_INFO_V1(orchestrator_events_channel);

/*
 * Events appended by this process: a caller that lets user code run (a sql
 * step's statement) compares it before and after, and reads its run again
 * when the code changed it through the API.
 */
uint64		engine_transitions = 0;

/*
 * engine_append_event
 *		Append one event to a locked run's history (history.c) and announce
 *		it.  Returns its sequence number.
 */
int64
engine_append_event(EngineRun *run, const char *type, const char *step, TimestampTz at, Datum data)
{
	HistoryEvent e = {type, step, at, data};
	int64		seq = history_append(run->leaves.events, run->id, 1, &e);

	engine_announce_event(run, seq, CStringGetTextDatum(type), type, step, data);
	return seq;
}

/*
 * announce_privately
 *		Announce an event on the private channels of the roles that may see
 *		the run besides administrators: the role that started it and its
 *		workflow's owner (docs/security.md).
 */
static void
announce_privately(EngineRun *run, const char *payload)
{
	char		channel[NAMEDATALEN];

	if (OidIsValid(run->started_by))
	{
		orchestrator_private_channel(EVENTS_CHANNEL_PREFIX, run->started_by, channel);
		orchestrator_notify_private(channel, payload);
	}
	if (OidIsValid(run->owner) && run->owner != run->started_by)
	{
		orchestrator_private_channel(EVENTS_CHANNEL_PREFIX, run->owner, channel);
		orchestrator_notify_private(channel, payload);
	}
}

/*
 * orchestrator._api_events_channel()
 *		The caller's private channel for the events of its runs, to LISTEN
 *		to; refused while orchestrator.notify_channels sends nothing there.
 */
Datum
orchestrator_events_channel(PG_FUNCTION_ARGS)
{
	char		channel[NAMEDATALEN];

	if (orchestrator_notify_channels == NOTIFY_CHANNELS_PUBLIC)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("private event channels are off"),
				 errdetail("orchestrator.notify_channels is \"public\": the events of every run go to the channel \"orchestrator\" only."),
				 errhint("An administrator sets orchestrator.notify_channels to \"both\" or \"private\" and reloads the configuration.")));
	orchestrator_private_channel(EVENTS_CHANNEL_PREFIX, orchestrator_current_caller(), channel);
	PG_RETURN_TEXT_P(cstring_to_text(channel));
}

/*
 * engine_announce_event
 *		An event appended: announce it (relay.c, sent after commit) and queue
 *		its webhook deliveries.
 */
void
engine_announce_event(EngineRun *run, int64 seq, Datum type, const char *type_name, const char *step,
					  Datum event_data)
{
	StringInfoData payload;

	engine_transitions++;
	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"run_id\" : \"%s\", \"seq\" : " INT64_FORMAT ", \"type\" : ",
					 engine_uuid_text(run->id), seq);
	escape_json(&payload, type_name);
	appendStringInfoString(&payload, ", \"step\" : ");
	if (step != NULL)
		escape_json(&payload, step);
	else
		appendStringInfoString(&payload, "null");
	appendStringInfoChar(&payload, '}');
	if (orchestrator_notify_channels != NOTIFY_CHANNELS_PRIVATE)
		orchestrator_notify(RELAY_EVENTS, payload.data);
	if (orchestrator_notify_channels != NOTIFY_CHANNELS_PUBLIC)
		announce_privately(run, payload.data);

	if (lookup_webhooks_exist())
	{
		Datum		w[6] = {run->id, Int64GetDatum(seq), type,
			step ? CStringGetTextDatum(step) : (Datum) 0, event_data, CStringGetTextDatum(run->name)};
		char		wn[6] = {' ', ' ', ' ', step ? ' ' : 'n', ' ', ' '};

		if (engine_stmt(S_WEBHOOK_OUTBOX, NULL, w, wn) > 0)
			orchestrator_wake_dispatchers_at_commit(WAKE_HTTP);
	}
}

/* A time column of the statement's row, 0 when NULL. */
static TimestampTz
col_time(const char *name)
{
	bool		isnull;
	Datum		d = engine_col(name, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * metrics_event
 *		Note a counted transition for metrics() and the spans (metrics.c,
 *		otlp.c), from the row a counting statement returned: the workflow,
 *		the step's kind, times and attempt, the run's trace.  Counted when
 *		the transaction commits.
 */
static void
metrics_event(EngineRun *run, const char *type, const char *step)
{
	MetricsEvent e;

	memset(&e, 0, sizeof(e));
	e.type = type;
	e.run_id = engine_uuid_text(run->id);
	e.step = step;
	e.workflow = run->name != NULL ? run->name : engine_col_text("name");
	e.kind = engine_col_text("kind");
	e.started_at = col_time("started_at");
	e.ready_at = col_time("ready_at");
	e.at = col_time("at");
	e.trace_id = engine_col_text("trace_id");
	e.trace_parent = engine_col_text("trace_parent");
	e.created_at = col_time("created_at");
	e.attempt = engine_col_int32("attempt");
	orchestrator_metrics_event(&e);
}

/*
 * The step.started of a sql step whose statement is running: appended with
 * the step's outcome (engine_sql_step_succeeded()), or before any other
 * event of its run that the statement appends through the API, so that the
 * history keeps its order.
 */
static struct
{
	bool		pending;
	Datum		run_id;
	const char *step;
	int32		attempt;
}			deferred_start;

void
engine_defer_step_started(EngineRun *run, const char *step, int32 attempt)
{
	deferred_start.pending = true;
	deferred_start.run_id = run->id;
	deferred_start.step = step;
	deferred_start.attempt = attempt;
}

/* Is the deferred step.started still to be appended?  Forgets it. */
bool
engine_take_deferred_start(void)
{
	bool		pending = deferred_start.pending;

	deferred_start.pending = false;
	return pending;
}

/* An event of the run is appended: its deferred step.started goes first. */
void
engine_flush_deferred_start(EngineRun *run)
{
	if (deferred_start.pending &&
		DatumGetBool(DirectFunctionCall2(uuid_eq, run->id, deferred_start.run_id)))
	{
		deferred_start.pending = false;
		engine_step_started_event(run, deferred_start.step, deferred_start.attempt, "dispatcher");
	}
}

/*
 * append_one
 *		Append one event (its deferred step.started first): data is the
 *		event's data (NULL for {}), or with "result" the step result it
 *		carries ({"result": data}).  Returns its sequence number; *ev is what
 *		was appended.
 */
static int64
append_one(EngineRun *run, bool result, const char *type, const char *step, Datum data,
		   bool data_isnull, HistoryEvent *ev)
{
	engine_flush_deferred_start(run);
	ev->type = type;
	ev->step = step;
	ev->at = GetCurrentTimestamp();
	if (result)
		ev->data = engine_json_object1("result", data, data_isnull);
	else
		ev->data = data_isnull ? engine_empty_object() : data;
	return history_append(run->leaves.events, run->id, 1, ev);
}

/*
 * engine_emit_event
 *		Append an event to the run's history (history.c) and announce it:
 *		data is the event's data (NULL for {}), or with "result" the step
 *		result it carries ({"result": data}).  Returns its sequence number.
 */
int64
engine_emit_event(EngineRun *run, bool result, const char *type, const char *step, Datum data,
				  bool data_isnull)
{
	HistoryEvent ev;
	int64		seq = append_one(run, result, type, step, data, data_isnull, &ev);

	/*
	 * metrics.c counts some events (at commit), with what it reads of the
	 * step's row (and the run's, unless the workflow is known here and no
	 * span is made; then the end of a run needs nothing read)
	 */
	if (orchestrator_metrics_counts(type))
	{
		bool		run_known = run->name != NULL && !orchestrator_otlp_enabled();

		if (run_known && step == NULL)
		{
			MetricsEvent e = {.type = type, .workflow = run->name};

			orchestrator_metrics_event(&e);
		}
		else
		{
			Datum		m[3] = {run->id, step ? CStringGetTextDatum(step) : (Datum) 0,
			TimestampTzGetDatum(ev.at)};
			char		nulls[3] = {' ', step ? ' ' : 'n', ' '};

			engine_stmt(run_known ? S_STEP_METRICS : S_RUN_STEP_METRICS, &run->leaves, m, nulls);
			metrics_event(run, type, step);
			engine_rows_done();
		}
	}
	engine_announce_event(run, seq, CStringGetTextDatum(type), type, step, ev.data);
	return seq;
}

/*
 * engine_emit_step_event
 *		engine_emit_event() of a step's event whose row the caller changed and read
 *		(times): what metrics.c counts of it is known, not read again.
 */
int64
engine_emit_step_event(EngineRun *run, bool result, const char *type, const char *step, Datum data,
					   bool data_isnull, const StepRowTimes *times)
{
	HistoryEvent ev;
	int64		seq = append_one(run, result, type, step, data, data_isnull, &ev);
	if (orchestrator_metrics_counts(type))
	{
		MetricsEvent e;

		memset(&e, 0, sizeof(e));
		e.type = type;
		e.run_id = engine_uuid_text(run->id);
		e.step = step;
		e.workflow = run->name;
		e.kind = times->kind;
		e.started_at = times->started_at;
		e.ready_at = times->ready_at;
		e.at = ev.at;
		e.trace_id = run->trace_id;
		e.trace_parent = run->trace_parent;
		e.attempt = times->attempt;
		orchestrator_metrics_event(&e);
	}
	engine_announce_event(run, seq, CStringGetTextDatum(type), type, step, ev.data);
	return seq;
}

/* An event whose data is given as JSON text (NULL: {}). */
int64
engine_emit(EngineRun *run, const char *type, const char *step, const char *data_json)
{
	return engine_emit_event(run, false, type, step,
					  data_json ? engine_jsonb(data_json) : (Datum) 0, data_json == NULL);
}

int64
engine_emit_jsonb(EngineRun *run, const char *type, const char *step, Datum data, bool data_isnull)
{
	return engine_emit_event(run, false, type, step, data, data_isnull);
}

/*
 * engine_step_started_event
 *		The step.started event of an attempt.
 */
int64
engine_step_started_event(EngineRun *run, const char *step, int32 attempt, const char *worker)
{
	return engine_emit_jsonb(run, "step.started", step, engine_step_started_data(attempt, worker), false);
}
