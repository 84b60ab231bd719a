/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The state machine of runs and steps, in C (engine.c), its statements
 *	  (engine_stmt.c), the step definitions it reads (defcache.c) and its
 *	  SQL-callable entry points (engine_fn.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_H
#define ORCHESTRATOR_ENGINE_H

#include "postgres.h"

#include "storage/itemptr.h"
#include "utils/elog.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "leaf.h"

/* The statuses of a run (workflow_runs.status). */
typedef enum RunStatus
{
	RUN_PENDING,				/* created, no step started yet */
	RUN_RUNNING,
	RUN_COMPENSATING,			/* failed; undoing its succeeded steps */
	RUN_SUCCEEDED,
	RUN_FAILED,
	RUN_CANCELLED,
	RUN_QUEUED,					/* created over an admission limit; waits for
								 * a slot (admission.c) */
	RUN_STATUS_COUNT
} RunStatus;

/* The statuses of a step (workflow_steps.status). */
typedef enum StepStatus
{
	STEP_WAITING,				/* for its dependencies */
	STEP_READY,					/* queued (or due later, after a failure) */
	STEP_RUNNING,				/* an attempt, a sleep or a wait is under way */
	STEP_SUCCEEDED,
	STEP_SKIPPED,				/* its condition was false */
	STEP_FAILED,				/* an error that no retry would cure */
	STEP_DEAD,					/* out of attempts */
	STEP_CANCELLED,				/* the run ended first */
	STEP_COMPENSATED,			/* undone by its compensation */
	STEP_SCHEDULED,				/* waits for a rate limit's token, due at
								 * ready_at (rate_limit.c) */
	STEP_STATUS_COUNT
} StepStatus;

/* The kinds of step. */
typedef enum StepKind
{
	KIND_SQL,
	KIND_EXTERNAL,
	KIND_HTTP,
	KIND_SLEEP,
	KIND_WAIT,
	KIND_WORKFLOW,				/* a child run (compose.c) */
	KIND_COUNT
} StepKind;

extern const char *const run_status_names[RUN_STATUS_COUNT];
extern const char *const step_status_names[STEP_STATUS_COUNT];
extern RunStatus run_status_from_name(const char *name);

/* A claimed queue row. */
typedef struct EngineClaim
{
	pg_uuid_t	run_id;
	char	   *step;
	bool		leased;			/* it held a lease, now expired */
	char	   *worker;
	ItemPointerData tid;		/* the row locked (invalid: unknown) */
} EngineClaim;

/* A locked run and what the transitions need of it. */
typedef struct EngineRun
{
	Datum		id;
	RunLeaves	leaves;
	RunStatus	status;			/* kept current by the transitions */
	Oid			owner;			/* the workflow's: steps run as this role */
	char	   *name;
	int32		version;
	int32		priority;
	bool		has_deadline;
	TimestampTz deadline;
	int32		attempt;		/* of the step it was locked for, so far */
	char	   *trace_id;		/* W3C trace (NULL: a random one, or the run id) */
	char	   *trace_parent;	/* the caller's traceparent, if given */
	int16		admission;		/* admission slots it holds (ADMISSION_*
								 * bits, admission.h) */
	/* at creation only (compose.c): the run and step that started it */
	bool		has_parent;
	Datum		parent_id;
	char	   *parent_step;
} EngineRun;

/*
 * A step's definition, as the transitions use it (definition_steps, read
 * once per process: defcache.c).  Datums are jsonb unless said otherwise;
 * the *_isnull flags say when they are absent.
 */
typedef struct StepDef
{
	char	   *name;
	int32		version;
	char	   *step;
	bool		found;
	StepKind	kind;
	char	   *compensates;	/* the step it undoes, or NULL */
	bool		templated;		/* its spec holds {"$path": ...} templates */
	bool		has_condition;
	Datum		condition;		/* jsonpath */
	Datum		when;			/* the "when" text, for step.skipped */
	char	   *queue;			/* where it goes when ready (sql, external) */
	/* sql */
	char	   *sql;
	Datum		args_json;		/* the "args" array */
	Datum		args;			/* ... as jsonb[], when it has no templates */
	bool		args_isnull;
	int32		timeout_ms;		/* 0: orchestrator.default_step_timeout */
	/* external input, http request, sleep "until": templates */
	Datum		ready_input;
	bool		ready_input_isnull;
	/* sleep, wait */
	Datum		duration;		/* interval */
	bool		duration_isnull;
	char	   *signal;
	Datum		timeout;		/* interval: the step's "timeout" */
	bool		timeout_isnull;
	/* retries */
	int32		max_attempts;
	Datum		backoff;		/* interval */
	double		multiplier;
	Datum		max_backoff;	/* interval */
	double		jitter;
	bool		on_error_continue;	/* a step failed for good lets the run go on */
	/* "rate_limit" (rate_limit.c): NULL key when it has none */
	char	   *rate_key;
	double		rate_per_second;
	int32		rate_burst;
	/* successors */
	Datum		dependents;		/* text[] */
	bool		plain_when_ready;	/* made ready by its release: sql, or
									 * external without templates; no
									 * condition */
	/* its workflow */
	bool		has_result_template;
	/* fan-out (compose.c): once per element of an array */
	bool		for_each;
	Datum		for_each_path;	/* the {"$path": ...} template */
	int32		max_parallel;	/* 0: no limit */
	/* an element "<step>[<index>]" of a for_each step */
	char	   *element_of;		/* the for_each step, or NULL */
	int32		element_index;
	/* kind workflow: the child's workflow and version (0: the latest) */
	char	   *child_workflow;
	int32		child_version;
} StepDef;

/* engine_stmt.c: the statements of the transitions */
typedef enum Stmt
{
	S_MAY_WORK,
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
	S_MAY_START,
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
	S_MAY_START_AS,
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
	S_WORKABLE,
	S_COUNT
} Stmt;

extern uint64 engine_stmt(Stmt s, const RunLeaves *leaves, Datum *values, const char *nulls);
extern Datum engine_col(const char *name, bool *isnull);
extern Datum engine_col_at(uint64 row, const char *name, bool *isnull);
extern char *engine_col_text(const char *name);
extern bool engine_col_bool(const char *name);
extern int32 engine_col_int32(const char *name);
extern void engine_rows_done(void);

/* defcache.c */
extern StepDef *engine_step_def(const char *name, int32 version, const char *step);
extern void engine_def_cache_check(void);
extern char **engine_root_steps(const char *name, int32 version, int *nroots);

/* A version's steps as a new run has them (engine_run_shape()). */
typedef struct ShapeStep
{
	char	   *step;
	int32		position;
	char	   *kind;
	int32		ndeps;			/* how many it depends on */
	Datum		external_input; /* jsonb, of an external step (else 0) */
} ShapeStep;

typedef struct RunShape
{
	int			nsteps;			/* compensations left out */
	ShapeStep  *steps;			/* in position order */
	int			nroots;
	char	  **roots;			/* the steps that depend on nothing */
} RunShape;

extern RunShape *engine_run_shape(const char *name, int32 version);

/* engine.c: units of work */
extern void engine_unit(void (*work) (void *arg), void *arg);
extern bool engine_try(void (*fn) (void *arg), void *arg, ErrorData **error);
extern uint64 engine_transitions;

/* engine.c: runs */
extern uint64 engine_claim(const char *queue, int max_items, Datum workflows,
						   EngineClaim **claimed);
extern bool engine_lock_run(Datum run_id, const char *step, bool skip_locked, EngineRun *run);
extern bool engine_lock_run_to_start(Datum run_id, const char *step, EngineRun *run);
extern bool engine_read_run(Datum run_id, EngineRun *run);
extern void engine_lock_visible_run(Datum run_id, bool run_id_isnull, EngineRun *run);
extern void engine_require_work_right(EngineRun *run);
extern bool engine_run_active(EngineRun *run);
extern char *engine_traceparent(EngineRun *run, const char *step, int32 attempt);
extern void engine_run_created(EngineRun *run, Oid started_by, const char *tenant, Datum input,
							   const char *idempotency_key);
extern void engine_run_started(EngineRun *run);
extern void engine_run_finish(EngineRun *run, RunStatus status, Datum error, bool error_isnull);

/* engine.c: steps */
extern int64 engine_emit(EngineRun *run, const char *type, const char *step, const char *data_json);
extern int64 engine_emit_jsonb(EngineRun *run, const char *type, const char *step, Datum data,
							   bool data_isnull);
extern void engine_enqueue(EngineRun *run, const char *step, const char *queue,
						   TimestampTz available_at);
extern void engine_step_ready(EngineRun *run, const char *step);
extern int32 engine_step_started(EngineRun *run, const char *step, const char *worker);
extern int64 engine_step_started_event(EngineRun *run, const char *step, int32 attempt,
									   const char *worker);
extern int32 engine_step_claimed(EngineRun *run, const char *step, const char *worker,
								 Datum lease_token, Datum lease, Datum *input, bool *input_isnull,
								 TimestampTz *attempt_end, ItemPointer queue_tid);
extern void engine_extend_lease(EngineRun *run, const char *step, Datum lease, bool lease_isnull);
extern bool engine_take_leased(EngineRun *run, const char *step, Datum lease_token);
extern void engine_defer_step_started(EngineRun *run, const char *step, int32 attempt);
extern bool engine_take_deferred_start(void);
extern void engine_sql_step_succeeded(EngineRun *run, StepDef *def, const char *step,
									  Datum result, bool result_isnull, TimestampTz started_at,
									  bool started_appended, bool dequeue, ItemPointer queue_tid);
extern int64 engine_record_success(EngineRun *run, StepDef *def, const char *step,
								   Datum result, bool result_isnull, bool dequeue);
extern void engine_step_done(EngineRun *run, StepDef *def);

/* engine.c: batches of claimed steps, runs of one partition set */
extern void engine_steps_started(const RunLeaves *leaves, int n, const Datum *run_ids,
								 char *const *steps, const char *worker, bool *started,
								 EngineRun *runs, Datum *inputs, bool *inputs_isnull);
extern void engine_lock_runs(const RunLeaves *leaves, int n, const Datum *run_ids,
							 char *const *steps, bool *found, EngineRun *runs);

/*
 * Set by the dispatcher's sql batch (sql_steps.c) for its unit: offered
 * each sql step made ready, it returns true when it takes the step to run
 * at once, in the same transaction, instead of the step being queued.
 */
typedef bool (*EngineChainHook) (EngineRun *run, const char *step, int32 attempt);
extern void engine_set_chain_hook(EngineChainHook hook);

/* A fresh version 4 UUID (a lease token), in external.c. */
extern Datum engine_random_uuid(void);
extern void engine_step_succeeded(EngineRun *run, const char *step, Datum result, bool result_isnull);
extern void engine_attempt_failed(EngineRun *run, const char *step, Datum error, bool retryable,
								  Datum retry_after, bool retry_after_isnull);
extern void engine_sql_attempt_failed(EngineRun *run, const char *step, TimestampTz started_at,
									  ErrorData *error);
extern void engine_lease_expired(EngineRun *run, const char *step, const char *worker);
extern void engine_fire_timer(EngineRun *run, const char *step);
extern Datum engine_render(EngineRun *run, Datum template, Datum *context, bool *context_ready);
extern Datum engine_render_step(EngineRun *run, StepDef *def, Datum template, Datum *context,
								bool *context_ready);
extern Datum engine_message_error(const char *message);
extern bool engine_valid_name(const char *name);
extern char *engine_json_time(TimestampTz t);
extern Datum engine_json_object1(const char *key, Datum value, bool isnull);
extern Datum engine_step_started_data(int32 attempt, const char *worker);
struct JsonbParseState;
extern void engine_jsonb_push_pair(struct JsonbParseState **state, const char *key, Datum value,
								   bool isnull);
extern char *engine_uuid_text(Datum id);

/* compose.c: child workflows and fan-out */
extern StepDef *compose_element_def(StepDef *base, const char *step, int32 index);
extern bool compose_element_name(const char *step, char **base, int32 *index);
extern void compose_fan_out(EngineRun *run, StepDef *def, Datum *context, bool *context_ready);
extern void compose_element_done(EngineRun *run, StepDef *def);
extern void compose_element_final(EngineRun *run, StepDef *def, StepStatus final, Datum error);
extern void compose_fire(EngineRun *run, StepDef *def, const char *status);
extern void compose_cancel_child(Datum child_id);
extern void compose_run_ended(EngineRun *run, Datum parent_id, bool parent_isnull, const char *parent_step);
extern bool compose_fire_internal(EngineRun *run, const char *step);

#endif							/* ORCHESTRATOR_ENGINE_H */
