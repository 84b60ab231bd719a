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
#include "storage/spin.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "cache_figures.h"
#include "guc.h"

#define SLOT_ERROR_LEN		256

/* Step names are at most 63 bytes, "compensate:" + name 74. */
#define STEP_KEY_NAME_LEN	128

/* One attempt of a sql step: what a lost attempt is recorded against. */
typedef struct StepKey
{
	pg_uuid_t	run_id;
	int32		attempt;		/* the attempt being made (1 = first) */
	char		step[STEP_KEY_NAME_LEN];
} StepKey;

/* Kinds of work a dispatcher is woken for (a bit mask: a slot's wake_kinds). */
#define WAKE_SQL	0x01		/* a sql step became ready */
#define WAKE_TIMER	0x02		/* a timer or deadline was queued */
#define WAKE_HTTP	0x04		/* an http step or webhook delivery */
#define WAKE_ALL	(WAKE_SQL | WAKE_TIMER | WAKE_HTTP)

/* The per-process caches a dispatcher reports (orchestrator._cache_status()). */
#define CACHE_DEFINITIONS	0	/* step definitions (defcache.c) */
#define CACHE_STEP_PLANS	1	/* plans of sql steps (executor.c) */
#define CACHE_ENGINE_PLANS	2	/* the engine's statements (leaf.c) */
#define ORCHESTRATOR_CACHES	3

typedef struct OrchestratorSlot
{
	/* Protected by OrchestratorShared->lock. */
	bool		in_use;
	pid_t		pid;
	int			pgprocno;		/* whose procLatch to set */
	TimestampTz started_at;
	bool		stop_requested; /* the launcher stops it on purpose */

	/*
	 * Also protected by the lock, and kept when the process exits: the
	 * launcher and health() look at a slot, not at one process of it.
	 */
	bool		restart_promptly;	/* it exited because of a step */
	uint32		failures;		/* consecutive failed turns */
	TimestampTz last_error_at;
	char		last_error[SLOT_ERROR_LEN];

	/* Written by the owning dispatcher only, read without the lock. */
	pg_atomic_uint64 last_active;	/* a TimestampTz, 0 = never */
	pg_atomic_uint64 steps_processed;

	/* Kinds of work it was woken for (WAKE_*), or-ed in by committers. */
	pg_atomic_uint32 wake_kinds;

	/*
	 * Where its batch of sql steps is (BATCH_*): written by its dispatcher,
	 * read by the others (dispatcher.c, next_sql_claim).
	 */
	pg_atomic_uint32 batch_phase;

	/* The sql step it is handling, if any: written by its dispatcher. */
	slock_t		mutex;
	bool		has_step;
	pg_uuid_t	step_run_id;
	char		step_name[STEP_KEY_NAME_LEN];
	TimestampTz step_since;

	/* Its per-process caches (CACHE_*), also under "mutex". */
	CacheFigures caches[ORCHESTRATOR_CACHES];
} OrchestratorSlot;

/*
 * An attempt of a sql step lost outside its statement (journal.c), waiting
 * for a dispatcher to record it.  Claims leave such a step alone meanwhile.
 */
typedef struct LostStep
{
	StepKey		key;
	bool		internal;		/* the dispatcher's own work failed */
	int			sqlerrcode;		/* 0: none */
	char		message[SLOT_ERROR_LEN];
	char		detail[SLOT_ERROR_LEN];
	TimestampTz retry_at;		/* recording failed: not before then */
	int			failures;		/* ... this many times */
} LostStep;

#define ORCHESTRATOR_MAX_LOST	128

/* Steps whose lost attempt came to nothing (see journal.c): never chained */
#define ORCHESTRATOR_MAX_UNCHAINED	64

typedef struct OrchestratorShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;	/* protected by lock */
	OrchestratorSlot slots[ORCHESTRATOR_MAX_WORKERS];

	/* Lost attempts to record; protected by lock, nlost readable without */
	pg_atomic_uint32 nlost;

	/*
	 * work_queue rows deleted or moved (leases) by anyone: each leaves dead
	 * index entries until a vacuum (queue_vacuum.c)
	 */
	pg_atomic_uint64 queue_rows_retired;
	/* turns of the wake-ups of one dispatcher for sql work (ready_for_sql) */
	pg_atomic_uint32 sql_wake_turn;
	LostStep	lost[ORCHESTRATOR_MAX_LOST];

	/* A ring of them; protected by lock, nunchained readable without */
	pg_atomic_uint32 nunchained;	/* entries written so far */
	StepKey		unchained[ORCHESTRATOR_MAX_UNCHAINED];
} OrchestratorShared;

extern OrchestratorShared *orchestrator_shared;

extern void orchestrator_shmem_install_hooks(void);
extern bool orchestrator_claim_slot(int slot);
extern int	orchestrator_my_slot(void);
extern void orchestrator_report_turn(uint64 processed, bool succeeded);
extern void orchestrator_report_caches(const CacheFigures *figures);
extern void orchestrator_report_failure(const char *error);
extern void orchestrator_report_step(pg_uuid_t *run_id, const char *step);
extern void orchestrator_request_stop(int slot);
extern bool orchestrator_take_restart_promptly(int slot);
extern pid_t orchestrator_slot_pid(int slot);
extern void orchestrator_set_launcher_pid(pid_t pid);
extern void orchestrator_wake_dispatchers(int kinds);
extern void orchestrator_wake_another_for_sql(void);
extern int	orchestrator_take_wake_kinds(void);
extern bool orchestrator_take_wake_kind(int kind);

/* A dispatcher's batch_phase */
#define BATCH_OTHER			0	/* none of the below */
#define BATCH_COMMITTING	1	/* committing its transaction */
#define BATCH_WAITING		2	/* in an open batch, waiting for another's commit */
#define BATCH_IDLE			3	/* asleep between turns */

extern void orchestrator_set_batch_phase(uint32 phase);
extern bool orchestrator_other_committing(void);

#endif							/* ORCHESTRATOR_SHMEM_H */
