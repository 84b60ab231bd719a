/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The engine's hot transitions in C, on the partitions of one run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_H
#define ORCHESTRATOR_ENGINE_H

#include "postgres.h"

#include "utils/elog.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "leaf.h"

/* A claimed queue row. */
typedef struct EngineClaim
{
	pg_uuid_t	run_id;
	char	   *step;
	bool		leased;			/* it held a lease, now expired */
	char	   *worker;
} EngineClaim;

/* A locked run and what the transitions need of it. */
typedef struct EngineRun
{
	Datum		id;
	RunLeaves	leaves;
	char	   *status;
	Oid			owner;			/* the workflow's: steps run as this role */
	char	   *name;
	int32		version;
	int32		priority;
	bool		has_deadline;
	TimestampTz deadline;
	int32		attempt;		/* of the step it was locked for, so far */
} EngineRun;

/*
 * What the transitions need of a step's definition (cached: see
 * engine_step_def()).
 */
typedef struct StepDef
{
	char	   *name;
	int32		version;
	char	   *step;
	bool		found;
	bool		plain_sql;		/* a sql step run without the PL/pgSQL engine */
	bool		compensates;	/* a compensation */
	char	   *sql;
	Datum		args_json;		/* the "args" array */
	Datum		args;			/* ... as jsonb[] */
	bool		args_isnull;
	int32		timeout_ms;
	Datum		dependents;		/* text[] */
	bool		has_result_template;	/* of its workflow */
	bool		plain_when_ready;	/* made ready here: sql, or external
									 * without templates; no condition */
	char	   *queue;			/* the queue it goes to when ready */
	Datum		ready_input;	/* its input when ready (external) */
	bool		ready_input_isnull;
} StepDef;

extern void engine_unit(void (*work) (void *arg), void *arg);

extern uint64 engine_claim(const char *queue, int max_items, Datum workflows,
						   EngineClaim **claimed);
extern void engine_require_work_right(EngineRun *run);
extern bool engine_lock_run(Datum run_id, const char *step, bool skip_locked, EngineRun *run);
extern StepDef *engine_step_def(const char *name, int32 version, const char *step);
extern bool engine_run_active(EngineRun *run);

extern void engine_run_started(EngineRun *run);
extern int64 engine_step_started_event(EngineRun *run, const char *step, int32 attempt,
									   const char *worker);
extern int32 engine_step_claimed(EngineRun *run, const char *step, const char *worker,
								 Datum lease_token, Datum lease, Datum *input, bool *input_isnull);
extern bool engine_take_leased(EngineRun *run, const char *step, Datum lease_token);
extern int64 engine_record_success(EngineRun *run, StepDef *def, const char *step,
								   Datum result, bool result_isnull,
								   const TimestampTz *sql_started_at, bool dequeue);
extern void engine_step_done(EngineRun *run, StepDef *def, const char *step, bool fresh);
extern void engine_run_created(EngineRun *run, Oid started_by, const char *tenant, Datum input,
							   const char *idempotency_key);

/* hand-overs to the PL/pgSQL engine */
extern void engine_slow_exec_sql_step(EngineRun *run, const char *step);
extern void engine_lease_expired(EngineRun *run, EngineClaim *claim);
extern void engine_sql_attempt_failed(EngineRun *run, const char *step,
									  TimestampTz started_at, ErrorData *error);

#endif							/* ORCHESTRATOR_ENGINE_H */
