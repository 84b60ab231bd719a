/*-------------------------------------------------------------------------
 *
 * start.c
 *	  Starting a run, on the engine (engine_run_created()).
 *
 * start_workflow()'s implementation validates its options and the caller's
 * right in PL/pgSQL (sql/src/50_runs.sql), then calls _start_run(), which
 * writes the run on the partitions that hold it, as the engine's other
 * transitions do: PL/pgSQL statements on the partitioned parents would set
 * up run-time pruning over every day of history for each of them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(orchestrator_start_run);

typedef struct StartRun
{
	EngineRun	run;
	Oid			started_by;
	char	   *tenant;
	Datum		input;
	char	   *idempotency_key;
} StartRun;

static void
start_run_work(void *arg)
{
	StartRun   *a = arg;

	engine_run_created(&a->run, a->started_by, a->tenant, a->input, a->idempotency_key);
}

/*
 * orchestrator._start_run(id uuid, name text, version integer, tenant text,
 *		owner regrole, started_by regrole, input jsonb, idempotency_key text,
 *		priority integer, deadline timestamptz) returns void
 *
 * Internal: the caller validated everything (and holds the idempotency key).
 */
Datum
orchestrator_start_run(PG_FUNCTION_ARGS)
{
	StartRun	a;

	for (int i = 0; i < 7; i++)
		if (i != 3 && PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("argument %d of _start_run() must not be null", i + 1)));
	memset(&a, 0, sizeof(a));
	a.run.id = PG_GETARG_DATUM(0);
	a.run.name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	a.run.version = PG_GETARG_INT32(2);
	a.tenant = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	a.run.owner = PG_GETARG_OID(4);
	a.started_by = PG_GETARG_OID(5);
	a.input = PG_GETARG_DATUM(6);
	a.idempotency_key = PG_ARGISNULL(7) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(7));
	a.run.priority = PG_ARGISNULL(8) ? 0 : PG_GETARG_INT32(8);
	a.run.has_deadline = !PG_ARGISNULL(9);
	a.run.deadline = a.run.has_deadline ? PG_GETARG_TIMESTAMPTZ(9) : 0;
	engine_unit(start_run_work, &a);
	PG_RETURN_VOID();
}
