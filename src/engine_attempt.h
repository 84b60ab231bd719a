/*-------------------------------------------------------------------------
 *
 * engine_attempt.h
 *	  A step's attempt starts (engine_attempt.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_ATTEMPT_H
#define ORCHESTRATOR_ENGINE_ATTEMPT_H

#include "postgres.h"

#include "storage/itemptr.h"
#include "utils/timestamp.h"

#include "run_model.h"

extern int32 engine_step_started(EngineRun *run, const char *step, const char *worker);
extern int32 engine_step_claimed(EngineRun *run, const char *step, const char *worker,
								 Datum lease_token, Datum lease, Datum *input, bool *input_isnull,
								 TimestampTz *attempt_end, ItemPointer queue_tid);
extern void engine_extend_lease(EngineRun *run, const char *step, Datum lease, bool lease_isnull);
extern bool engine_take_leased(EngineRun *run, const char *step, Datum lease_token);

/* a batch of claimed steps, runs of one partition set */
extern void engine_steps_started(const RunLeaves *leaves, int n, const Datum *run_ids,
								 char *const *steps, const char *worker, bool *started,
								 EngineRun *runs, Datum *inputs, bool *inputs_isnull);

#endif							/* ORCHESTRATOR_ENGINE_ATTEMPT_H */
