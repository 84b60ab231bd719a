/*-------------------------------------------------------------------------
 *
 * engine_timer.h
 *	  The transitions a due timer makes (engine_timer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_ENGINE_TIMER_H
#define ORCHESTRATOR_ENGINE_TIMER_H

#include "postgres.h"

#include "run_model.h"

extern void engine_fire_timer(EngineRun *run, const char *step);

#endif							/* ORCHESTRATOR_ENGINE_TIMER_H */
