/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state of the orchestrator launcher and dispatchers.
 *
 * One slot per possible dispatcher.  The launcher assigns slot numbers; a
 * dispatcher fills its slot when it starts and clears it when it exits.
 * Backends read the slots to wake the dispatchers (wake.c) and to report on
 * them (orchestrator._worker_status()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_SHMEM_H
#define ORCHESTRATOR_SHMEM_H

#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "guc.h"

typedef struct OrchestratorSlot
{
	/* Protected by OrchestratorShared->lock. */
	bool		in_use;
	pid_t		pid;
	int			pgprocno;		/* whose procLatch to set */
	TimestampTz started_at;

	/* Written by the owning dispatcher only, read without the lock. */
	pg_atomic_uint64 last_active;	/* a TimestampTz, 0 = never */
	pg_atomic_uint64 steps_processed;
} OrchestratorSlot;

typedef struct OrchestratorShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;	/* protected by lock */
	OrchestratorSlot slots[ORCHESTRATOR_MAX_WORKERS];
} OrchestratorShared;

extern OrchestratorShared *orchestrator_shared;

extern void orchestrator_shmem_install_hooks(void);
extern bool orchestrator_claim_slot(int slot);
extern void orchestrator_report_turn(uint64 processed);
extern pid_t orchestrator_slot_pid(int slot);
extern void orchestrator_set_launcher_pid(pid_t pid);
extern void orchestrator_wake_dispatchers(void);

#endif							/* ORCHESTRATOR_SHMEM_H */
