/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The transitions of runs and steps (engine.c), as the entry points
 *	  above them include them: with the headers of every layer below (the
 *	  attempts, the policies, the primitives, the definitions, the model;
 *	  docs/architecture.md, "The state machine in C").  Nothing below the
 *	  transitions includes this file.
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

#include "admission.h"
#include "defcache.h"
#include "engine_attempt.h"
#include "engine_events.h"
#include "engine_json.h"
#include "engine_run.h"
#include "engine_stmt.h"
#include "engine_unit.h"
#include "leaf.h"
#include "run_model.h"

/* run_api.c: the run locked for the caller of the API */
extern void engine_lock_visible_run(Datum run_id, bool run_id_isnull, EngineRun *run);

/* engine.c: runs */
extern void engine_run_created(EngineRun *run, Oid started_by, const char *tenant, Datum input,
							   const char *idempotency_key);
extern void engine_run_finish(EngineRun *run, RunStatus status, Datum error, bool error_isnull);
extern void engine_admit_waiting(const AdmitWhere *where);

/* engine.c: steps */
extern void engine_step_ready(EngineRun *run, const char *step);
extern void engine_sql_step_succeeded(EngineRun *run, StepDef *def, const char *step,
									  Datum result, bool result_isnull, TimestampTz started_at,
									  bool started_appended, bool dequeue, ItemPointer queue_tid);
extern int64 engine_record_success(EngineRun *run, StepDef *def, const char *step,
								   Datum result, bool result_isnull, bool dequeue);
extern void engine_step_done(EngineRun *run, StepDef *def);
extern void engine_step_succeeded(EngineRun *run, const char *step, Datum result, bool result_isnull);
extern void engine_attempt_failed(EngineRun *run, const char *step, Datum error, bool retryable,
								  Datum retry_after, bool retry_after_isnull);
extern void engine_sql_attempt_failed(EngineRun *run, const char *step, TimestampTz started_at,
									  ErrorData *error);
extern void engine_lease_expired(EngineRun *run, const char *step, const char *worker);

/* A fresh version 4 UUID (a lease token), in external.c. */
extern Datum engine_random_uuid(void);

#endif							/* ORCHESTRATOR_ENGINE_H */
