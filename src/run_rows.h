/*-------------------------------------------------------------------------
 *
 * run_rows.h
 *	  The rows the hot transitions change, without the executor
 *	  (run_rows.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RUN_ROWS_H
#define ORCHESTRATOR_RUN_ROWS_H

#include "run_model.h"

typedef struct StepRowSucceeded
{
	int32		attempt;		/* this one */
	bool		has_ready_at;
	TimestampTz ready_at;
	TimestampTz finished_at;
} StepRowSucceeded;

typedef struct RunRowSucceeded
{
	Datum		data;			/* workflow.succeeded's: {"result": ...} */
	TimestampTz at;
	char	   *trace_id;
	char	   *trace_parent;
	TimestampTz created_at;
	bool		parent_isnull;
	Datum		parent_id;
	char	   *parent_step;
} RunRowSucceeded;

/* run_row_lock(): how the run's row is locked */
typedef enum RunLock
{
	RUN_LOCK_NONE,				/* the caller holds it already */
	RUN_LOCK_SKIP,				/* SKIP LOCKED */
	RUN_LOCK_WAIT
} RunLock;

typedef struct RunRowLocked
{
	RunStatus	status;
	Oid			owner;
	Oid			started_by;
	char	   *name;
	int32		version;
	int32		priority;
	bool		has_deadline;
	TimestampTz deadline;
	char	   *trace_id;
	char	   *trace_parent;
	int16		admission;
	int32		attempt;		/* of the step asked for, so far */
	bool		started;		/* it was pending and started now */
	TimestampTz started_at;
} RunRowLocked;

extern bool run_row_lock(EngineRun *run, const char *step, RunLock lock, bool start,
						 RunRowLocked *out);

/* what metrics.c counts of a step's event, from its row */
typedef struct StepRowTimes
{
	char	   *kind;
	int32		attempt;
	TimestampTz started_at;		/* 0: none */
	TimestampTz ready_at;		/* 0: none */
} StepRowTimes;

typedef struct StepRowClaimed
{
	StepRowTimes times;			/* this attempt's */
	Datum		input;
	bool		input_isnull;
	TimestampTz attempt_end;	/* DT_NOEND: none */
} StepRowClaimed;

extern bool step_row_sql_succeeded(EngineRun *run, const char *step, TimestampTz started_at,
								   Datum result, bool result_isnull, Datum args_json,
								   StepRowSucceeded *out);
extern bool step_row_release(EngineRun *run, const char *step, bool make_ready, Datum input,
							 bool input_isnull, int32 *deps_open, int32 *attempt);
extern void queue_row_delete(Datum run_id, const char *step, ItemPointer tid);
extern uint64 queue_rows_claim(const char *queue, int max_items, EngineClaim **claimed);
extern uint64 queue_rows_claim_rolling(const char *queue, int max_items, EngineClaim **claimed);
extern uint64 queue_rows_claim_of(const char *queue, int max_items, Datum workflows,
								  EngineClaim **claimed);
extern bool run_row_succeeded(EngineRun *run, RunRowSucceeded *out);
extern void run_rows_create(EngineRun *run, Oid started_by, const char *tenant, Datum input,
							const char *idempotency_key, RunShape *shape,
							int nplain, char **plain, char **queues);
extern bool step_row_claimed(EngineRun *run, const char *step, const char *worker,
							 Datum timeout, bool timeout_isnull, StepRowClaimed *out);
extern bool step_row_succeeded(EngineRun *run, const char *step, Datum result, bool result_isnull,
							   StepRowTimes *out);
extern void queue_row_lease(Datum run_id, const char *step, Datum token, Datum lease,
							const char *worker, TimestampTz attempt_end, ItemPointer tid);
extern bool queue_row_take_leased(Datum run_id, const char *step, Datum token);
extern void queue_row_enqueue(EngineRun *run, const char *step, const char *queue_name,
							  int32 priority, TimestampTz available_at);

#endif							/* ORCHESTRATOR_RUN_ROWS_H */
