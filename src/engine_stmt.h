/*-------------------------------------------------------------------------
 *
 * engine_stmt.h
 *	  The statements of the engine, its policies and its API (engine_stmt.c):
 *	  prepared once per partition set, their results read by column name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_STMT_H
#define ORCHESTRATOR_ENGINE_STMT_H

#include "postgres.h"

#include "leaf.h"

/* The statements, one name each. */
typedef enum Stmt
{
	S_WEBHOOKS_EXIST,
	S_RUN_EXISTS,
	S_EXTEND_LEASE,
	S_LEASE_TIMED_OUT,
	S_STEP_DEF,
	S_WEBHOOK_OUTBOX,
	S_STEP_STARTED,
	S_STEP_RUNNING,
	S_DEQUEUE,
	S_STEP_METRICS,
	S_RUN_STEP_METRICS,
	S_ADD_COST,
	S_OPEN_STEPS,
	S_DELETE_RUN_QUEUE,
	S_START_LOOKUP,
	S_DEADLINE,
	S_CLAIM_IDEMPOTENCY_KEY,
	S_IDEMPOTENT_RUN,
	S_RUN_SHAPE,
	S_MAKE_READY,
	S_STEP_SKIPPED,
	S_STEP_READY_AT,
	S_SET_INPUT,
	S_CONTEXT,
	S_RENDER,
	S_CONDITION,
	S_UNTIL,
	S_DUE_AFTER,
	S_SLEEP_TIMED_OUT,
	S_FIRST_SIGNAL,
	S_STEP_ATTEMPTS,
	S_STEP_STATE,
	S_RETRY_STEP,
	S_STEP_FINAL,
	S_CANCEL_OPEN_STEPS,
	S_ADD_COMPENSATIONS,
	S_RUN_COMPENSATING,
	S_NEXT_COMPENSATION,
	S_STEP_COMPENSATED,
	S_RUN_COMPENSATED,
	S_RUN_ERROR,
	S_RESULT_TEMPLATE,
	S_STEP_RESULTS,
	S_RUN_FINISH,
	S_HTTP_RECOVER,
	S_CHECK_SIGNAL,
	S_KEEP_SIGNAL,
	S_WAITING_FOR_SIGNAL,
	S_HTTP_CIRCUITS_OPEN,
	S_HTTP_CIRCUIT_WAIT,
	S_STEP_INPUT,
	S_EXPIRED_LEASES,
	S_NEXT_WAKE,
	S_PARTITION_AHEAD,
	S_CREATE_PARTITIONS,
	/* compose.c */
	S_CONTEXT_ITEM,
	S_ITEMS_CREATE,
	S_ITEMS_TRIM,
	S_ITEMS_NEXT,
	S_ITEM_RELEASE,
	S_ITEM_DONE,
	S_ITEMS_RESULT,
	S_ITEMS_FINISH,
	S_FAN_OUT,
	S_CHILD_OF_STEP,
	S_CHILD_RUN,
	S_SET_CHILD,
	S_PARENT_TENANT,
	S_NESTING,
	S_HAND_OFF,
	/* http_record.c, breaker.c, webhook.c */
	S_HTTP_NEXT_WAKE,
	S_HTTP_LEASE_HELD,
	S_CIRCUITS_EXIST,
	S_CIRCUIT_GET,
	S_CIRCUIT_LOCK,
	S_CIRCUIT_PROBE_LOCK,
	S_CIRCUIT_PROBE,
	S_CIRCUIT_CLOSE,
	S_CIRCUIT_RELEASE,
	S_CIRCUIT_ADD,
	S_CIRCUIT_OPEN,
	S_CIRCUIT_FAILURE,
	S_WEBHOOK_RECOVER,
	S_WEBHOOK_DUE,
	S_WEBHOOK_CANCEL,
	S_WEBHOOK_DEAD,
	S_WEBHOOK_LEASE,
	S_WEBHOOK_FAILED,
	S_WEBHOOK_DELIVERED,
	S_RUN_TRACE,
	/* run_api.c, external.c: the API's transitions */
	S_RUN_VISIBLE,
	S_RESUME_STEPS_READ,
	S_RESUME_COMPENSATED,
	S_RESUME_RUN,
	S_RESUME_STEPS,
	S_STEP_FREE,
	S_CHECK_LEASE,
	S_STEP_PROGRESS,
	S_QUEUE_LIMIT,
	S_QUEUE_LEASED,
	S_COUNT
} Stmt;

extern uint64 engine_stmt(Stmt s, const RunLeaves *leaves, Datum *values, const char *nulls);
extern Datum engine_col(const char *name, bool *isnull);
extern Datum engine_col_at(uint64 row, const char *name, bool *isnull);
extern char *engine_col_text(const char *name);
extern bool engine_col_bool(const char *name);
extern int32 engine_col_int32(const char *name);
extern void engine_rows_done(void);

#endif							/* ORCHESTRATOR_ENGINE_STMT_H */
