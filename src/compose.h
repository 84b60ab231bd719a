/*-------------------------------------------------------------------------
 *
 * compose.h
 *	  Fan-out and child runs: their rows and decisions (compose.c), which
 *	  the transitions (engine.c, engine_timer.c) ask.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_COMPOSE_H
#define ORCHESTRATOR_COMPOSE_H

#include "postgres.h"

#include "run_model.h"

/* What compose_fan_out() made of a for_each step's items. */
typedef enum FanOut
{
	FAN_OUT_INVALID,			/* not an array, or too long: the attempt fails */
	FAN_OUT_EMPTY,				/* []: the step succeeds with it */
	FAN_OUT_WRITTEN				/* elements written: make the first ones ready */
} FanOut;

extern FanOut compose_fan_out(EngineRun *run, StepDef *def, Datum items, Datum *error);
extern char *compose_next_element(EngineRun *run, StepDef *def, bool *last);
extern bool compose_item_done(EngineRun *run, StepDef *def, bool failed);
extern bool compose_items_finished(EngineRun *run, StepDef *def, Datum *results);
extern Datum compose_element_failed(EngineRun *run, StepDef *step, StepDef *element,
									StepStatus final, Datum error);
extern void compose_cancel_child(Datum child_id);
extern void compose_run_ended(EngineRun *run, Datum parent_id, bool parent_isnull,
							  const char *parent_step);

#endif							/* ORCHESTRATOR_COMPOSE_H */
