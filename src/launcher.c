/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The orchestrator launcher: keeps orchestrator.workers dispatchers alive.
 *
 * The launcher is a static background worker without a database connection.
 * It starts the dispatchers as dynamic background workers that the
 * postmaster never restarts (BGW_NEVER_RESTART): the launcher notices when
 * one exits (the postmaster signals it, as bgw_notify_pid) and starts it
 * again after DISPATCHER_RESTART_DELAY_MS, so a dispatcher that fails at once
 * (for example, orchestrator.database does not exist) cannot spin.  A
 * dispatcher that exited because of a sql step (its watchdog ended it, the
 * step terminated it) says so in its slot and is started again at once:
 * the process was fine, and the step's lost attempt is counted.  On
 * SIGHUP it grows or shrinks the set to the new orchestrator.workers.
 *
 * Dispatchers are numbered by slot (0 .. orchestrator.workers - 1); the slot
 * is also their place in shared memory.  If the launcher itself is restarted
 * while dispatchers run, it has no handles for them: it adopts the ones it
 * still wants (watching their slot) and signals the others to stop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "shmem.h"
#include "workers.h"

/* Delay before a dispatcher that exited is started again. */
#define DISPATCHER_RESTART_DELAY_MS		5000

/* Restart time of the launcher itself, in seconds. */
#define LAUNCHER_RESTART_TIME			5

/* How often to look at slots of adopted dispatchers, which send no signal. */
#define ADOPTED_CHECK_INTERVAL_MS		1000

/* Longest sleep when nothing is due (signals wake the launcher anyway). */
#define LAUNCHER_MAX_SLEEP_MS			60000

typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle; /* NULL: not started by this launcher */
	TimestampTz start_after;	/* do not (re)start before this time */
	bool		terminating;	/* TerminateBackgroundWorker() was called */
} LauncherSlot;

static LauncherSlot launcher_slots[ORCHESTRATOR_MAX_WORKERS];

/* Has the "no free worker slot" warning been given since the last success? */
static bool register_warning_given = false;

/*
 * orchestrator_register_launcher
 *		Register the launcher as a static background worker.  Called from
 *		_PG_init() while shared_preload_libraries are loaded.
 */
void
orchestrator_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	/* the dispatchers write, so nothing runs on a standby */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = LAUNCHER_RESTART_TIME;
	strlcpy(worker.bgw_library_name, ORCHESTRATOR_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "orchestrator_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, ORCHESTRATOR_LAUNCHER_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, ORCHESTRATOR_LAUNCHER_TYPE, BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;

	RegisterBackgroundWorker(&worker);
}

/*
 * launcher_sigusr1
 *		The postmaster sends SIGUSR1 when a dispatcher we started has started
 *		or stopped; wake the main loop to look at it.
 */
static void
launcher_sigusr1(SIGNAL_ARGS)
{
	int			save_errno = errno;

	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * launcher_exit
 *		Exit callback: the launcher is gone from shared memory.
 */
static void
launcher_exit(int code, Datum arg)
{
	orchestrator_set_launcher_pid(0);
}

/*
 * start_dispatcher
 *		Ask the postmaster to start the dispatcher of a slot.  False when no
 *		background worker slot is free (max_worker_processes).
 */
static bool
start_dispatcher(int slot)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, ORCHESTRATOR_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "orchestrator_dispatcher_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d", ORCHESTRATOR_DISPATCHER_TYPE, slot);
	strlcpy(worker.bgw_type, ORCHESTRATOR_DISPATCHER_TYPE, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;

	launcher_slots[slot].handle = handle;
	launcher_slots[slot].terminating = false;
	return true;
}

/*
 * manage_slot
 *		Bring one slot towards its wanted state: a running dispatcher when
 *		"wanted", none otherwise.  Lowers *sleep_ms to the time at which the
 *		slot next needs attention.
 */
static void
manage_slot(int slot, bool wanted, TimestampTz now, long *sleep_ms)
{
	LauncherSlot *ls = &launcher_slots[slot];
	pid_t		pid;

	if (ls->handle != NULL)
	{
		BgwHandleStatus status = GetBackgroundWorkerPid(ls->handle, &pid);

		if (status == BGWH_STOPPED)
		{
			bool		promptly = orchestrator_take_restart_promptly(slot);

			pfree(ls->handle);
			ls->handle = NULL;
			if (wanted && !ls->terminating && promptly)
			{
				ereport(LOG,
						(errcode(ERRCODE_ADMIN_SHUTDOWN),
						 errmsg("orchestrator dispatcher %d exited because of a sql step, restarting it",
								slot),
						 errdetail("The step's attempt counts as failed; the dispatcher is started again at once.")));
				ls->start_after = now;
			}
			else if (wanted && !ls->terminating)
			{
				ereport(LOG,
						(errmsg("orchestrator dispatcher %d exited, restarting it in %d ms",
								slot, DISPATCHER_RESTART_DELAY_MS)));
				ls->start_after = TimestampTzPlusMilliseconds(now, DISPATCHER_RESTART_DELAY_MS);
				*sleep_ms = Min(*sleep_ms, DISPATCHER_RESTART_DELAY_MS);
				return;
			}
			ls->terminating = false;
			/* stopped on purpose: fall through, start at once if wanted */
		}
		else
		{
			if (!wanted && !ls->terminating)
			{
				orchestrator_request_stop(slot);
				TerminateBackgroundWorker(ls->handle);
				ls->terminating = true;
			}
			return;
		}
	}

	/* A dispatcher started by an earlier launcher may still hold the slot. */
	pid = orchestrator_slot_pid(slot);
	if (pid != 0)
	{
		if (!wanted)
		{
			orchestrator_request_stop(slot);
			kill(pid, SIGTERM);
		}
		*sleep_ms = Min(*sleep_ms, ADOPTED_CHECK_INTERVAL_MS);
		return;
	}

	if (!wanted)
		return;

	if (now < ls->start_after)
	{
		long		wait_ms = TimestampDifferenceMilliseconds(now, ls->start_after);

		*sleep_ms = Min(*sleep_ms, Max(wait_ms, 1));
		return;
	}

	if (start_dispatcher(slot))
	{
		register_warning_given = false;
		return;
	}

	if (!register_warning_given)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("orchestrator could not start dispatcher %d: out of background worker slots", slot),
				 errhint("Raise max_worker_processes (it must cover orchestrator.workers, the launcher and other extensions' workers) or lower orchestrator.workers.")));
		register_warning_given = true;
	}
	ls->start_after = TimestampTzPlusMilliseconds(now, DISPATCHER_RESTART_DELAY_MS);
	*sleep_ms = Min(*sleep_ms, DISPATCHER_RESTART_DELAY_MS);
}

/*
 * orchestrator_launcher_main
 *		Main function of the launcher background worker.
 */
void
orchestrator_launcher_main(Datum main_arg)
{
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGUSR1, launcher_sigusr1);
	BackgroundWorkerUnblockSignals();

	orchestrator_set_launcher_pid(MyProcPid);
	before_shmem_exit(launcher_exit, (Datum) 0);

	for (i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
	{
		launcher_slots[i].handle = NULL;
		launcher_slots[i].start_after = 0;
		launcher_slots[i].terminating = false;
	}

	ereport(LOG,
			(errmsg("orchestrator launcher started, %d dispatcher(s) for database \"%s\"",
					orchestrator_workers, orchestrator_database)));

	while (!ShutdownRequestPending)
	{
		TimestampTz now;
		long		sleep_ms = LAUNCHER_MAX_SLEEP_MS;

		if (ConfigReloadPending)
		{
			int			before = orchestrator_workers;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (orchestrator_workers != before)
				ereport(LOG,
						(errmsg("orchestrator.workers changed from %d to %d",
								before, orchestrator_workers)));
		}

		now = GetCurrentTimestamp();
		for (i = 0; i < ORCHESTRATOR_MAX_WORKERS; i++)
			manage_slot(i, i < orchestrator_workers, now, &sleep_ms);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * Exit with 1 so that the postmaster starts a new launcher if this was
	 * pg_terminate_backend() rather than a server shutdown; the dispatchers
	 * keep running and the new launcher adopts them.
	 */
	proc_exit(1);
}
