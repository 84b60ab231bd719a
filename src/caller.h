/*-------------------------------------------------------------------------
 *
 * caller.h
 *	  Who is calling: the entry gate of the SQL API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_CALLER_H
#define ORCHESTRATOR_CALLER_H

#include "postgres.h"

/* Owner of the sql step being executed, or InvalidOid outside a step. */
extern Oid	orchestrator_step_owner;

extern Oid	orchestrator_current_caller(void);
extern void orchestrator_refuse_restricted(Oid function);

#endif							/* ORCHESTRATOR_CALLER_H */
