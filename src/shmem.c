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
#include "utils/uuid.h"

#include "shmem.h"

PG_FUNCTION_INFO_V1(orchestrator_worker_status);
PG_FUNCTION_INFO_V1(orchestrator_cache_status);

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
			pg_atomic_init_u32(&orchestrator_shared->slots[i].wake_kinds, 0);
			pg_atomic_init_u32(&orchestrator_shared->slots[i].batch_phase, BATCH_OTHER);
			SpinLockInit(&orchestrator_shared->slots[i].mutex);
		}
		pg_atomic_init_u32(&orchestrator_shared->nlost, 0);
		pg_atomic_init_u64(&orchestrator_shared->queue_rows_retired, 0);
		pg_atomic_init_u32(&orchestrator_shared->sql_wake_turn, 0);
		pg_atomic_init_u32(&orchestrator_shared->nunchained, 0);
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
		slot->stop_requested = false;
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
	s->stop_requested = false;
	pg_atomic_write_u64(&s->last_active, 0);
	pg_atomic_write_u64(&s->steps_processed, 0);
	pg_atomic_write_u32(&s->batch_phase, BATCH_OTHER);
	LWLockRelease(orchestrator_shared->lock);

	SpinLockAcquire(&s->mutex);
	s->has_step = false;
	memset(s->caches, 0, sizeof(s->caches));
	SpinLockRelease(&s->mutex);

	my_slot = slot;
	before_shmem_exit(orchestrator_release_slot, Int32GetDatum(slot));
	return true;
}

/* The slot of the calling dispatcher, or -1. */
int
orchestrator_my_slot(void)
{
	return my_slot;
}

/*
 * orchestrator_report_turn
 *		Record one dispatch turn of the calling dispatcher: now is its last
 *		activity, and "processed" more steps are done.
 */
void
orchestrator_report_turn(uint64 processed, bool succeeded)
{
	OrchestratorSlot *s;

	if (my_slot < 0)
		return;
	s = &orchestrator_shared->slots[my_slot];
	pg_atomic_write_u64(&s->last_active, (uint64) GetCurrentTimestamp());
	if (processed > 0)
		pg_atomic_fetch_add_u64(&s->steps_processed, processed);

	/* a turn that worked ends a series of failures (read without the lock) */
	if (succeeded && s->failures != 0)
	{
		LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
		s->failures = 0;
		LWLockRelease(orchestrator_shared->lock);
	}
}

/*
 * orchestrator_report_caches
 *		Show the calling dispatcher's per-process caches (CACHE_*), as their
 *		owners counted them, to health() and metrics().
 */
void
orchestrator_report_caches(const CacheFigures *figures)
{
	OrchestratorSlot *s;

	if (my_slot < 0)
		return;
	s = &orchestrator_shared->slots[my_slot];
	SpinLockAcquire(&s->mutex);
	memcpy(s->caches, figures, sizeof(s->caches));
	SpinLockRelease(&s->mutex);
}

/*
 * orchestrator_report_failure
 *		Record a failed turn of the calling dispatcher (or its exit because
 *		of a step) for health(): one more consecutive failure, and its error.
 *		The count stays with the slot when the process is replaced.
 */
void
orchestrator_report_failure(const char *error)
{
	OrchestratorSlot *s;

	if (my_slot < 0)
		return;
	s = &orchestrator_shared->slots[my_slot];
	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	s->failures++;
	s->last_error_at = GetCurrentTimestamp();
	strlcpy(s->last_error, error, SLOT_ERROR_LEN);
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_report_step
 *		Publish the sql step the calling dispatcher now handles (run_id
 *		NULL: none), for _worker_status() and health().
 */
void
orchestrator_report_step(pg_uuid_t *run_id, const char *step)
{
	OrchestratorSlot *s;

	if (my_slot < 0)
		return;
	s = &orchestrator_shared->slots[my_slot];
	SpinLockAcquire(&s->mutex);
	s->has_step = run_id != NULL;
	if (run_id != NULL)
	{
		s->step_run_id = *run_id;
		strlcpy(s->step_name, step, STEP_KEY_NAME_LEN);
		s->step_since = GetCurrentTimestamp();
	}
	SpinLockRelease(&s->mutex);
}

/*
 * orchestrator_request_stop
 *		The launcher is about to stop the dispatcher of a slot on purpose
 *		(orchestrator.workers was lowered): a step it is running then is not
 *		a lost attempt of that step.
 */
void
orchestrator_request_stop(int slot)
{
	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	if (orchestrator_shared->slots[slot].in_use)
		orchestrator_shared->slots[slot].stop_requested = true;
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_take_restart_promptly
 *		Did the last dispatcher of a slot exit because of a step (its
 *		watchdog, a kill by the step)?  Then the launcher starts the next one
 *		at once: the dispatcher itself is fine.  Clears the flag.
 */
bool
orchestrator_take_restart_promptly(int slot)
{
	bool		promptly;

	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	promptly = orchestrator_shared->slots[slot].restart_promptly;
	orchestrator_shared->slots[slot].restart_promptly = false;
	LWLockRelease(orchestrator_shared->lock);
	return promptly;
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

/* Or "kinds" into a dispatcher's wake-up bits and set its latch. */
static void
tell_slot(OrchestratorSlot *s, int kinds)
{
	pg_atomic_fetch_or_u32(&s->wake_kinds, (uint32) kinds);
	SetLatch(&ProcGlobal->allProcs[s->pgprocno].procLatch);
}

/*
 * ready_for_sql
 *		A live dispatcher that would take sql work at once: one waiting in its
 *		open batch for more (it claims in the same transaction), else one
 *		asleep between turns; taken in turn from a rotating start so that a
 *		burst of commits is shared.  -1 when every one is busy.  Called with
 *		the lock held.
 */
static int
ready_for_sql(void)
{
	int			waiting[ORCHESTRATOR_MAX_WORKERS];
	int			idle[ORCHESTRATOR_MAX_WORKERS];
	int			nwaiting = 0;
	int			nidle = 0;
	uint32		turn;

	for (int i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];
		uint32		phase;

		if (!s->in_use || s->pgprocno < 0)
			continue;
		phase = pg_atomic_read_u32(&s->batch_phase);
		if (phase == BATCH_WAITING)
			waiting[nwaiting++] = i;
		else if (phase == BATCH_IDLE)
			idle[nidle++] = i;
	}
	if (nwaiting == 0 && nidle == 0)
		return -1;
	turn = pg_atomic_fetch_add_u32(&orchestrator_shared->sql_wake_turn, 1);
	return nwaiting > 0 ? waiting[turn % nwaiting] : idle[turn % nidle];
}

/*
 * orchestrator_wake_dispatchers
 *		Tell the live dispatchers which kinds of work became ready (wake.h)
 *		and set their latches.
 *
 * Sql work alone goes to one dispatcher ready for it, when there is one:
 * waking them all made each but one run an empty claim and transaction per
 * start under a trickle of starts (a third of their CPU per step at 100
 * starts/s).  One busy with a step, a commit or HTTP is never the only one
 * told, so a step that runs long or a stuck statement does not hold up the
 * work; when all are busy, all are told and the first free takes it.
 *
 * Called from a commit callback, so it must not fail: it only takes the lock
 * in shared mode, sets bits and latches, and a latch of a process that
 * exited meanwhile is harmless to set.
 */
void
orchestrator_wake_dispatchers(int kinds)
{
	int			one = -1;

	if (orchestrator_shared == NULL)
		return;

	LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
	if (kinds == WAKE_SQL)
		one = ready_for_sql();
	for (int i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];

		if (s->in_use && s->pgprocno >= 0 && (one < 0 || i == one))
			tell_slot(s, kinds);
	}
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_wake_another_for_sql
 *		A batch found a backlog (its claim got all it asked for): wake one
 *		other dispatcher ready for sql work, if there is one, to share it
 *		(a commit that made much work ready wakes only one).
 */
void
orchestrator_wake_another_for_sql(void)
{
	int			one;

	if (orchestrator_shared == NULL || my_slot < 0)
		return;
	LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
	one = ready_for_sql();
	if (one >= 0 && one != my_slot)
		tell_slot(&orchestrator_shared->slots[one], WAKE_SQL);
	LWLockRelease(orchestrator_shared->lock);
}

/*
 * orchestrator_take_wake_kinds
 *		The kinds of work this dispatcher was woken for since it last looked
 *		(and forget them).
 */
int
orchestrator_take_wake_kinds(void)
{
	if (my_slot < 0)
		return WAKE_ALL;
	return (int) pg_atomic_exchange_u32(&orchestrator_shared->slots[my_slot].wake_kinds, 0);
}

/*
 * orchestrator_take_wake_kind
 *		Was this dispatcher woken for "kind" since it last looked?  Forgets
 *		that kind only (the others stay for the main loop).
 */
bool
orchestrator_take_wake_kind(int kind)
{
	if (my_slot < 0)
		return true;
	return (pg_atomic_fetch_and_u32(&orchestrator_shared->slots[my_slot].wake_kinds,
									~(uint32) kind) & (uint32) kind) != 0;
}

/*
 * orchestrator_set_batch_phase
 *		Say where this dispatcher's batch is (BATCH_*).  Leaving
 *		BATCH_COMMITTING sets the latches of the dispatchers that wait for
 *		that commit to end (dispatcher.c, wait_in_batch).
 */
void
orchestrator_set_batch_phase(uint32 phase)
{
	uint32		was;

	if (my_slot < 0)
		return;
	was = pg_atomic_exchange_u32(&orchestrator_shared->slots[my_slot].batch_phase, phase);
	if (was != BATCH_COMMITTING || phase == BATCH_COMMITTING)
		return;
	for (int i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];

		if (i != my_slot && s->in_use && s->pgprocno >= 0 &&
			pg_atomic_read_u32(&s->batch_phase) == BATCH_WAITING)
			SetLatch(&ProcGlobal->allProcs[s->pgprocno].procLatch);
	}
}

/*
 * orchestrator_other_committing
 *		Is another dispatcher committing its batch?  Read without the lock:
 *		a slot that changes meanwhile only makes the answer late.
 */
bool
orchestrator_other_committing(void)
{
	for (int i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];

		if (i != my_slot && s->in_use &&
			pg_atomic_read_u32(&s->batch_phase) == BATCH_COMMITTING)
			return true;
	}
	return false;
}

/*
 * orchestrator_worker_status
 *		One row per live dispatcher: slot, pid, start time, time of its last
 *		dispatch turn, the number of steps it has handled, its consecutive
 *		failed turns and last error, and the sql step it is handling.
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
		Datum		values[11];
		bool		nulls[11] = {false};
		bool		in_use;
		pid_t		pid;
		TimestampTz started_at;
		uint64		last_active;
		uint32		failures;
		TimestampTz last_error_at;
		char		last_error[SLOT_ERROR_LEN];
		bool		has_step;
		pg_uuid_t  *run_id = palloc(sizeof(pg_uuid_t));
		char		step[STEP_KEY_NAME_LEN];
		TimestampTz step_since = 0;

		LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
		in_use = s->in_use;
		pid = s->pid;
		started_at = s->started_at;
		failures = s->failures;
		last_error_at = s->last_error_at;
		strlcpy(last_error, s->last_error, SLOT_ERROR_LEN);
		LWLockRelease(orchestrator_shared->lock);

		if (!in_use)
			continue;

		SpinLockAcquire(&s->mutex);
		has_step = s->has_step;
		if (has_step)
		{
			*run_id = s->step_run_id;
			memcpy(step, s->step_name, STEP_KEY_NAME_LEN);
			step_since = s->step_since;
		}
		SpinLockRelease(&s->mutex);

		last_active = pg_atomic_read_u64(&s->last_active);

		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum((int32) pid);
		values[2] = TimestampTzGetDatum(started_at);
		if (last_active == 0)
			nulls[3] = true;
		else
			values[3] = TimestampTzGetDatum((TimestampTz) last_active);
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&s->steps_processed));
		values[5] = Int32GetDatum((int32) failures);
		if (last_error_at == 0)
			nulls[6] = nulls[7] = true;
		else
		{
			values[6] = CStringGetTextDatum(last_error);
			values[7] = TimestampTzGetDatum(last_error_at);
		}
		if (!has_step)
			nulls[8] = nulls[9] = nulls[10] = true;
		else
		{
			step[STEP_KEY_NAME_LEN - 1] = '\0';
			values[8] = UUIDPGetDatum(run_id);
			values[9] = CStringGetTextDatum(step);
			values[10] = TimestampTzGetDatum(step_since);
		}

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	PG_RETURN_VOID();
}

/*
 * orchestrator_cache_status
 *		One row per live dispatcher and per-process cache: its entries, bytes,
 *		limit (0: bounded by count only), hits, misses and evictions, as the
 *		dispatcher last reported them (at most a second old).
 */
Datum
orchestrator_cache_status(PG_FUNCTION_ARGS)
{
	static const char *const names[ORCHESTRATOR_CACHES] = {
		[CACHE_DEFINITIONS] = "definitions",
		[CACHE_STEP_PLANS] = "sql_step_plans",
		[CACHE_ENGINE_PLANS] = "engine_plans",
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (orchestrator_shared == NULL)
		PG_RETURN_VOID();

	for (int i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		OrchestratorSlot *s = &orchestrator_shared->slots[i];
		CacheFigures f[ORCHESTRATOR_CACHES];
		bool		in_use;
		pid_t		pid;

		LWLockAcquire(orchestrator_shared->lock, LW_SHARED);
		in_use = s->in_use;
		pid = s->pid;
		LWLockRelease(orchestrator_shared->lock);
		if (!in_use)
			continue;
		SpinLockAcquire(&s->mutex);
		memcpy(f, s->caches, sizeof(f));
		SpinLockRelease(&s->mutex);

		for (int c = 0; c < ORCHESTRATOR_CACHES; c++)
		{
			Datum		values[9];
			bool		nulls[9] = {false};

			values[0] = Int32GetDatum(i);
			values[1] = Int32GetDatum((int32) pid);
			values[2] = CStringGetTextDatum(names[c]);
			values[3] = Int64GetDatum((int64) f[c].entries);
			values[4] = Int64GetDatum((int64) f[c].bytes);
			values[5] = Int64GetDatum((int64) f[c].limit_bytes);
			values[6] = Int64GetDatum((int64) f[c].hits);
			values[7] = Int64GetDatum((int64) f[c].misses);
			values[8] = Int64GetDatum((int64) f[c].evictions);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_RETURN_VOID();
}
