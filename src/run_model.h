/*-------------------------------------------------------------------------
 *
 * run_model.h
 *	  The model of runs and steps: their statuses and kinds, a locked run,
 *	  a step's definition, a version's shape.  The bottom of the engine:
 *	  the rows (run_rows.c), the definitions (defcache.c), the policies and
 *	  the transitions (engine.c) all speak it, and it depends on none of
 *	  them.  run_model.c names the statuses.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RUN_MODEL_H
#define ORCHESTRATOR_RUN_MODEL_H

#include "postgres.h"

#include "storage/itemptr.h"
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

/* The most elements of one for_each step (its "<step>[<index>]" names). */
#define FOR_EACH_MAX_ITEMS 10000

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
	Oid			started_by;		/* the role that started it (InvalidOid: unknown) */
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

/* A version's steps as a new run has them (defcache.c: engine_run_shape()). */
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

#endif							/* ORCHESTRATOR_RUN_MODEL_H */
