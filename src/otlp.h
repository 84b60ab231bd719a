/*-------------------------------------------------------------------------
 *
 * otlp.h
 *	  Spans of runs and step attempts, exported over OTLP/HTTP (JSON).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_OTLP_H
#define ORCHESTRATOR_OTLP_H

#include "postgres.h"

#include "utils/timestamp.h"

#define OTLP_WORKFLOW_LEN 128
#define OTLP_STEP_LEN 64

/* One finished span (a run, or an attempt of a step when step[0] != 0). */
typedef struct OtlpSpan
{
	char		trace_id[33];
	char		span_id[17];
	char		parent_span_id[17];	/* "" for a root span */
	char		run_id[37];
	char		workflow[OTLP_WORKFLOW_LEN];
	char		step[OTLP_STEP_LEN];
	char		kind[12];
	char		status[12];		/* succeeded, failed, dead, retrying, cancelled */
	int32		attempt;
	TimestampTz start;
	TimestampTz end;
} OtlpSpan;

/* Is an endpoint set (then transitions make spans)? */
extern bool orchestrator_otlp_enabled(void);
extern void orchestrator_otlp_counts(uint64 *exported, uint64 *dropped);

/* The span id of a run (step NULL) or of a step attempt: _span_id(). */
extern void orchestrator_span_id(const char *run_id, const char *step, int32 attempt, char *out);

/* Queue a committed span for export; drops (counted) when full.  Never fails. */
extern void orchestrator_otlp_push(const OtlpSpan *span);

extern void orchestrator_otlp_install(void);

extern PGDLLEXPORT void orchestrator_otlp_main(Datum main_arg);

#endif							/* ORCHESTRATOR_OTLP_H */
