/*
 * caller.h
 *		The role on whose behalf the current call runs.
 */
#ifndef ORCHESTRATOR_CALLER_H
#define ORCHESTRATOR_CALLER_H

/* Owner of the sql step being executed, or InvalidOid outside a step. */
extern Oid	orchestrator_step_owner;

#endif
