/*-------------------------------------------------------------------------
 *
 * engine_events.h
 *	  The events of a run (engine_events.c): appended, announced, counted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_EVENTS_H
#define ORCHESTRATOR_ENGINE_EVENTS_H

#include "postgres.h"

#include "run_model.h"
#include "run_rows.h"

/* Events appended by this process (see engine_events.c). */
extern uint64 engine_transitions;

extern int64 engine_emit(EngineRun *run, const char *type, const char *step, const char *data_json);
extern int64 engine_emit_jsonb(EngineRun *run, const char *type, const char *step, Datum data,
							   bool data_isnull);
/* result: data is a step result, the event's data {"result": data} */
extern int64 engine_emit_event(EngineRun *run, bool result, const char *type, const char *step,
							   Datum data, bool data_isnull);
extern int64 engine_emit_step_event(EngineRun *run, bool result, const char *type, const char *step,
									Datum data, bool data_isnull, const StepRowTimes *times);
extern int64 engine_append_event(EngineRun *run, const char *type, const char *step, TimestampTz at,
								 Datum data);
extern void engine_announce_event(EngineRun *run, int64 seq, Datum type, const char *type_name,
								  const char *step, Datum event_data);
extern int64 engine_step_started_event(EngineRun *run, const char *step, int32 attempt,
									   const char *worker);

/* the step.started of a sql step whose statement is running */
extern void engine_defer_step_started(EngineRun *run, const char *step, int32 attempt);
extern bool engine_take_deferred_start(void);
extern void engine_flush_deferred_start(EngineRun *run);

#endif							/* ORCHESTRATOR_ENGINE_EVENTS_H */
