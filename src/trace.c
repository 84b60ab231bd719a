/*-------------------------------------------------------------------------
 *
 * trace.c
 *	  W3C trace context: the trace id of a run.
 *
 * Every run belongs to one trace (workflow_runs.trace_id, 32 lowercase hex
 * digits).  A start_workflow() call may continue a caller's trace (option
 * "traceparent"); otherwise the run starts a trace of its own, with a
 * random id from this function (the column's default).  Span ids are not
 * stored: the span of a run and of each step attempt have ids derived from
 * the run id, step name and attempt (orchestrator._span_id()), so that the
 * traceparent header an HTTP request carries, the one claim_steps() hands
 * to a worker and the spans exported to a collector (otlp.c) agree without
 * any bookkeeping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "random_pool.h"

PG_FUNCTION_INFO_V1(orchestrator_new_trace_id);

/*
 * orchestrator._new_trace_id() returns text
 *		16 random bytes in hex (never all zero, which W3C reserves).
 */
Datum
orchestrator_new_trace_id(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	uint8		bytes[16];
	char		out[33];
	bool		zero = true;

	while (zero)
	{
		random_pool_fill(bytes, sizeof(bytes));
		for (int i = 0; i < 16; i++)
			zero &= bytes[i] == 0;
	}
	for (int i = 0; i < 16; i++)
	{
		out[2 * i] = hex[bytes[i] >> 4];
		out[2 * i + 1] = hex[bytes[i] & 15];
	}
	out[32] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
