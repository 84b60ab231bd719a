/*-------------------------------------------------------------------------
 *
 * admission.h
 *	  Flow control: admission of runs under limits of active runs
 *	  (admission.c) and rate limits of steps (rate_limit.c): policies that
 *	  the state machine (engine.c) asks; they call only the primitives
 *	  below them (engine_run.h, engine_events.h), never a transition.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ADMISSION_H
#define ORCHESTRATOR_ADMISSION_H

#include "postgres.h"

#include "run_model.h"

/* The scopes of admission limits: bits of workflow_runs.admission. */
#define ADMISSION_GLOBAL	0x01	/* orchestrator.max_active_runs */
#define ADMISSION_WORKFLOW	0x02	/* a workflow's "max_active_runs" */
#define ADMISSION_TENANT	0x04	/* set_tenant_limits() */
#define ADMISSION_SCOPES	3

/* What admission_at_start() decided for a run being created. */
typedef struct Admission
{
	bool		limited;		/* some limit applies: admission_created() */
	bool		queued;			/* over a limit: the run waits */
	int16		bits;			/* slots taken (when admitted) */
	char	   *reason;			/* JSON: the limit it waits for */
} Admission;

/* Where slots were freed: queued runs of every scope, or of a workflow or a tenant. */
typedef struct AdmitWhere
{
	bool		all;
	const char *workflow;		/* NULL: none */
	const char *tenant;			/* NULL: none */
} AdmitWhere;

/* A batch of queued runs to admit, best first, and what its pass learnt. */
typedef struct AdmitPass AdmitPass;
typedef struct AdmitBatch
{
	int			n;
	Datum	   *ids;
	char	  **workflows;
	char	  **tenants;
	AdmitPass  *pass;			/* the scopes found full */
} AdmitBatch;

/* admission.c */
extern void admission_at_start(EngineRun *run, const char *tenant, Admission *a);
extern void admission_created(EngineRun *run, const char *tenant, Admission *a);
extern bool admission_run_left(EngineRun *run, bool was_queued, AdmitWhere *where);
extern void admission_resumed(EngineRun *run);
extern bool admission_queued_runs(bool idle);
extern void admission_configure(const char *scope_name, const char *key, int32 limit,
								AdmitWhere *where);
extern AdmitBatch *admission_candidates(const AdmitWhere *where);
extern bool admission_nothing_fits(AdmitBatch *b);
extern bool admission_batch_more(AdmitBatch *b);
extern bool admission_admit(AdmitBatch *b, int i, EngineRun *q, char ***roots, int *nroots);

/* rate_limit.c */
extern bool rate_limit_schedule(EngineRun *run, StepDef *def, Datum input, bool input_isnull);
extern void rate_limit_token_due(EngineRun *run, StepDef *def, const char *step);
extern TimestampTz rate_limit_retry(EngineRun *run, StepDef *def, const char *step, TimestampTz due);

#endif							/* ORCHESTRATOR_ADMISSION_H */
