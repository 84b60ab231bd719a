/*-------------------------------------------------------------------------
 *
 * external.c
 *	  External workers' claims and completions, through engine.c.
 *
 * claim_steps() validates its arguments in PL/pgSQL and claims through
 * _claim_external(); complete_step() is this file's function itself.  Both
 * do what their PL/pgSQL versions did (60_external.sql), with statements on
 * the run's partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "engine.h"

PG_FUNCTION_INFO_V1(orchestrator_claim_external);
PG_FUNCTION_INFO_V1(orchestrator_complete_step);

/* A fresh version 4 UUID: the lease token (as gen_random_uuid()). */
static Datum
random_uuid(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random lease token")));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return UUIDPGetDatum(uuid);
}

/*
 * orchestrator_claim_external
 *		_claim_external(queue, worker, max_steps, lease): claim up to
 *		max_steps due steps of an external queue with a lease, as
 *		claim_steps() returns them.  The caller validated the arguments.
 */
Datum
orchestrator_claim_external(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *queue = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *worker = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		max_steps = PG_GETARG_INT32(2);
	Datum		lease = PG_GETARG_DATUM(3);
	Datum		lease_end;
	EngineClaim *claimed;
	uint64		nclaimed;

	InitMaterializedSRF(fcinfo, 0);
	lease_end = DirectFunctionCall2(timestamptz_pl_interval,
									TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
									lease);

	SPI_connect();
	engine_begin();
	nclaimed = engine_claim(queue, max_steps, &claimed);
	for (uint64 i = 0; i < nclaimed; i++)
	{
		EngineClaim *c = &claimed[i];
		EngineRun	run;
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		Datum		token;
		int32		attempt;

		/* a run another transaction holds is left for the next claim */
		if (!engine_lock_run(UUIDPGetDatum(&c->run_id), c->step, true, &run))
			continue;
		if (c->leased)
		{
			engine_lease_expired(&run, c);
			continue;
		}
		token = random_uuid();
		attempt = engine_step_claimed(&run, c->step, worker, token, lease, &values[4], &nulls[4]);

		values[0] = run.id;
		values[1] = CStringGetTextDatum(c->step);
		values[2] = Int32GetDatum(attempt);
		values[3] = token;
		values[5] = CStringGetTextDatum(run.name);
		/* least(now() + lease, the run's deadline) */
		values[6] = run.has_deadline && run.deadline < DatumGetTimestampTz(lease_end)
			? TimestampTzGetDatum(run.deadline) : lease_end;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	engine_end();
	SPI_finish();

	return (Datum) 0;
}

/*
 * orchestrator_complete_step
 *		complete_step(run_id, step, lease_token, result): record the result
 *		of a claimed step; false (and nothing changed) when the lease is
 *		stale: expired, superseded, or of a run that has finished or is gone.
 */
Datum
orchestrator_complete_step(PG_FUNCTION_ARGS)
{
	Datum		run_id;
	char	   *step;
	Datum		token;
	Datum		result;
	EngineRun	run;
	bool		ok;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("run_id, step and lease_token must not be null"),
				 errhint("Pass the values claim_steps() returned.")));
	run_id = PG_GETARG_DATUM(0);
	step = text_to_cstring(PG_GETARG_TEXT_PP(1));
	token = PG_GETARG_DATUM(2);
	result = PG_ARGISNULL(3) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))
		: PG_GETARG_DATUM(3);

	SPI_connect();
	engine_begin();

	/*
	 * The lease token is the capability: the worker need not own the run.
	 * The run is locked first, then its queue row, as everywhere.
	 */
	ok = engine_lock_run(run_id, step, false, &run) &&
		(engine_run_active(&run) || strcmp(run.status, "compensating") == 0) &&
		engine_take_leased(&run, step, token);
	if (ok)
	{
		StepDef    *def = engine_step_def(run.name, run.version, step);

		engine_record_success(&run, def, step, result, false, NULL, false);
		engine_step_done(&run, def, step, true);
	}

	engine_end();
	SPI_finish();

	PG_RETURN_BOOL(ok);
}
