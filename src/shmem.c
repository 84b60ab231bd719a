/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared state of the orchestrator launcher and dispatchers.
 *
 * The slot array is small and changes only when a dispatcher starts or
 * exits, so one LWLock guards it.  The per-turn statistics of a dispatcher
 * are atomics written by that dispatcher alone, so reading them never blocks
 * the dispatcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(orchestrator_worker_status);

OrchestratorShared *orchestrator_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static int	my_slot = -1;

/*
 * orchestrator_shmem_request
 *		Reserve the shared memory and the lock (PostgreSQL 15 asks for this
 *		in shmem_request_hook, after all libraries are loaded).
 */
static void
orchestrator_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(OrchestratorShared)));
	RequestNamedLWLockTranche("orchestrator", 1);
}

/*
 * orchestrator_shmem_startup
 *		Create or attach to the shared state.  Runs in the postmaster at
 *		start and after every crash restart, which wipes the slots.
 */
static void
orchestrator_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	orchestrator_shared = ShmemInitStruct("orchestrator",
										  sizeof(OrchestratorShared),
										  &found);
	if (!found)
	{
		int			i;

		memset(orchestrator_shared, 0, sizeof(OrchestratorShared));
		orchestrator_shared->lock = &(GetNamedLWLockTranche("orchestrator"))->lock;
		for (i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
		{
			pg_atomic_init_u64(&orchestrator_shared->slots[i].last_active, 0);
			pg_atomic_init_u64(&orchestrator_shared->slots[i].steps_processed, 0);
		}
	}

	LWLockRelease(AddinShmemInitLock);
}

/*
 * orchestrator_shmem_install_hooks
 *		Chain our hooks in front of any installed before us.
 */
void
orchestrator_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = orchestrator_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = orchestrator_shmem_startup;
}

/*
 * orchestrator_release_slot
 *		Exit callback of a dispatcher: free its slot so that nobody wakes or
 *		reports a process that is gone.
 */
static void
orchestrator_release_slot(int code, Datum arg)
{
	OrchestratorSlot *slot = &orchestrator_shared->slots[DatumGetInt32(arg)];

	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	if (slot->in_use && slot->pid == MyProcPid)
	{
		slot->in_use = false;
		slot->pid = 0;
		slot->pgprocno = -1;
	}
	LWLockRelease(orchestrator_shared->lock);
	my_slot = -1;
}

/*
 * orchestrator_claim_slot
 *		Record the calling dispatcher in slot "slot".  False when another live
 *		process holds it (a dispatcher left over from an earlier launcher).
 */
bool
orchestrator_claim_slot(int slot)
{
	OrchestratorSlot *s;

	Assert(slot >= 0 && slot < ORCHESTRATOR_MAX_WORKERS);
	Assert(my_slot < 0);
	s = &orchestrator_shared->slots[slot];

	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	if (s->in_use && s->pid != MyProcPid)
	{
		LWLockRelease(orchestrator_shared->lock);
		return false;
	}
	s->in_use = true;
	s->pid = MyProcPid;
	s->pgprocno = MyProc->pgprocno;
	s->started_at = GetCurrentTimestamp();
	pg_atomic_write_u64(&s->last_active, 0);
	pg_atomic_write_u64(&s->steps_processed, 0);
	LWLockRelease(orchestrator_shared->lock);

	my_slot = slot;
	before_shmem_exit(orchestrator_release_slot, Int32GetDatum(slot));
	return true;
}

/*
 * orchestrator_report_turn
 *		Record one dispatch turn of the calling dispatcher: now is its last
 *		activity, and "processed" more steps are done.
 */
void
orchestrator_report_turn(uint64 processed)
{
	OrchestratorSlot *s;

	if (my_slot < 0)
		return;
	s = &orchestrator_shared->slots[my_slot];
	pg_atomic_write_u64(&s->last_active, (uint64) GetCurrentTimestamp());
	if (processed > 0)
		pg_atomic_fetch_add_u64(&s->steps_processed, processed);
}

/*
 * orchestrator_slot_pid
 *		The pid of the dispatcher in a slot, or 0 when the slot is free.
 */
pid_t
orchestrator_slot_pid(int slot)
{
	pid_t		pid = 0;

	LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
	if (orchestrator_shared->slots[slot].in_use)
		pid = orchestrator_shared->slots[slot].pid;
	LWLockRelease(orchestrator_shared->lock);
	return pid;
}

/*
 * orchestrator_set_launcher_pid
 *		Publish the launcher's pid (0 when it exits).
 */
void
orchestrator_set_launcher_pid(pid_t pid)
{
	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	orchestrator_shared->launcher_pid = pid;
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_wake_dispatchers
 *		Set the latch of every live dispatcher.
 *
 * Called from a commit callback, so it must not fail: it only takes the lock
 * in shared mode and sets latches, and a latch of a process that exited
 * meanwhile is harmless to set.
 */
void
orchestrator_wake_dispatchers(void)
{
	int			i;

	if (orchestrator_shared == NULL)
		return;

	LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
	for (i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];

		if (s->in_use && s->pgprocno >= 0)
			SetLatch(&ProcGlobal->allProcs[s->pgprocno].procLatch);
	}
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_worker_status
 *		One row per live dispatcher: slot, pid, start time, time of its last
 *		dispatch turn, and the number of steps it has handled.
 */
Datum
orchestrator_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	if (orchestrator_shared == NULL)
		PG_RETURN_VOID();

	for (i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];
		Datum		values[5];
		bool		nulls[5] = {false};
		bool		in_use;
		pid_t		pid;
		TimestampTz started_at;
		uint64		last_active;

		LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
		in_use = s->in_use;
		pid = s->pid;
		started_at = s->started_at;
		LWLockRelease(orchestrator_shared->lock);

		if (!in_use)
			continue;

		last_active = pg_atomic_read_u64(&s->last_active);

		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum((int32) pid);
		values[2] = TimestampTzGetDatum(started_at);
		if (last_active == 0)
			nulls[3] = true;
		else
			values[3] = TimestampTzGetDatum((TimestampTz) last_active);
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&s->steps_processed));

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	PG_RETURN_VOID();
}
