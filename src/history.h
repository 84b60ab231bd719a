/*-------------------------------------------------------------------------
 *
 * history.h
 *	  Events appended to a run's history without the executor (history.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HISTORY_H
#define ORCHESTRATOR_HISTORY_H

#include "datatype/timestamp.h"

typedef struct HistoryEvent
{
	const char *type;
	const char *step;			/* NULL: an event of the run */
	TimestampTz at;
	Datum		data;			/* jsonb */
} HistoryEvent;

extern int64 history_append(Oid partition, Datum run_id, int n, const HistoryEvent *events);
extern void history_new_run(Oid partition, Datum run_id);

#endif							/* ORCHESTRATOR_HISTORY_H */
