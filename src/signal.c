/*-------------------------------------------------------------------------
 *
 * signal.c
 *	  signal_workflow(): a signal kept for the run, and the wait steps
 *	  waiting for it completed.
 *
 * The signal is kept (orchestrator.signals) whether a step waits for it
 * yet or not: a wait step that starts later takes the first one not taken
 * (engine_step_ready).  The running wait steps whose "signal" is its name
 * succeed with its payload, in position order, until one of them ends the
 * run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(orchestrator_api_signal_workflow);

typedef struct Signal
{
	Datum		run_id;
	char	   *name;
	Datum		payload;
	bool		sent;			/* the run was active: the signal is kept */
} Signal;

static void
signal_work(void *arg)
{
	Signal	   *sig = arg;
	EngineRun	run;
	Datum		values[4];
	char	   *data;
	int			nwaiting;
	char	  **waiting;

	/* 42704 (as for a run that does not exist) unless the caller may see it */
	engine_lock_visible_run(sig->run_id, false, &run);
	values[0] = sig->run_id;
	if (!engine_run_active(&run) && run.status != RUN_QUEUED && run.status != RUN_COMPENSATING)
		return;

	values[1] = ObjectIdGetDatum(run.owner);
	values[2] = sig->payload;
	engine_stmt(S_CHECK_SIGNAL, NULL, values, NULL);
	engine_rows_done();
	values[1] = CStringGetTextDatum(sig->name);
	engine_stmt(S_KEEP_SIGNAL, NULL, values, NULL);
	{
		StringInfoData d;

		initStringInfo(&d);
		appendStringInfoString(&d, "{\"signal\": ");
		escape_json(&d, sig->name);
		appendStringInfo(&d, ", \"payload\": %s}",
						 JsonbToCString(NULL, &DatumGetJsonbP(sig->payload)->root, 0));
		data = d.data;
	}
	engine_emit(&run, "signal.received", NULL, data);
	sig->sent = true;

	/* the wait steps waiting for it, read before any of them moves */
	values[1] = CStringGetTextDatum(run.name);
	values[2] = Int32GetDatum(run.version);
	values[3] = CStringGetTextDatum(sig->name);
	nwaiting = (int) engine_stmt(S_WAITING_FOR_SIGNAL, &run.leaves, values, NULL);
	waiting = palloc(sizeof(char *) * Max(nwaiting, 1));
	for (int i = 0; i < nwaiting; i++)
	{
		bool		isnull;

		waiting[i] = TextDatumGetCString(engine_col_at(i, "step", &isnull));
	}
	engine_rows_done();
	/* completing one can end the run: then the others are left as it left them */
	for (int i = 0; i < nwaiting && engine_run_active(&run); i++)
		engine_step_succeeded(&run, waiting[i], sig->payload, false);
}

/*
 * orchestrator_api_signal_workflow
 *		_api_signal_workflow(run_id, signal, payload): true when the run was
 *		active and got the signal, false when it had ended.
 */
Datum
orchestrator_api_signal_workflow(PG_FUNCTION_ARGS)
{
	Signal		sig;

	sig.name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (sig.name == NULL || !engine_valid_name(sig.name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid signal name %s",
						sig.name ? quote_literal_cstr(sig.name) : "NULL"),
				 errdetail("A signal name is 1 to 63 letters, digits, \"_\", \".\", \":\" or \"-\".")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run id must not be null")));
	sig.run_id = PG_GETARG_DATUM(0);
	sig.payload = PG_ARGISNULL(2) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))
		: PG_GETARG_DATUM(2);
	sig.sent = false;
	engine_unit(signal_work, &sig);
	PG_RETURN_BOOL(sig.sent);
}
