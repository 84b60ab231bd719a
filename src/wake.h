/*-------------------------------------------------------------------------
 *
 * wake.h
 *	  Wake the dispatchers when the current transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_WAKE_H
#define ORCHESTRATOR_WAKE_H

#include "shmem.h"			/* WAKE_* */

extern void orchestrator_wake_dispatchers_at_commit(int kinds);

#endif							/* ORCHESTRATOR_WAKE_H */
