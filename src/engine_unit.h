/*-------------------------------------------------------------------------
 *
 * engine_unit.h
 *	  Units of work of the engine, and engine_try() (engine_unit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_UNIT_H
#define ORCHESTRATOR_ENGINE_UNIT_H

#include "postgres.h"

#include "utils/elog.h"

#include "run_model.h"

/*
 * The search_path a unit's statements run under: their names are qualified,
 * and nothing else may resolve them.  The dispatchers keep it for their
 * whole session.
 */
#define ENGINE_SEARCH_PATH "pg_catalog, pg_temp"

extern void engine_unit(void (*work) (void *arg), void *arg);
extern bool engine_try(void (*fn) (void *arg), void *arg, ErrorData **error);

/*
 * Set by the dispatcher's sql batch (sql_steps.c) for its unit: offered
 * each sql step made ready, it returns true when it takes the step to run
 * at once, in the same transaction, instead of the step being queued.
 */
typedef bool (*EngineChainHook) (EngineRun *run, const char *step, int32 attempt);
extern void engine_set_chain_hook(EngineChainHook hook);
extern bool engine_chain_offer(EngineRun *run, const char *step, int32 attempt);

#endif							/* ORCHESTRATOR_ENGINE_UNIT_H */
