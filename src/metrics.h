/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  Counters and histograms of committed transitions, in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_METRICS_H
#define ORCHESTRATOR_METRICS_H

#include "postgres.h"

#include "utils/timestamp.h"

/*
 * A transition of a run or step, counted when the transaction commits
 * (and exported as a span, otlp.c).  "type" is the event type
 * (workflow.succeeded, step.started, ...); types that are not counted are
 * ignored.  For step events, kind is the step's kind, started_at the start
 * of the attempt and ready_at when it became due (0 when unknown); "at" is
 * the time of the event.  trace_id and trace_parent are the run's (NULL:
 * none), created_at its creation.
 */
typedef struct MetricsEvent
{
	const char *type;
	const char *run_id;			/* text form */
	const char *workflow;
	const char *step;
	const char *kind;
	int32		attempt;
	TimestampTz started_at;
	TimestampTz ready_at;
	TimestampTz at;
	TimestampTz created_at;
	const char *trace_id;
	const char *trace_parent;
} MetricsEvent;

extern bool orchestrator_metrics_counts(const char *type);
extern void orchestrator_metrics_event(const MetricsEvent *e);

/* The outcome of an HTTP request of a step or a webhook delivery. */
extern void orchestrator_metrics_http(bool webhook, int status, const char *error_kind);

extern void orchestrator_metrics_install(void);

#endif							/* ORCHESTRATOR_METRICS_H */
