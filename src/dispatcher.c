/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  An orchestrator dispatcher: runs due work in orchestrator.database.
 *
 * The launcher (launcher.c) keeps one dispatcher per slot of
 * orchestrator.workers.  A dispatcher loops over turns, each of them a
 * transaction of its own:
 *
 *	- a dispatch turn (dispatch_once): first the attempts of sql steps lost
 *	  outside their statement are recorded, each in a short transaction
 *	  (journal.c), then, if the installed extension is this library's
 *	  version, a batch of due sql steps is claimed and run in C
 *	  (sql_steps.c), and, when timers are due, orchestrator._dispatch()
 *	  fires timers and expires leases and returns when the next one is due
 *	  (engine_fn.c; called through SQL, so that the function of the
 *	  installed version answers, as it did for versions before 0.4);
 *	- an HTTP turn (http_once): records the requests that finished and claims
 *	  new http steps and webhook deliveries (http.c); the transfers
 *	  themselves run between turns, outside any transaction, with libcurl
 *	  (http_transfer.c).
 *
 * After a turn that did work the dispatcher goes again at once; otherwise it
 * sleeps on its latch until the next timer is due or orchestrator.poll_interval
 * passes.  Transactions that make work ready set the latch at commit and say
 * which kind of work (wake.c), so a woken dispatcher runs only that turn.
 * A turn that fails is rolled back and the dispatcher carries on: an error
 * while a sql step was in hand is that step's failed attempt and the batch is
 * redone without it; any other failure is logged, counted for health() and
 * backed off.  SIGTERM lets HTTP requests in flight finish for up to
 * orchestrator.shutdown_grace.  docs/architecture.md ("Background workers",
 * "Faults stay contained") has the details.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "defcache.h"
#include "engine_unit.h"
#include "executor.h"
#include "guc.h"
#include "http.h"
#include "http_transfer.h"
#include "queue_vacuum.h"
#include "journal.h"
#include "leaf.h"
#include "shmem.h"
#include "sql_steps.h"
#include "version.h"
#include "wake.h"
#include "workers.h"

/* Longest pause after repeated failures of _dispatch(). */
#define DISPATCH_MAX_ERROR_BACKOFF_MS	10000

static const char *dispatch_query =
"SELECT processed, next_wake FROM orchestrator._dispatch($1)";

/* How a turn ended. */
typedef enum TurnOutcome
{
	TURN_OK,
	TURN_FAILED,				/* logged, transaction aborted */
	TURN_STEP_FAILED			/* ... because of the sql step in hand */
} TurnOutcome;

/* Outcome of one dispatch turn. */
typedef struct DispatchResult
{
	bool		extension_exists;	/* ... in this library's version */
	bool		record_lost;	/* record lost sql step attempts first */
	bool		timers;			/* run _dispatch() (timers, leases) too */
	bool		timers_ran;		/* it ran: has_next_wake, next_wake are new */
	char	   *other_version;	/* the version installed instead, if any */
	int32		processed;
	bool		again;			/* more may be due: another turn at once */
	bool		has_next_wake;
	TimestampTz next_wake;
} DispatchResult;

static int	dispatcher_slot = -1;

/* SIGTERM arrived while HTTP requests were in flight: finish them first. */
static volatile sig_atomic_t shutdown_requested = false;

/*
 * dispatcher_sigterm
 *		SIGTERM (a fast or smart shutdown, the launcher stopping a slot):
 *		with HTTP requests in flight, let the main loop finish and record
 *		them for up to orchestrator.shutdown_grace, so that requests that
 *		answer in milliseconds are not sent again after the restart.
 *		Otherwise end at once, as die() does (a sql step's statement is
 *		cancelled and its transaction rolled back).  A SIGTERM that comes
 *		again while they finish changes nothing: the postmaster may signal
 *		a background worker more than once in one shutdown, and ending the
 *		process in the middle of recording would send every request of the
 *		batch again; the grace bounds the wait, and an immediate shutdown
 *		(SIGQUIT) still ends it at once.
 */
static void
dispatcher_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (shutdown_requested)
		SetLatch(MyLatch);
	else if (orchestrator_http_in_flight() + orchestrator_http_done_count() > 0 &&
			 orchestrator_shutdown_grace > 0)
	{
		shutdown_requested = true;
		SetLatch(MyLatch);
	}
	else
		die(postgres_signal_arg);
	errno = save_errno;
}

/*
 * reload_config_if_asked
 *		Apply a pending SIGHUP.
 */
static void
reload_config_if_asked(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * release_session_locks
 *		Drop session-level advisory locks left behind by sql steps.
 *
 * A step cannot change the session's role or settings, or create temporary
 * objects, but pg_advisory_lock() would survive the step and be held by the
 * dispatcher for good.  The dispatcher takes no session-level advisory
 * locks of its own, so after each turn it releases them all.
 */
static void
release_session_locks(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * How many sql steps a rolling batch claims at a time: few, so that the
 * dispatchers share what is waiting instead of one of them taking it all
 * in one claim while the other finds nothing, and so that each of them
 * comes back for new work soon; enough that the claim's statement is a
 * small part of the work.
 */
#define SQL_CLAIM_CHUNK 4

/*
 * wait_in_batch
 *		In an open batch with nothing to do while another dispatcher is
 *		committing: wait until sql steps are made ready (true) or no other
 *		dispatcher is committing or "until" passes (false).
 *
 * The latch is left set afterwards, so that the main loop still looks at
 * the other kinds of work it was woken for meanwhile.
 */
static bool
wait_in_batch(TimestampTz until)
{
	bool		work = false;

	orchestrator_set_batch_phase(BATCH_WAITING);
	for (;;)
	{
		long		ms;

		ResetLatch(MyLatch);
		if (orchestrator_take_wake_kind(WAKE_SQL))
		{
			work = true;
			break;
		}
		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (ms <= 0 || shutdown_requested || !orchestrator_other_committing())
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	orchestrator_set_batch_phase(BATCH_OTHER);
	SetLatch(MyLatch);
	return work;
}

/* next_sql_claim() ended a batch after a wake-up for sql work: go again */
static bool sql_wake_unserved = false;

/* this batch found a backlog and woke another dispatcher for it */
static bool backlog_shared = false;

/*
 * next_sql_claim
 *		How many sql steps the batch (sql_steps.c) claims next in this
 *		transaction, after "claimed" so far; 0 ends the batch (commit).
 *
 * With orchestrator.batch_window 0, one claim of orchestrator.batch_size
 * per transaction.  Otherwise the batch rolls: it claims SQL_CLAIM_CHUNK
 * at a time, and claims again while the last claim left more due (a
 * backlog: twice as many each time, up to batch_size in all, as one claim
 * of batch_size would), or while the transaction is younger than
 * batch_window and sql steps were made ready since the last claim (a
 * committer woke us: wake.c).  Work
 * that becomes ready while both dispatchers are inside a batch then starts
 * as soon as one of them has finished the runs in hand, instead of waiting
 * for a batch to end, commit and claim again; fewer commits also leave the
 * dispatchers less time waiting for the WAL flush, during which no work
 * is picked up.
 *
 * The dispatchers also take turns to commit: while another one is
 * committing, a batch goes on past its window (up to 4 windows), and one
 * with nothing to do waits for work or for the end of that commit
 * instead of committing too; so one of them is always there to start work
 * made ready.  HTTP requests that finished end the batch: they are
 * recorded next.
 */
static int
next_sql_claim(int claimed, bool more_due)
{
	static int	asked = 0;
	TimestampTz started = GetCurrentTransactionStartTimestamp();
	TimestampTz now;
	bool		woken;

	if (claimed == 0)
		backlog_shared = false;
	else if (more_due && !backlog_shared)
	{
		/* a backlog: another dispatcher asleep helps (one was woken for it) */
		orchestrator_wake_another_for_sql();
		backlog_shared = true;
	}
	if (orchestrator_batch_window <= 0)
		return claimed == 0 ? orchestrator_batch_size : 0;
	if (claimed >= orchestrator_batch_size)
		return 0;
	if (claimed > 0)
	{
		if (shutdown_requested || orchestrator_http_done_count() > 0)
			return 0;		/* the wake-up, if any, stays for the main loop */
		woken = orchestrator_take_wake_kind(WAKE_SQL);

		/*
		 * A backlog: on up to batch_size, as one claim of it would take,
		 * claiming twice as many each time
		 */
		if (more_due)
		{
			asked = Min(2 * asked, orchestrator_batch_size - claimed);
			return asked;
		}
		now = GetCurrentTimestamp();
		if (TimestampDifferenceExceeds(started, now, 4 * orchestrator_batch_window))
		{
			sql_wake_unserved |= woken;
			return 0;
		}
		if (woken)
		{
			if (TimestampDifferenceExceeds(started, now, orchestrator_batch_window) &&
				!orchestrator_other_committing())
			{
				sql_wake_unserved = true;
				return 0;
			}
		}
		else if (!orchestrator_other_committing() ||
				 !wait_in_batch(TimestampTzPlusMilliseconds(started, 4 * orchestrator_batch_window)))
			return 0;
	}
	asked = Min(SQL_CLAIM_CHUNK, orchestrator_batch_size - claimed);
	return asked;
}

/*
 * dispatch_once
 *		Run one dispatch turn in its own transaction, the worker_spi way.
 *		Errors propagate to the caller.
 */
static void
dispatch_once(DispatchResult *result)
{
	bool		record_lost = result->record_lost;
	bool		timers = result->timers;

	memset(result, 0, sizeof(DispatchResult));

	/*
	 * Attempts of sql steps lost outside their statement (journal.c) are
	 * recorded first, each in a transaction of its own; claims below leave
	 * those still waiting alone.
	 */
	if (record_lost)
		result->processed = orchestrator_record_lost_steps();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = dispatch_query;
	pgstat_report_activity(STATE_RUNNING, dispatch_query);

	/*
	 * The extension may be created, updated or dropped at any time after
	 * the server starts: the answer is kept until a statement that can
	 * change an extension invalidates it (version.c), so an idle turn reads
	 * no catalog.
	 */
	{
		char	   *installed;

		result->extension_exists = orchestrator_schema_current(&installed);
		result->other_version = result->extension_exists || installed == NULL ? NULL
			: MemoryContextStrdup(TopMemoryContext, installed);
	}
	if (result->extension_exists)
	{
		Oid			argtypes[1] = {INT4OID};
		Datum		values[1];
		int			rc;

		int			sql_processed;
		bool		sql_more;

		/*
		 * sql steps in C (sql_steps.c), then timers and leases.  Lost
		 * attempts recorded or timers that found work make another turn; sql
		 * steps only when the last claim was full: work committed meanwhile
		 * wakes a dispatcher itself (an empty turn per batch was a third of
		 * a dispatcher's CPU under a trickle of starts).
		 */
		result->again = result->processed > 0;
		sql_wake_unserved = false;
		sql_processed = orchestrator_run_sql_steps(orchestrator_batch_size, next_sql_claim, &sql_more);
		result->processed += sql_processed;
		result->again |= sql_more || sql_wake_unserved || sql_processed >= orchestrator_batch_size;
		if (sql_processed >= orchestrator_batch_size || !timers)
			goto done;
		result->timers_ran = true;

		/* the engine's templates and conditions of timers have a limit too */
		values[0] = Int32GetDatum(orchestrator_batch_size - sql_processed);
		orchestrator_engine_guard_arm(orchestrator_engine_timeout);
		rc = SPI_execute_with_args(dispatch_query, 1, argtypes, values, NULL,
								   false, 1);
		orchestrator_engine_guard_disarm();
		if (rc != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not run orchestrator._dispatch(): %s",
							SPI_result_code_string(rc))));

		if (SPI_processed > 0)
		{
			HeapTuple	tuple = SPI_tuptable->vals[0];
			TupleDesc	tupdesc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;

			if (tupdesc->natts != 2 ||
				SPI_gettypeid(tupdesc, 1) != INT4OID ||
				SPI_gettypeid(tupdesc, 2) != TIMESTAMPTZOID)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("orchestrator._dispatch() returned an unexpected row type"),
						 errdetail("Expected (processed integer, next_wake timestamptz)."),
						 errhint("The orchestrator library and the installed extension version do not match; run ALTER EXTENSION orchestrator UPDATE.")));

			d = SPI_getbinval(tuple, tupdesc, 1, &isnull);
			result->processed += isnull ? 0 : DatumGetInt32(d);
			result->again |= !isnull && DatumGetInt32(d) > 0;
			d = SPI_getbinval(tuple, tupdesc, 2, &isnull);
			result->has_next_wake = !isnull;
			if (!isnull)
				result->next_wake = DatumGetTimestampTz(d);
		}
	}

done:
	SPI_finish();
	PopActiveSnapshot();
	orchestrator_set_batch_phase(BATCH_COMMITTING);
	CommitTransactionCommand();
	orchestrator_set_batch_phase(BATCH_OTHER);
	debug_query_string = NULL;
	release_session_locks();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* What an HTTP turn does in its transaction. */
typedef struct HttpTurn
{
	bool		record;			/* record finished requests, else claim */
	bool		recover;		/* first claim of this process */
	int			count;			/* recorded or claimed */
	int			asked;
	bool		has_next_wake;
	TimestampTz next_wake;
} HttpTurn;

/*
 * http_once
 *		Record finished HTTP requests, or claim new ones, in one short
 *		transaction.  No network I/O happens here.
 */
static void
http_once(HttpTurn *turn)
{
	const char *query = turn->record ? "orchestrator HTTP record" : "orchestrator HTTP claim";

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = query;
	pgstat_report_activity(STATE_RUNNING, query);

	if (turn->record)
		turn->count = orchestrator_http_record();
	else
		turn->count = orchestrator_http_claim(turn->asked, turn->recover,
											  &turn->has_next_wake, &turn->next_wake);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	debug_query_string = NULL;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * recover_from_error
 *		Clean up after an error in a dispatch turn; returns the error.
 *
 * This mirrors the error recovery of PostgresMain(): the transaction is
 * aborted (which also releases SPI, snapshots, locks and buffer pins), the
 * timeouts and a pending cancel are cleared, and the process carries on.  It
 * is called with CurrentMemoryContext pointing into ErrorContext, so the
 * error is first copied into "context".
 */
static ErrorData *
recover_from_error(MemoryContext context)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();

	disable_all_timeouts(false);
	orchestrator_engine_guard_forget();
	QueryCancelPending = false;

	AbortCurrentTransaction();
	orchestrator_set_batch_phase(BATCH_OTHER);
	debug_query_string = NULL;
	release_session_locks();
	MemoryContextSwitchTo(context);

	RESUME_INTERRUPTS();

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return edata;
}

/*
 * log_failed_turn
 *		Log the error of a failed turn, and count it for health().
 */
static void
log_failed_turn(ErrorData *edata)
{
	char		error[SLOT_ERROR_LEN];

	snprintf(error, sizeof(error), "SQLSTATE %s: %s",
			 unpack_sql_state(edata->sqlerrcode), edata->message);
	orchestrator_report_failure(error);

	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("orchestrator dispatcher %d: dispatch failed with SQLSTATE %s: %s",
					dispatcher_slot, unpack_sql_state(edata->sqlerrcode),
					edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 edata->context ? errcontext("%s", edata->context) : 0,
			 errhint("The dispatcher tries again after orchestrator.poll_interval, waiting longer while the error persists.")));
}

/*
 * run_turn
 *		One dispatch turn (http NULL) or HTTP turn.  When it fails, the
 *		transaction is aborted; an error while a sql step was in hand is that
 *		step's failed attempt (TURN_STEP_FAILED: the batch is redone without
 *		it), any other is the turn's (TURN_FAILED, logged and counted).
 */
static TurnOutcome
run_turn(DispatchResult *result, HttpTurn *http, MemoryContext loop_context)
{
	ErrorData  *volatile edata = NULL;

	PG_TRY();
	{
		if (http)
			http_once(http);
		else
			dispatch_once(result);
	}
	PG_CATCH();
	{
		edata = recover_from_error(loop_context);
	}
	PG_END_TRY();

	if (edata == NULL)
		return TURN_OK;
	if (http == NULL && orchestrator_step_failed_in_batch(edata))
		return TURN_STEP_FAILED;
	log_failed_turn(edata);
	return TURN_FAILED;
}

/* An HTTP turn: true when it worked. */
static bool
dispatch_turn(DispatchResult *result, HttpTurn *http, MemoryContext loop_context)
{
	return run_turn(result, http, loop_context) == TURN_OK;
}

/*
 * report_turn
 *		The turn's figures to this dispatcher's slot, and at most once a
 *		second its caches' (the engine plans' bytes are a scan).
 */
static void
report_turn(uint64 processed, bool succeeded)
{
	static TimestampTz last_cache_report = 0;
	TimestampTz now = GetCurrentTimestamp();

	orchestrator_report_turn(processed, succeeded);
	if (now - last_cache_report >= USECS_PER_SEC)
	{
		CacheFigures f[ORCHESTRATOR_CACHES];

		defcache_figures(&f[CACHE_DEFINITIONS]);
		orchestrator_step_plan_figures(&f[CACHE_STEP_PLANS]);
		orchestrator_leaf_plan_figures(&f[CACHE_ENGINE_PLANS]);
		orchestrator_report_caches(f);
		last_cache_report = now;
	}
}

/*
 * sleep_for
 *		Sleep up to "ms" milliseconds on the latch.  With "wakeable", a set
 *		latch (work made ready) ends the sleep early; without it (backing off
 *		after an error) only interrupts are served and the full time passes.
 *		HTTP transfers in flight are served meanwhile either way.
 */
static void
sleep_for(long ms, bool wakeable)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		bool		latch_set;

		if (remaining <= 0)
			break;

		latch_set = orchestrator_http_wait(remaining);
		CHECK_FOR_INTERRUPTS();
		reload_config_if_asked();

		if (wakeable && latch_set)
			break;
	}
}

/*
 * finish_http_and_exit
 *		The graceful part of a shutdown: claim nothing more, serve the
 *		requests in flight and record what finishes, for up to
 *		orchestrator.shutdown_grace; then exit.  Requests still unanswered
 *		keep their lease and are sent again (same Idempotency-Key) after
 *		the restart.
 */
static void
finish_http_and_exit(MemoryContext loop_context)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													orchestrator_shutdown_grace);
	int			left;

	ereport(LOG,
			(errmsg("orchestrator dispatcher %d is stopping: finishing %d HTTP requests in flight",
					dispatcher_slot, orchestrator_http_in_flight() + orchestrator_http_done_count())));
	for (;;)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (orchestrator_http_done_count() > 0)
		{
			HttpTurn	http;

			memset(&http, 0, sizeof(http));
			http.record = true;
			orchestrator_http_recorded(http.count, dispatch_turn(NULL, &http, loop_context));
			MemoryContextSwitchTo(loop_context);
			continue;
		}
		if (orchestrator_http_in_flight() == 0 || remaining <= 0)
			break;
		(void) orchestrator_http_wait(Min(remaining, 100));
	}
	left = orchestrator_http_in_flight();
	ereport(LOG,
			(errmsg("orchestrator dispatcher %d stopped", dispatcher_slot),
			 left > 0 ? errdetail("%d HTTP requests did not finish within orchestrator.shutdown_grace; they are sent again after the restart.", left) : 0));
	proc_exit(0);
}

/*
 * woken_for
 *		The latch was set: look for the kinds of work committers asked for
 *		(wake.h).  A sql step made ready asks for a sql batch only; timers
 *		and leases (_dispatch()) wait for a timer queued, for the next wake
 *		_dispatch() gave, or for poll_interval.  A latch set for anything else (a reload, a shutdown) asks
 *		for no turn.
 */
static void
woken_for(bool *dispatch_due, bool *timers_due, bool *http_claim_due)
{
	int			kinds = orchestrator_take_wake_kinds();

	if (kinds & (WAKE_SQL | WAKE_TIMER))
		*dispatch_due = true;
	if (kinds & WAKE_TIMER)
		*timers_due = true;
	if (kinds & WAKE_HTTP)
		*http_claim_due = true;
}

/*
 * orchestrator_dispatcher_main
 *		Main function of a dispatcher; main_arg is its slot number.
 *
 * Errors of a turn (a failing step that _dispatch() did not catch, a
 * cancel, a serialization failure, _dispatch() missing in an old schema) are
 * caught here rather than ending the process.  Letting the process exit
 * would also be safe, but the launcher would restart it only after a delay,
 * a reconnect and cold caches, for every error; an in-process recovery keeps
 * the dispatcher serving and backs off (poll_interval, doubling up to
 * DISPATCH_MAX_ERROR_BACKOFF_MS) while the errors go on.  FATAL errors
 * (SIGTERM, lost connection to the database) still end the process.
 */
void
orchestrator_dispatcher_main(Datum main_arg)
{
	MemoryContext loop_context;
	char		appname[NAMEDATALEN];
	bool		waiting_logged = false;
	int			failures = 0;
	bool		extension_exists = false;
	bool		dispatch_due = true;
	bool		timers_due = true;	/* _dispatch() in the next dispatch turn */
	bool		dispatch_has_wake = false;
	TimestampTz dispatch_wake = 0;
	bool		http_claim_due = true;
	bool		http_has_wake = false;
	TimestampTz http_wake = 0;
	bool		http_recover = true;
	bool		sql_has_wake = false;	/* a sql batch again shortly */
	TimestampTz sql_wake = 0;

	dispatcher_slot = DatumGetInt32(main_arg);
	if (dispatcher_slot < 0 || dispatcher_slot >= ORCHESTRATOR_MAX_WORKERS)
		ereport(FATAL,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("orchestrator dispatcher slot %d is out of range", dispatcher_slot)));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, dispatcher_sigterm);
	BackgroundWorkerUnblockSignals();

	/* NULL user: the bootstrap superuser */
	BackgroundWorkerInitializeConnection(orchestrator_database, NULL, 0);

	if (!orchestrator_claim_slot(dispatcher_slot))
	{
		ereport(LOG,
				(errmsg("orchestrator dispatcher %d is already running, exiting",
						dispatcher_slot)));
		proc_exit(0);
	}

	/* the journal of lost steps, and the watchdog of runaway steps */
	orchestrator_journal_open(dispatcher_slot);
	orchestrator_enable_step_watchdog();

	/* shows in pg_stat_activity (the GUC's assign hook reports it) */
	snprintf(appname, sizeof(appname), "%s %d", ORCHESTRATOR_DISPATCHER_TYPE, dispatcher_slot);
	SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);

	/*
	 * The search_path of the engine's units (engine_unit.c) for the whole
	 * session, whatever ALTER DATABASE or ROLE set: a unit then need not set
	 * it and undo it in every transaction.  A setting pushed for a nest level
	 * makes PostgreSQL 15 walk all its settings when any later nest level of
	 * the transaction ends, and each sql step ends two (its own, with its
	 * search_path, and its subtransaction).
	 */
	SetConfigOption("search_path", ENGINE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION);

	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "orchestrator dispatcher loop",
										 ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("orchestrator dispatcher %d started in database \"%s\"",
					dispatcher_slot, orchestrator_database)));

	orchestrator_http_init();

	for (;;)
	{
		DispatchResult result;
		HttpTurn	http;
		long		sleep_ms;
		bool		busy = false;
		TimestampTz now;
		TimestampTz deadline;

		CHECK_FOR_INTERRUPTS();
		reload_config_if_asked();
		if (shutdown_requested)
			finish_http_and_exit(loop_context);

		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		now = GetCurrentTimestamp();
		if (dispatch_has_wake && now >= dispatch_wake)
			dispatch_due = timers_due = true;
		if (sql_has_wake && now >= sql_wake)
		{
			dispatch_due = true;
			sql_has_wake = false;
		}

		if (dispatch_due)
		{
			TurnOutcome outcome;

			result.record_lost = extension_exists;
			result.timers = timers_due;
			outcome = run_turn(&result, NULL, loop_context);
			if (outcome == TURN_STEP_FAILED)
			{
				/* that step is set aside: redo the batch without it */
				extension_exists = true;
				continue;
			}
			if (outcome == TURN_FAILED)
			{
				failures++;
				sleep_ms = (long) orchestrator_poll_interval << Min(failures - 1, 16);
				sleep_ms = Min(sleep_ms, Max(DISPATCH_MAX_ERROR_BACKOFF_MS,
											 orchestrator_poll_interval));
				report_turn(0, false);
				sleep_for(sleep_ms, false);
				continue;
			}
			failures = 0;

			if (!result.extension_exists)
			{
				if (!waiting_logged && result.other_version)
					ereport(LOG,
							(errmsg("orchestrator dispatcher %d is waiting for the extension to be updated in database \"%s\"",
									dispatcher_slot, orchestrator_database),
							 errdetail("The library is version %s; the installed extension is version %s.",
									   ORCHESTRATOR_VERSION, result.other_version),
							 errhint("Run ALTER EXTENSION orchestrator UPDATE in that database.")));
				else if (!waiting_logged)
					ereport(LOG,
							(errmsg("orchestrator dispatcher %d is waiting for the extension to be created in database \"%s\"",
									dispatcher_slot, orchestrator_database),
							 errhint("Run CREATE EXTENSION orchestrator in that database.")));
				if (result.other_version)
					pfree(result.other_version);
				waiting_logged = true;
				extension_exists = false;
				sleep_for(orchestrator_poll_interval, true);
				continue;
			}
			waiting_logged = false;
			extension_exists = true;

			report_turn((uint64) Max(result.processed, 0), true);
			if (dispatcher_slot == 0)
				queue_vacuum_after_turn();

			/* More may be due: go again at once. */
			dispatch_due = result.again;
			if (result.timers_ran)
			{
				/* go on with timers while they found work */
				timers_due = result.processed > 0;
				dispatch_has_wake = result.has_next_wake;
				dispatch_wake = result.next_wake;
				/* a due sql step nobody holds: its run was locked, look again soon */
				sql_has_wake = orchestrator_sql_steps_waiting;
				sql_wake = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 20);
				orchestrator_sql_steps_waiting = false;
			}
			busy = result.processed > 0;
		}

		/*
		 * HTTP: record what finished, then claim what fits.  Each is a short
		 * transaction of its own; the transfers run outside them.
		 */
		if (extension_exists && orchestrator_http_done_count() > 0)
		{
			memset(&http, 0, sizeof(http));
			http.record = true;
			orchestrator_http_recorded(http.count, dispatch_turn(NULL, &http, loop_context));
			MemoryContextSwitchTo(loop_context);
			http_claim_due = true;	/* retries may be due */
			busy = true;
		}
		now = GetCurrentTimestamp();
		if (!http_claim_due && http_has_wake && now >= http_wake)
			http_claim_due = true;
		if (extension_exists && http_claim_due && orchestrator_http_room() > 0)
		{
			memset(&http, 0, sizeof(http));
			http.asked = Min(orchestrator_http_room(), Max(orchestrator_batch_size, 256));
			http.recover = http_recover;
			if (dispatch_turn(NULL, &http, loop_context))
			{
				http_recover = false;
				http_claim_due = http.count == http.asked;
				http_has_wake = http.has_next_wake;
				http_wake = http.next_wake;
				orchestrator_http_start_claimed();
				busy |= http.count > 0;
			}
			else
			{
				orchestrator_http_discard_claimed();
				http_claim_due = false;
				http_has_wake = true;
				http_wake = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														orchestrator_poll_interval);
			}
			MemoryContextSwitchTo(loop_context);
		}

		if (busy)
		{
			/* serve the sockets without sleeping */
			if (orchestrator_http_wait(0))
				woken_for(&dispatch_due, &timers_due, &http_claim_due);
			continue;
		}

		/*
		 * Sleep until the next timer, retry or lease expiry, a wake-up (the
		 * latch), network activity, or poll_interval.
		 */
		now = GetCurrentTimestamp();
		deadline = TimestampTzPlusMilliseconds(now, orchestrator_poll_interval);
		if (dispatch_has_wake && dispatch_wake < deadline)
			deadline = dispatch_wake;
		if (http_has_wake && http_wake < deadline)
			deadline = http_wake;
		sleep_ms = TimestampDifferenceMilliseconds(now, deadline);
		if (sql_has_wake)
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, sql_wake));
		/* committers wake one dispatcher asleep here for sql work (shmem.c) */
		orchestrator_set_batch_phase(BATCH_IDLE);
		if (orchestrator_http_wait(Max(sleep_ms, 1)))
			woken_for(&dispatch_due, &timers_due, &http_claim_due);
		orchestrator_set_batch_phase(BATCH_OTHER);
		if (GetCurrentTimestamp() >= deadline)
			dispatch_due = timers_due = http_claim_due = true;
	}
}
