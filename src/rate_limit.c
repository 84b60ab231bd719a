/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *	  Rate limits of steps: a token bucket per owner role and key, shared
 *	  by every step of that role's workflows that names the key.
 *
 * A step with "rate_limit": {"key", "per_second", "burst"} takes a token
 * when it becomes ready (engine_step_ready()) and when a retry is
 * scheduled.  The bucket (orchestrator.rate_buckets) holds its tokens and
 * when it was last counted; one statement locks it, adds what accrued
 * since (per_second each second, at most burst), and takes one token.  The
 * count may go below zero: tokens promised to steps that wait.  A step
 * whose token is due later waits as "scheduled" with a timer at that time
 * (rate_limit_token_due() then makes it ready on its queue): steps are
 * spaced 1/per_second apart however many wait, and nothing is retried
 * in a loop.  The bucket is a row, so a restart neither refills it nor
 * forgets the promised tokens: no burst after a restart.
 *
 * Buckets are per owner role (the workflow's owner): one role's steps
 * cannot drain another role's bucket of the same key.  Each step takes its
 * token at its own per_second and burst.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "admission.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_run.h"
#include "engine_stmt.h"

typedef enum RateStmt
{
	R_TAKE,
	R_SCHEDULED,
	R_READY,
	R_READY_AT,
	R_COUNT
} RateStmt;

static const struct
{
	const char *sql;
	int			nargs;
	Oid			types[5];
}			rate_stmts[R_COUNT] = {
	/*
	 * Take a token: the bucket starts full; what accrued since it was last
	 * counted is added (capped at burst), one token taken.  The time is
	 * read before the row lock is had: a waiter counts less, never more.
	 * Returns when the token is due.
	 */
	[R_TAKE] = {
		"INSERT INTO orchestrator.rate_buckets AS b (owner, key, tokens, counted_at)"
		" SELECT $1, $2, $4 - 1, clock_timestamp()"
		" ON CONFLICT (owner, key) DO UPDATE SET"
		"   tokens = least($4::float8, b.tokens"
		"     + greatest(extract(epoch FROM excluded.counted_at - b.counted_at)::float8, 0) * $3) - 1,"
		"   counted_at = greatest(b.counted_at, excluded.counted_at)"
		" RETURNING b.counted_at + make_interval(secs => greatest(-b.tokens, 0) / $3) AS due,"
		"   b.counted_at AS now",
	4, {REGROLEOID, TEXTOID, FLOAT8OID, FLOAT8OID}},
	[R_SCHEDULED] = {
		"UPDATE orchestrator.workflow_steps SET status = 'scheduled', ready_at = $3, input = $4"
		" WHERE run_id = $1 AND step = $2",
	4, {UUIDOID, TEXTOID, TIMESTAMPTZOID, JSONBOID}},
	[R_READY] = {
		"UPDATE orchestrator.workflow_steps SET status = 'ready'"
		" WHERE run_id = $1 AND step = $2 AND status = 'scheduled'",
	2, {UUIDOID, TEXTOID}},
	[R_READY_AT] = {
		"UPDATE orchestrator.workflow_steps SET ready_at = $3 WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, TIMESTAMPTZOID}},
};

static SPIPlanPtr rate_plans[R_COUNT];

static uint64
rate_exec(RateStmt s, Datum *values, const char *nulls)
{
	MemoryContext context = CurrentMemoryContext;
	int			rc;

	if (rate_plans[s] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(rate_stmts[s].sql, rate_stmts[s].nargs, (Oid *) rate_stmts[s].types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare orchestrator rate limit statement %d: %s", (int) s,
				 SPI_result_code_string(SPI_result));
		rate_plans[s] = plan;
	}
	rc = SPI_execute_plan(rate_plans[s], values, nulls, false, 0);
	MemoryContextSwitchTo(context);
	if (rc < 0)
		elog(ERROR, "orchestrator rate limit statement %d failed: %s", (int) s, SPI_result_code_string(rc));
	return SPI_processed;
}

/* Take a token of the step's bucket; when it is due (and the bucket's now). */
static TimestampTz
take_token(EngineRun *run, StepDef *def, TimestampTz *now)
{
	Datum		values[4] = {ObjectIdGetDatum(run->owner), CStringGetTextDatum(def->rate_key),
		Float8GetDatum(def->rate_per_second), Float8GetDatum((double) def->rate_burst)};
	TimestampTz due;
	bool		isnull;

	rate_exec(R_TAKE, values, NULL);
	due = DatumGetTimestampTz(engine_col("due", &isnull));
	*now = DatumGetTimestampTz(engine_col("now", &isnull));
	engine_rows_done();
	return due;
}

/*
 * rate_limit_schedule
 *		A rate-limited step of kind sql, http or external is to be made
 *		ready (its input rendered): false when a token is there (the caller
 *		makes it ready now); else it is scheduled for when its token is due,
 *		with a timer then, and step.scheduled says so.
 */
bool
rate_limit_schedule(EngineRun *run, StepDef *def, Datum input, bool input_isnull)
{
	TimestampTz now;
	TimestampTz due = take_token(run, def, &now);
	Datum		values[4] = {run->id, CStringGetTextDatum(def->step), TimestampTzGetDatum(due), input};
	char		nulls[4] = {' ', ' ', ' ', input_isnull ? 'n' : ' '};
	StringInfoData data;

	if (due <= now)
		return false;
	rate_exec(R_SCHEDULED, values, nulls);
	engine_enqueue(run, def->step, "@timer", due);
	initStringInfo(&data);
	appendStringInfoString(&data, "{\"rate_limit\": ");
	escape_json(&data, def->rate_key);
	appendStringInfo(&data, ", \"ready_at\": %s}", engine_json_time(due));
	engine_emit(run, "step.scheduled", def->step, data.data);
	return true;
}

/*
 * rate_limit_token_due
 *		The timer of a scheduled step: its token is due, it is ready on its
 *		queue (the token was taken when it was scheduled).
 */
void
rate_limit_token_due(EngineRun *run, StepDef *def, const char *step)
{
	Datum		values[2] = {run->id, CStringGetTextDatum(step)};

	if (rate_exec(R_READY, values, NULL) == 1)
		engine_enqueue(run, step, def->queue, GetCurrentTransactionStartTimestamp());
}

/*
 * rate_limit_retry
 *		A retry of a rate-limited step due at "due" takes its token now: it
 *		runs when both are due.  Returns that time.
 */
TimestampTz
rate_limit_retry(EngineRun *run, StepDef *def, const char *step, TimestampTz due)
{
	TimestampTz now;
	TimestampTz token = take_token(run, def, &now);
	Datum		values[3] = {run->id, CStringGetTextDatum(step), TimestampTzGetDatum(token)};

	if (token <= due)
		return due;
	rate_exec(R_READY_AT, values, NULL);
	return token;
}
