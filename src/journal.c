/*-------------------------------------------------------------------------
 *
 * journal.c
 *	  Attempts of sql steps lost outside their statement.
 *
 * A dispatcher runs a batch of sql steps in one transaction; each step's
 * statement runs in a subtransaction, so a failing statement fails its own
 * attempt only.  Two things escape that:
 *
 * 1. An error in the dispatcher's own work for a step (recording a result
 *    whose cost overflows, a result too large for jsonb, out of memory, the
 *    engine's time limit) aborts the batch's transaction, and with it the
 *    attempt count.  The dispatcher knows which step it was handling (the
 *    step "in hand"): it hands that step over as a lost attempt and redoes
 *    the batch without it at once.
 *
 * 2. The process dies while a step runs: the step crashed or killed its
 *    backend, or it ignored its timeout and the watchdog (executor.c) ended
 *    the process.  Nothing commits, so no attempt would ever be counted and
 *    such a step would run for ever.  Before each step's statement the
 *    dispatcher writes the step's key to a small journal file of its slot
 *    (mapped into memory, so a write is a store, not a system call; the
 *    page cache keeps it when the process dies; no fsync: a backend crash
 *    is not an OS crash), and clears
 *    it when the batch is done.  A dispatcher that exits (FATAL: the
 *    watchdog, pg_terminate_backend) hands the step over from its exit
 *    callback, before its locks are released.  A process that crashes or
 *    is killed cannot: the postmaster then reinitialises shared memory, and
 *    the journal entries of every slot are read back then (this file's
 *    shared memory startup hook, which runs after shmem.c's).  Dispatchers
 *    that the postmaster stops because another process crashed (SIGQUIT)
 *    mark their entries as not their step's fault.  When a new postmaster
 *    starts (after a shutdown, an immediate one included, or an OS crash)
 *    the entries are discarded: they were not the steps' fault either.
 *
 * Lost attempts wait in shared memory until a dispatcher records them at
 * the start of a turn, each in a short transaction of its own
 * (orchestrator._sql_attempt_lost()); claims leave those steps alone
 * meanwhile.  Recording checks that the step is still at the attempt that
 * was lost, so recording twice, or an entry read back again, is harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "journal.h"
#include "shmem.h"

/* Directory of the journal files, in the data directory. */
#define JOURNAL_DIR			"orchestrator"
#define JOURNAL_MAGIC		0x4f524a31	/* "ORJ1" */

/* States of a journal entry. */
#define JOURNAL_EMPTY		0
#define JOURNAL_RUNNING		1	/* the step is being handled */
#define JOURNAL_INNOCENT	2	/* stopped by the postmaster (SIGQUIT) */
#define JOURNAL_EXITED		3	/* the process exited; reason given */

/* The journal file of a slot: one entry. */
typedef struct JournalEntry
{
	uint32		magic;
	uint32		state;
	StepKey		key;
	char		reason[SLOT_ERROR_LEN];
} JournalEntry;

/* Lost attempts are recorded again after at most this long when it fails. */
#define LOST_MAX_RETRY_MS	60000

volatile sig_atomic_t orchestrator_watchdog_fired = false;

static int	journal_fd = -1;
static volatile JournalEntry *journal_map = NULL;	/* the file, mapped */
static int	journal_slot = -1;
static bool journal_dirty = false;	/* the file holds a RUNNING entry */

/* The step in hand, if any. */
static bool in_hand = false;
static StepKey in_hand_key;

static void
journal_path(char *path, int slot)
{
	snprintf(path, MAXPGPATH, "%s/dispatcher_%d.journal", JOURNAL_DIR, slot);
}

/*
 * journal_sigquit
 *		SIGQUIT: the postmaster stops every process because another one
 *		crashed, or for an immediate shutdown.  The step being run is not at
 *		fault: say so in the journal, then exit as
 *		SignalHandlerForCrashExit() does.  Only async-signal-safe calls.
 */
static void
journal_sigquit(SIGNAL_ARGS)
{
	if (journal_map != NULL)
		journal_map->state = JOURNAL_INNOCENT;
	_exit(2);
}

/* Write the whole entry of this process's slot (errors only logged). */
static void
journal_write(const JournalEntry *entry)
{
	if (journal_map == NULL)
		return;

	/*
	 * The state last, the key and reason first: a process killed in the
	 * middle leaves an empty entry or a whole one (a torn key blamed
	 * instead would be harmless too: recording checks the attempt).
	 */
	journal_map->state = JOURNAL_EMPTY;
	pg_write_barrier();
	memcpy((void *) &journal_map->key, &entry->key, sizeof(entry->key));
	memcpy((void *) journal_map->reason, entry->reason, sizeof(entry->reason));
	journal_map->magic = JOURNAL_MAGIC;
	pg_write_barrier();
	journal_map->state = entry->state;
}

/*
 * add_lost
 *		Queue a lost attempt for recording.  The caller holds the lock (or
 *		is the postmaster, alone); an attempt already queued is not queued
 *		twice.
 */
static void
add_lost(const StepKey *key, bool internal, int sqlerrcode, const char *message,
		 const char *detail)
{
	OrchestratorShared *sh = orchestrator_shared;
	uint32		n = pg_atomic_read_u32(&sh->nlost);
	LostStep   *l;

	for (uint32 i = 0; i < n; i++)
		if (memcmp(&sh->lost[i].key.run_id, &key->run_id, sizeof(pg_uuid_t)) == 0 &&
			strcmp(sh->lost[i].key.step, key->step) == 0 &&
			sh->lost[i].key.attempt == key->attempt)
			return;
	if (n >= ORCHESTRATOR_MAX_LOST)
	{
		/* the oldest goes: its step runs again, uncounted */
		memmove(&sh->lost[0], &sh->lost[1], sizeof(LostStep) * (n - 1));
		n--;
	}
	l = &sh->lost[n];
	memset(l, 0, sizeof(LostStep));
	l->key = *key;
	l->internal = internal;
	l->sqlerrcode = sqlerrcode;
	strlcpy(l->message, message ? message : "", SLOT_ERROR_LEN);
	strlcpy(l->detail, detail ? detail : "", SLOT_ERROR_LEN);
	pg_write_barrier();
	pg_atomic_write_u32(&sh->nlost, n + 1);
}

/*
 * journal_exit
 *		Exit callback of a dispatcher.  With a step in hand the process is
 *		dying because of it (the watchdog, pg_terminate_backend() by the
 *		step, a FATAL error while running it): hand it over as a lost
 *		attempt, with the reason, in shared memory and in the journal (a
 *		crash of the server before it is recorded reads it back), and have
 *		the launcher start the next dispatcher of the slot at once.  Runs
 *		before the transaction is aborted, so the step's rows are still
 *		locked: no claim can take the step before it is queued.
 */
static void
journal_exit(int code, Datum arg)
{
	OrchestratorSlot *slot;
	JournalEntry entry;
	const char *message;
	bool		stopped;

	if (!in_hand || orchestrator_shared == NULL || journal_slot < 0)
		return;
	slot = &orchestrator_shared->slots[journal_slot];

	if (orchestrator_watchdog_fired)
		message = "the step timed out and did not stop; its dispatcher process was ended";
	else
		message = "the dispatcher process exited while running this step";

	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	stopped = slot->stop_requested && slot->pid == MyProcPid;
	if (!stopped)
	{
		add_lost(&in_hand_key, false, orchestrator_watchdog_fired ? ERRCODE_QUERY_CANCELED : 0,
				 message, orchestrator_watchdog_fired
				 ? "It went on past its timeout and orchestrator.step_timeout_grace (it caught the cancel, or did not check for it)."
				 : "It was terminated, or failed with a FATAL error.");
		slot->restart_promptly = true;
		slot->failures++;
		slot->last_error_at = GetCurrentTimestamp();
		snprintf(slot->last_error, SLOT_ERROR_LEN, "step \"%s\": %s", in_hand_key.step, message);
	}
	LWLockRelease(orchestrator_shared->lock);

	memset(&entry, 0, sizeof(entry));
	entry.magic = JOURNAL_MAGIC;
	entry.state = stopped ? JOURNAL_EMPTY : JOURNAL_EXITED;
	entry.key = in_hand_key;
	strlcpy(entry.reason, message, SLOT_ERROR_LEN);
	journal_write(&entry);

	if (!stopped)
		ereport(LOG,
				(errcode(orchestrator_watchdog_fired ? ERRCODE_QUERY_CANCELED : ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("orchestrator dispatcher %d exits while running step \"%s\" of run %s: %s",
						journal_slot, in_hand_key.step,
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&in_hand_key.run_id))),
						message),
				 errdetail("The attempt counts as failed; the step is retried or fails according to its retry policy.")));
	in_hand = false;
}

/*
 * orchestrator_journal_open
 *		A dispatcher starts in a slot: open (or create) the slot's journal,
 *		catch SIGQUIT, and hand a step over when the process exits with one
 *		in hand.  The entry left by the slot's last process is not touched:
 *		it was handed over already (exit callback, or read back at a crash).
 */
void
orchestrator_journal_open(int slot)
{
	char		path[MAXPGPATH];

	journal_slot = slot;
	if (MakePGDirectory(JOURNAL_DIR) < 0 && errno != EEXIST)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", JOURNAL_DIR)));
	journal_path(path, slot);
	journal_fd = BasicOpenFile(path, O_RDWR | O_CREAT | PG_BINARY);
	if (journal_fd >= 0 && ftruncate(journal_fd, sizeof(JournalEntry)) == 0)
	{
		void	   *map = mmap(NULL, sizeof(JournalEntry), PROT_READ | PROT_WRITE, MAP_SHARED,
							   journal_fd, 0);

		if (map != MAP_FAILED)
			journal_map = map;
	}
	if (journal_map == NULL)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not open orchestrator journal \"%s\": %m", path),
				 errdetail("A sql step that crashes this dispatcher will not have its attempts counted.")));
	pqsignal(SIGQUIT, journal_sigquit);
	before_shmem_exit(journal_exit, (Datum) 0);
}

/*
 * orchestrator_step_begin
 *		The dispatcher takes a sql step in hand (its run is locked): from
 *		here until orchestrator_step_end() an error is that step's, and so is
 *		the death of the process.
 */
void
orchestrator_step_begin(pg_uuid_t *run_id, const char *step, int32 attempt)
{
	JournalEntry entry;

	memset(&in_hand_key, 0, sizeof(in_hand_key));
	in_hand_key.run_id = *run_id;
	in_hand_key.attempt = attempt;
	strlcpy(in_hand_key.step, step, STEP_KEY_NAME_LEN);
	in_hand = true;

	memset(&entry, 0, sizeof(entry));
	entry.magic = JOURNAL_MAGIC;
	entry.state = JOURNAL_RUNNING;
	entry.key = in_hand_key;
	journal_write(&entry);
	journal_dirty = true;
	orchestrator_report_step(run_id, step);
}

/* The step's handling is done (its transaction is not, yet). */
void
orchestrator_step_end(void)
{
	in_hand = false;
}

/*
 * orchestrator_batch_end
 *		The batch is done (about to commit) or aborted: the journal entry
 *		goes.  A crash after this blames no step.
 */
void
orchestrator_batch_end(void)
{
	in_hand = false;
	if (journal_dirty)
	{
		if (journal_map != NULL)
			journal_map->state = JOURNAL_EMPTY;
		journal_dirty = false;
		orchestrator_report_step(NULL, NULL);
	}
}

/* The step in hand, if any. */
bool
orchestrator_step_in_hand(StepKey *key)
{
	if (in_hand)
		*key = in_hand_key;
	return in_hand;
}

/*
 * orchestrator_step_lost_pending
 *		Is a lost attempt of this step waiting to be recorded?  Then a claim
 *		must leave the step alone.  Cheap when none is (one atomic read).
 */
bool
orchestrator_step_lost_pending(pg_uuid_t *run_id, const char *step)
{
	OrchestratorShared *sh = orchestrator_shared;
	bool		found = false;
	uint32		n;

	if (pg_atomic_read_u32(&sh->nlost) == 0)
		return false;
	LWLockAcquire(sh->lock, LW_SHARED);
	n = pg_atomic_read_u32(&sh->nlost);
	for (uint32 i = 0; i < n && !found; i++)
		found = memcmp(&sh->lost[i].key.run_id, run_id, sizeof(pg_uuid_t)) == 0 &&
			strcmp(sh->lost[i].key.step, step) == 0;
	LWLockRelease(sh->lock);
	return found;
}

/*
 * orchestrator_step_failed_in_batch
 *		The dispatcher's transaction failed (and was aborted).  With a step
 *		in hand the error is that step's: queue it as a lost attempt
 *		(internal: the dispatcher's own work failed) and return true; the
 *		batch is then redone without it.  False when no step was in hand:
 *		the turn failed.
 */
bool
orchestrator_step_failed_in_batch(ErrorData *edata)
{
	StepKey		key;

	if (!orchestrator_step_in_hand(&key))
	{
		orchestrator_batch_end();
		return false;
	}
	orchestrator_batch_end();

	LWLockAcquire(orchestrator_shared->lock, LW_EXCLUSIVE);
	add_lost(&key, true, edata->sqlerrcode, edata->message, edata->detail);
	LWLockRelease(orchestrator_shared->lock);

	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("orchestrator dispatcher %d: sql step \"%s\" of run %s failed outside its statement: %s",
					journal_slot, key.step,
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&key.run_id))),
					edata->message),
			 errdetail("The attempt counts as failed (\"internal\": true); the rest of the batch is run again without it.")));
	return true;
}

/*
 * record_one
 *		Record one lost attempt in its own transaction: "recorded", "stale"
 *		or "busy" (its run is locked by another transaction).
 */
static char *
record_one(LostStep *l, MemoryContext context)
{
	static const char *query =
		"SELECT orchestrator._sql_attempt_lost($1, $2, $3, jsonb_strip_nulls(jsonb_build_object("
		" 'message', $4::text, 'sqlstate', $5::text, 'detail', nullif($6::text, ''),"
		" 'internal', CASE WHEN $7 THEN true END)))";
	Oid			argtypes[7] = {UUIDOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	char	   *outcome;
	bool		isnull;

	values[0] = UUIDPGetDatum(&l->key.run_id);
	values[1] = CStringGetTextDatum(l->key.step);
	values[2] = Int32GetDatum(l->key.attempt);
	values[3] = CStringGetTextDatum(l->message);
	if (l->sqlerrcode != 0)
		values[4] = CStringGetTextDatum(unpack_sql_state(l->sqlerrcode));
	else
		nulls[4] = 'n';
	values[5] = CStringGetTextDatum(l->detail);
	values[6] = BoolGetDatum(l->internal);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	debug_query_string = query;
	pgstat_report_activity(STATE_RUNNING, query);

	if (SPI_execute_with_args(query, 7, argtypes, values, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not run orchestrator._sql_attempt_lost()")));
	outcome = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	outcome = MemoryContextStrdup(context, outcome);

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	debug_query_string = NULL;
	pgstat_report_activity(STATE_IDLE, NULL);
	return outcome;
}

/*
 * try_record_one
 *		record_one(), its error logged and NULL returned when it fails.
 */
static char *
try_record_one(LostStep *l, MemoryContext context)
{
	char	   *volatile outcome = NULL;

	PG_TRY();
	{
		outcome = record_one(l, context);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		disable_all_timeouts(false);
		QueryCancelPending = false;
		AbortCurrentTransaction();
		debug_query_string = NULL;
		MemoryContextSwitchTo(context);
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("orchestrator could not record the lost attempt %d of step \"%s\" of run %s: %s",
						l->key.attempt, l->key.step,
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&l->key.run_id))),
						edata->message),
				 errhint("The step is left alone until it is recorded; the dispatchers try again later.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return outcome;
}

/* Remove a recorded (or stale) lost attempt from the list. */
static void
remove_lost(const StepKey *key)
{
	OrchestratorShared *sh = orchestrator_shared;
	uint32		n;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	n = pg_atomic_read_u32(&sh->nlost);
	for (uint32 i = 0; i < n; i++)
		if (memcmp(&sh->lost[i].key, key, sizeof(StepKey)) == 0)
		{
			memmove(&sh->lost[i], &sh->lost[i + 1], sizeof(LostStep) * (n - i - 1));
			pg_atomic_write_u32(&sh->nlost, n - 1);
			break;
		}
	LWLockRelease(sh->lock);
}

/* Recording a lost attempt failed: try again later, longer each time. */
static void
defer_lost(const StepKey *key)
{
	OrchestratorShared *sh = orchestrator_shared;
	uint32		n;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	n = pg_atomic_read_u32(&sh->nlost);
	for (uint32 i = 0; i < n; i++)
		if (memcmp(&sh->lost[i].key, key, sizeof(StepKey)) == 0)
		{
			LostStep   *l = &sh->lost[i];
			long		ms = Min((long) 1000 << Min(l->failures, 10), LOST_MAX_RETRY_MS);

			l->failures++;
			l->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
			break;
		}
	LWLockRelease(sh->lock);
}

/*
 * add_unchained
 *		A lost attempt came to nothing ("stale"): its step is no longer
 *		ready.  When the step had been chained (run at once after the step
 *		it depends on, sql_steps.c), that step's success was lost with it,
 *		and chaining it again would lose it again, forever if the step kills
 *		its process or its bookkeeping fails each time.  Such a step goes
 *		through the queue from now on (as long as it stays in the ring), where
 *		its next lost attempt is recorded.
 */
static void
add_unchained(const StepKey *key)
{
	OrchestratorShared *sh = orchestrator_shared;
	uint32		n;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	n = pg_atomic_read_u32(&sh->nunchained);
	sh->unchained[n % ORCHESTRATOR_MAX_UNCHAINED] = *key;
	pg_atomic_write_u32(&sh->nunchained, n + 1);
	LWLockRelease(sh->lock);
}

/*
 * orchestrator_step_unchained
 *		May this step not be chained (add_unchained)?  Cheap when no step
 *		ever came to that (one atomic read).
 */
bool
orchestrator_step_unchained(pg_uuid_t *run_id, const char *step)
{
	OrchestratorShared *sh = orchestrator_shared;
	bool		found = false;
	uint32		n;

	if (pg_atomic_read_u32(&sh->nunchained) == 0)
		return false;
	LWLockAcquire(sh->lock, LW_SHARED);
	n = Min(pg_atomic_read_u32(&sh->nunchained), ORCHESTRATOR_MAX_UNCHAINED);
	for (uint32 i = 0; i < n && !found; i++)
		found = memcmp(&sh->unchained[i].run_id, run_id, sizeof(pg_uuid_t)) == 0 &&
			strcmp(sh->unchained[i].step, step) == 0;
	LWLockRelease(sh->lock);
	return found;
}

/*
 * orchestrator_record_lost_steps
 *		Record the lost attempts that are due, each in a transaction of its
 *		own, before the dispatcher claims anything.  One whose recording
 *		fails is logged and tried again later (its step stays unclaimed
 *		meanwhile, and health() shows it waiting).  Called outside a
 *		transaction; returns how many were recorded.
 */
int
orchestrator_record_lost_steps(void)
{
	OrchestratorShared *sh = orchestrator_shared;
	MemoryContext context = CurrentMemoryContext;
	LostStep   *due;
	uint32		n;
	int			ndue = 0;
	int			recorded = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (pg_atomic_read_u32(&sh->nlost) == 0)
		return 0;

	due = palloc(sizeof(LostStep) * ORCHESTRATOR_MAX_LOST);
	LWLockAcquire(sh->lock, LW_SHARED);
	n = pg_atomic_read_u32(&sh->nlost);
	for (uint32 i = 0; i < n; i++)
		if (sh->lost[i].retry_at <= now)
			due[ndue++] = sh->lost[i];
	LWLockRelease(sh->lock);

	for (int i = 0; i < ndue; i++)
	{
		LostStep   *l = &due[i];
		char	   *outcome = try_record_one(l, context);

		if (outcome == NULL)
			defer_lost(&l->key);
		else if (strcmp(outcome, "busy") != 0)
		{
			remove_lost(&l->key);
			if (strcmp(outcome, "recorded") == 0)
				recorded++;
			else
				add_unchained(&l->key);
		}
	}
	pfree(due);
	return recorded;
}

/*
 * orchestrator_journal_startup
 *		In the postmaster, when shared memory is set up.  At the first setup
 *		of this postmaster the journal entries are older than the server:
 *		they were left by a shutdown or an OS crash, not by their steps, and
 *		are discarded.  At a reinitialisation after a crash, the entries of
 *		steps that were running are lost attempts: queued for recording.
 *		Must not raise errors (this is the postmaster).
 */
static void
orchestrator_journal_startup(bool crash_restart)
{
	int			queued = 0;

	for (int slot = 0; slot < ORCHESTRATOR_MAX_WORKERS; slot++)
	{
		char		path[MAXPGPATH];
		JournalEntry entry;
		int			fd;
		ssize_t		got;

		journal_path(path, slot);
		if (!crash_restart)
		{
			if (unlink(path) < 0 && errno != ENOENT)
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("could not remove orchestrator journal \"%s\": %m", path)));
			continue;
		}

		fd = open(path, O_RDONLY | PG_BINARY, 0);
		if (fd < 0)
			continue;
		got = read(fd, &entry, sizeof(entry));
		close(fd);
		if (got != sizeof(entry) || entry.magic != JOURNAL_MAGIC)
			continue;
		if (entry.state != JOURNAL_RUNNING && entry.state != JOURNAL_EXITED)
			continue;

		entry.key.step[STEP_KEY_NAME_LEN - 1] = '\0';
		entry.reason[SLOT_ERROR_LEN - 1] = '\0';
		/* no other process exists yet: no lock */
		if (entry.state == JOURNAL_RUNNING)
			add_lost(&entry.key, false, 0,
					 "the dispatcher process died while running this step",
					 "It crashed or was killed (the server log has the signal or exit code); the server reinitialised.");
		else
			add_lost(&entry.key, false, 0, entry.reason, NULL);
		queued++;
	}
	if (queued > 0)
		ereport(LOG,
				(errcode(ERRCODE_CRASH_SHUTDOWN),
				 errmsg("orchestrator: %d sql step(s) were running in dispatchers when the server crashed; their attempts count as failed",
						queued)));
}

/*
 * Has this postmaster set up shared memory before?  Then the server is
 * reinitialising after a crash of one of its processes.
 */
static bool journal_started_before = false;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Read the journals back once shmem.c has set the slots up (in the postmaster). */
static void
journal_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (!IsUnderPostmaster)
	{
		orchestrator_journal_startup(journal_started_before);
		journal_started_before = true;
	}
}

/*
 * orchestrator_journal_install_hooks
 *		Called after orchestrator_shmem_install_hooks(): a hook runs the ones
 *		installed before it first, so the slots exist when the lost steps
 *		are queued in them.
 */
void
orchestrator_journal_install_hooks(void)
{
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = journal_shmem_startup;
}
