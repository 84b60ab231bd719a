/*-------------------------------------------------------------------------
 *
 * engine_run.h
 *	  What is done to a run without deciding anything (engine_run.c): the
 *	  primitives under the policies and the transitions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_RUN_H
#define ORCHESTRATOR_ENGINE_RUN_H

#include "postgres.h"

#include "utils/timestamp.h"

#include "run_model.h"
#include "run_rows.h"

extern uint64 engine_claim_rolling(const char *queue, int max_items, EngineClaim **claimed);
extern uint64 engine_claim(const char *queue, int max_items, Datum workflows,
						   EngineClaim **claimed);
extern bool engine_lock_run(Datum run_id, const char *step, bool skip_locked, EngineRun *run);
extern bool engine_lock_run_to_start(Datum run_id, const char *step, EngineRun *run);
extern bool engine_read_run(Datum run_id, EngineRun *run);
extern void engine_run_from_row(EngineRun *run, const RunRowLocked *row);
/* the runs of a batch of rows in one partition set, locked in the order given */
extern void engine_lock_runs(const RunLeaves *leaves, int n, const Datum *run_ids,
							 char *const *steps, bool *found, EngineRun *runs);
extern bool engine_run_active(EngineRun *run);
extern void engine_require_work_right(EngineRun *run);
extern char *engine_traceparent(EngineRun *run, const char *step, int32 attempt);
extern void engine_run_started(EngineRun *run);
extern void engine_enqueue(EngineRun *run, const char *step, const char *queue,
						   TimestampTz available_at);
extern Datum engine_run_context(EngineRun *run, Datum *context, bool *context_ready);
extern Datum engine_render(EngineRun *run, Datum template, Datum *context, bool *context_ready);
extern Datum engine_render_step(EngineRun *run, StepDef *def, Datum template, Datum *context,
								bool *context_ready);

#endif							/* ORCHESTRATOR_ENGINE_RUN_H */
