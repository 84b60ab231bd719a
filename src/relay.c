/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  Notifications sent after commit by one relay worker, in batches.
 *
 * A NOTIFY in the transaction that appends an event takes, at commit, a lock
 * that serialises every notifying transaction of the cluster and holds it
 * through the commit's WAL flush: no two of them group-commit.  Every start
 * of a run and every dispatcher batch notifies, so that lock capped the whole
 * engine (each application request starting one run in its own transaction
 * ran at a third of the plain commit rate).
 *
 * Instead, a transaction keeps its notifications in backend memory
 * (orchestrator_notify()); just before it commits, a transaction callback
 * copies them into a ring in shared memory, held, and when it has committed
 * releases them and sets the relay's latch ("Order" below).  The relay worker,
 * connected to orchestrator.database, sends what the ring holds with
 * Async_Notify() in one transaction per batch (synchronous_commit off: a
 * notification need not survive a crash, the events do), so the notify lock
 * is taken once per batch, by one process, off the applications' commit path.
 *
 * Batches are gathered: after sending one, the relay waits
 * orchestrator.notify_interval (2 ms) before the next, and a commit wakes it
 * only when the ring was empty.  Under load that is one relay transaction,
 * one signal to each listening backend and one read by each client per
 * interval instead of per commit (measured with a listening client: the
 * relay, the listener's backend, the WAL writer and the client together spent
 * 0.12-0.14 ms per three-step run with no interval, 0.07 ms with 2 ms, 0.05
 * ms with 5 ms; 5 ms added about 4 ms at the median from an event's append
 * to its reading by the client, 2 ms adds at most 2).  The first
 * notification after a quiet spell goes at once.
 *
 * Order: a transaction writes its notifications into the ring before its
 * commit (XACT_EVENT_PRE_COMMIT), as entries held until its commit callback
 * releases them; the relay sends in ring order and does not pass a held
 * entry.  A transaction whose work another can see only once it is visible
 * (a start, and the dispatcher that runs the started run's steps), or that
 * waits for another's row lock (released after the commit callbacks), takes
 * its place in the ring after the first's, so a run's notifications arrive
 * in the order of their sequence numbers, however late a preempted backend
 * runs its commit callback.  A commit that holds its entries longer than
 * RELAY_HELD_MAX is passed over (relay_take()).
 *
 * Private channels: besides the two shared channels, an entry may name its
 * own channel (RELAY_PRIVATE: the name, a zero byte, the payload).  Their
 * names are keyed hashes of (database, role) that only that role is told
 * (orchestrator_private_channel()): LISTEN takes no privilege in PostgreSQL,
 * so a name nobody else can compute is what keeps one role's announcements
 * (session keys, src/sessions.c) from the others.
 *
 * Nobody listening, nothing sent: a commit's notifications go to the ring
 * only when a backend of this database LISTENs (notify_queue_listened_here()),
 * counted in "unheard" otherwise.
 *
 * Delivery is best effort, as NOTIFY always was for a client that is not
 * connected: the events are in workflow_events, and a client catches up with
 * orchestrator.events(run_id, after_seq).  Notifications go directly (the
 * old way, in the transaction) when no relay runs for the current database:
 * another database, or the relay restarting.
 *
 * A full notification queue never fails the engine.  The server's queue is
 * finite (8 GB in PostgreSQL 15) and advances only as fast as its slowest
 * listener: a session that LISTENs and then stays in a transaction holds it
 * back until, full, it makes every NOTIFY fail at commit.  So nothing is sent
 * once the queue is more than orchestrator.notify_queue_max_usage percent
 * full: the relay keeps the notifications in its ring and looks again after
 * a pause that doubles up to RELAY_BACKOFF_MAX (counted in "deferrals", the
 * start of the wait in "deferred_since"); when the ring is full, a commit
 * drops what does not fit (counted in "dropped") rather than wait.  A
 * transaction that would notify directly drops its notifications then
 * (counted too).  If NOTIFY fails in the relay all the same, the batch is
 * dropped, counted and the relay pauses.  What the server's queue holds and
 * who listens is read from the server's own record (notify_queue.c), so
 * health() names the session that holds the queue back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "notify_queue.h"
#include "relay.h"
#include "workers.h"

/* One notification: channel and payload (payloads longer than this go directly). */
#define RELAY_PAYLOAD_MAX 250

/* Where an entry of the ring stands. */
typedef enum RelayEntryState
{
	ENTRY_READY = 0,			/* its transaction committed: send it */
	ENTRY_HELD,					/* its transaction is committing: wait */
	ENTRY_VOID					/* not to be sent: aborted, unheard or passed over */
} RelayEntryState;

typedef struct RelayEntry
{
	uint8		channel;		/* RelayChannel */
	uint8		len;			/* of payload, without the terminating zero */
	uint8		state;			/* RelayEntryState (in the ring) */
	int32		pid;			/* the backend that wrote it */
	uint64		pos;			/* its position: the ring's head when written */
	uint64		group_end;		/* the position after its transaction's last */
	char		payload[RELAY_PAYLOAD_MAX + 1];
} RelayEntry;

/*
 * How long the relay waits for a held entry before it sends what follows
 * without it (ms): a commit takes milliseconds, but one that waits for a
 * synchronous standby may take as long as the standby, and must not hold
 * back everybody else's notifications meanwhile.
 */
#define RELAY_HELD_MAX 1000

/* Most notifications the relay sends in one transaction. */
#define RELAY_BATCH 2000

/* Private channel names a backend keeps, made last. */
#define PRIVATE_CHANNELS_KEPT 4

/* Random bytes, made at every start of shared memory, that name private channels. */
#define RELAY_CHANNEL_KEY_LEN 32

/* Pauses of the relay while the server's queue is too full (ms), doubling. */
#define RELAY_BACKOFF_MIN 250
#define RELAY_BACKOFF_MAX 8000

typedef struct RelayShared
{
	LWLock	   *lock;			/* protects everything but the counters */
	Oid			database;		/* the relay's database; InvalidOid: none runs */
	int			pgprocno;		/* the relay's latch, -1 when none */
	pid_t		pid;
	uint64		head;			/* entries written so far */
	uint64		tail;			/* entries taken by the relay so far */
	pg_atomic_uint64 sent;
	pg_atomic_uint64 dropped;	/* ring or notification queue full */
	pg_atomic_uint64 direct;	/* sent in the transaction: no relay */
	pg_atomic_uint64 deferrals; /* pauses because the queue was too full */
	pg_atomic_uint64 unheard;	/* not sent: nobody listened in the database */
	TimestampTz deferred_since; /* 0 unless the relay is waiting for room */
	int			capacity;
	uint8		channel_key[RELAY_CHANNEL_KEY_LEN];	/* names private channels */
	RelayEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} RelayShared;

static RelayShared *relay = NULL;



static const char *const channel_names[] = {"orchestrator", "orchestrator_queue"};

/* The current transaction's notifications, with the nesting level of each. */
typedef struct Pending
{
	int			n;
	int			size;
	RelayEntry *entries;
	int		   *levels;
} Pending;

static Pending *pending = NULL;
static bool callbacks_registered = false;

static void relay_queue(RelayChannel channel, const char *text, size_t len);
static void notify_directly(const char *channel, const char *payload);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PG_FUNCTION_INFO_V1(orchestrator_relay_status);

static Size
relay_shmem_size(void)
{
	return add_size(offsetof(RelayShared, entries),
					mul_size(orchestrator_relay_queue_size, sizeof(RelayEntry)));
}

static void
relay_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(relay_shmem_size()));
	RequestNamedLWLockTranche("orchestrator relay", 1);
}

static void
relay_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	relay = ShmemInitStruct("orchestrator relay", relay_shmem_size(), &found);
	if (!found)
	{
		relay->lock = &(GetNamedLWLockTranche("orchestrator relay"))->lock;
		relay->database = InvalidOid;
		relay->pgprocno = -1;
		relay->pid = 0;
		relay->head = relay->tail = 0;
		pg_atomic_init_u64(&relay->sent, 0);
		pg_atomic_init_u64(&relay->dropped, 0);
		pg_atomic_init_u64(&relay->direct, 0);
		pg_atomic_init_u64(&relay->deferrals, 0);
		pg_atomic_init_u64(&relay->unheard, 0);
		relay->deferred_since = 0;
		relay->capacity = orchestrator_relay_queue_size;
		if (!pg_strong_random(relay->channel_key, RELAY_CHANNEL_KEY_LEN))
			elog(FATAL, "could not generate random bytes for the orchestrator relay");
	}
	LWLockRelease(AddinShmemInitLock);
	/* set up before this hook runs; found again after a crash restart */
	notify_queue_attach();
}


/*
 * ring_write
 *		With the relay's lock held: write up to "n" entries at the ring's
 *		head in "state", as one group; returns how many fit (the rest is the
 *		caller's to count as dropped).
 */
static int
ring_write(RelayEntry *entries, int n, RelayEntryState state)
{
	uint64		room = relay->capacity - (relay->head - relay->tail);
	int			fit = (uint64) n < room ? n : (int) room;

	for (int i = 0; i < fit; i++)
	{
		RelayEntry *e = &relay->entries[(relay->head + i) % relay->capacity];

		*e = entries[i];
		e->state = state;
		e->pid = MyProcPid;
		e->pos = relay->head + i;
		e->group_end = relay->head + fit;
	}
	relay->head += fit;
	return fit;
}

/*
 * relay_append
 *		Write "n" committed entries at the ring's head and wake the relay if
 *		the ring was empty.  Runs in a commit callback: it must not fail, so
 *		what does not fit is dropped and counted.
 */
static void
relay_append(RelayEntry *entries, int n)
{
	int			fit;
	int			procno;

	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	/*
	 * Wake the relay only when the ring was empty: entries already in it mean
	 * it was woken for them, or will be when the held ones among them are
	 * released, and it takes these with them.
	 */
	procno = relay->head == relay->tail ? relay->pgprocno : -1;
	fit = ring_write(entries, n, ENTRY_READY);
	LWLockRelease(relay->lock);

	if (fit < n)
		pg_atomic_fetch_add_u64(&relay->dropped, n - fit);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * The ring slots the committing transaction of this backend holds: from
 * held_from, held_n of them, for the first held_offered entries of
 * "pending" (those beyond held_n did not fit).  held_offered is -1 when the
 * transaction took none before its commit.
 */
static uint64 held_from;
static int	held_n;
static int	held_offered = -1;

/*
 * relay_hold
 *		Before the commit (XACT_EVENT_PRE_COMMIT, the transaction not yet
 *		visible): write the transaction's notifications into the ring as
 *		held entries, which the relay does not pass.  A transaction that can
 *		make another's work visible (a start, whose run a dispatcher then
 *		takes) thereby has its place in the ring before that other can have
 *		one, however late its commit callback runs.
 */
static void
relay_hold(Pending *p)
{
	held_offered = -1;
	held_n = 0;
	/* nobody listens: ask again at commit, after visibility (see there) */
	if (!notify_queue_listened_here())
		return;
	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	held_from = relay->head;
	held_n = ring_write(p->entries, p->n, ENTRY_HELD);
	LWLockRelease(relay->lock);
	held_offered = p->n;
}

/*
 * relay_release
 *		After the commit (or its abort): make the held entries sendable
 *		("send"), or void.  Returns false when the relay passed them over
 *		meanwhile (held longer than RELAY_HELD_MAX); then they are no longer
 *		in the ring.  Wakes the relay when they were the first it waits for.
 */
static bool
relay_release(bool send)
{
	RelayEntry *first;
	bool		ours;
	int			procno = -1;

	if (held_n == 0)
		return true;
	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	first = &relay->entries[held_from % relay->capacity];
	ours = first->pos == held_from && first->state == ENTRY_HELD && first->pid == MyProcPid;
	if (ours)
	{
		uint64		k = relay->tail;

		for (int i = 0; i < held_n; i++)
			relay->entries[(held_from + i) % relay->capacity].state = send ? ENTRY_READY : ENTRY_VOID;
		/* the relay waits for these when only void entries precede them */
		while (k < held_from && relay->entries[k % relay->capacity].state == ENTRY_VOID)
			k++;
		if (k == held_from)
			procno = relay->pgprocno;
	}
	LWLockRelease(relay->lock);
	held_n = 0;
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
	return ours;
}

/*
 * orchestrator_relay_commit
 *		Hand the committed transaction's notifications to the relay.  Called
 *		at commit, by this module's callback and by wake.c's before it wakes
 *		the dispatchers (the sooner held entries are released, the less the
 *		relay waits).
 *
 * Whether anybody listens is asked again here, after the transaction became
 * visible (notify_queue_listened_here()): when nobody does, the held entries are
 * voided.  Entries the transaction did not hold go to the head now: all of
 * them when nobody listened before the commit (a session that began to
 * listen in between catches up with events(run_id, after_seq) anyway), and
 * any queued after relay_hold() (another module's pre-commit callback).
 */
void
orchestrator_relay_commit(void)
{
	Pending    *p = pending;
	bool		heard;
	int			from;

	pending = NULL;				/* its memory goes with the transaction */
	if (p == NULL || p->n == 0 || relay == NULL)
	{
		held_offered = -1;
		return;
	}
	heard = notify_queue_listened_here();
	if (held_offered < 0)
		from = 0;
	else
	{
		int			held = held_n;

		if (held_offered > held)
			pg_atomic_fetch_add_u64(&relay->dropped, held_offered - held);
		/* passed over by the relay: sent now, after what it sent meanwhile */
		if (!relay_release(heard) && heard)
			relay_append(p->entries, held);
		from = held_offered;
		held_offered = -1;
	}
	if (!heard)
		pg_atomic_fetch_add_u64(&relay->unheard, p->n);
	else if (from < p->n)
		relay_append(p->entries + from, p->n - from);
}

static void
relay_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending != NULL && pending->n > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed orchestrator runs"),
						 errdetail("The transaction produced notifications, which are sent when it commits."),
						 errhint("Commit the transaction instead of preparing it.")));
			break;
		case XACT_EVENT_PRE_COMMIT:
			if (pending != NULL && pending->n > 0 && relay != NULL)
				relay_hold(pending);
			break;
		case XACT_EVENT_COMMIT:
			orchestrator_relay_commit();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (relay != NULL)
				(void) relay_release(false);
			held_offered = -1;
			pending = NULL;
			break;
		default:
			break;
	}
}

/*
 * relay_subxact_callback
 *		A subtransaction that rolls back takes its notifications with it; one
 *		that commits hands them to its parent.
 */
static void
relay_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (pending == NULL || pending->n == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (pending->n > 0 && pending->levels[pending->n - 1] >= level)
			pending->n--;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = pending->n - 1; i >= 0 && pending->levels[i] >= level; i--)
			pending->levels[i] = level - 1;
	}
}


/* Is a relay serving this backend's database? */
static bool
relay_serves_us(void)
{
	return relay != NULL && relay->pgprocno >= 0 && relay->database == MyDatabaseId;
}

/*
 * orchestrator_notify
 *		Notify "channel" with "payload" when the current transaction commits:
 *		through the relay when one serves this database, else directly.
 */
void
orchestrator_notify(RelayChannel channel, const char *payload)
{
	size_t		len = strlen(payload);

	if (len > RELAY_PAYLOAD_MAX || !relay_serves_us())
		notify_directly(channel_names[channel], payload);
	else
		relay_queue(channel, payload, len);
}

/*
 * notify_directly
 *		NOTIFY in the current transaction (no relay serves it, or the
 *		payload is too long for the ring), unless the server's queue is too
 *		full: that would fail the transaction at commit, so drop instead.
 */
static void
notify_directly(const char *channel, const char *payload)
{
	if (!notify_queue_has_room())
	{
		if (relay != NULL)
			pg_atomic_fetch_add_u64(&relay->dropped, 1);
		return;
	}
	Async_Notify(channel, payload);
	if (relay != NULL)
		pg_atomic_fetch_add_u64(&relay->direct, 1);
}

/*
 * relay_queue
 *		Keep an entry (len bytes of text, at most RELAY_PAYLOAD_MAX, and a
 *		terminating zero) until the transaction ends.
 */
static void
relay_queue(RelayChannel channel, const char *text, size_t len)
{
	RelayEntry *e;

	if (!callbacks_registered)
	{
		RegisterXactCallback(relay_xact_callback, NULL);
		RegisterSubXactCallback(relay_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (pending == NULL)
	{
		pending = MemoryContextAllocZero(TopTransactionContext, sizeof(Pending));
		pending->size = 16;
		pending->entries = MemoryContextAlloc(TopTransactionContext, sizeof(RelayEntry) * pending->size);
		pending->levels = MemoryContextAlloc(TopTransactionContext, sizeof(int) * pending->size);
	}
	else if (pending->n == pending->size)
	{
		pending->size *= 2;
		pending->entries = repalloc(pending->entries, sizeof(RelayEntry) * pending->size);
		pending->levels = repalloc(pending->levels, sizeof(int) * pending->size);
	}
	e = &pending->entries[pending->n];
	e->channel = (uint8) channel;
	e->len = (uint8) len;
	memcpy(e->payload, text, len);
	e->payload[len] = '\0';
	pending->levels[pending->n] = GetCurrentTransactionNestLevel();
	pending->n++;
}

/*
 * orchestrator_notify_private
 *		Notify the private channel "channel" (a name made by
 *		orchestrator_private_channel()) with "payload" when the current
 *		transaction commits.  The entry holds the channel name, a zero byte
 *		and the payload; what does not fit goes directly.
 */
void
orchestrator_notify_private(const char *channel, const char *payload)
{
	size_t		clen = strlen(channel);
	size_t		plen = strlen(payload);
	char	   *both;

	if (clen + 1 + plen > RELAY_PAYLOAD_MAX || !relay_serves_us())
	{
		notify_directly(channel, payload);
		return;
	}
	both = palloc(clen + 1 + plen + 1);
	memcpy(both, channel, clen + 1);
	memcpy(both + clen + 1, payload, plen + 1);
	relay_queue(RELAY_PRIVATE, both, clen + 1 + plen);
	pfree(both);
}

/*
 * orchestrator_private_channel
 *		The name of the private channel of "role" in this database:
 *		"<prefix>_" and 32 hex digits of an HMAC-SHA256, keyed with random
 *		bytes made when the server started, of (database, role, prefix).  Nobody
 *		can compute another role's name; it changes at every restart of the
 *		server (when every LISTEN ends anyway).  Written to buf, which has
 *		room for NAMEDATALEN bytes.
 */
void
orchestrator_private_channel(const char *prefix, Oid role, char *buf)
{
	/* the names made last (a run's events go to two roles, sessions to one) */
	static struct
	{
		Oid			role;
		char		prefix[NAMEDATALEN];
		char		name[NAMEDATALEN];
	}			made[PRIVATE_CHANNELS_KEPT];
	static int	next_made = 0;
	pg_hmac_ctx *ctx;
	uint8		input[2 * sizeof(Oid)];
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			n;

	if (relay == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("orchestrator must be loaded via shared_preload_libraries")));
	for (int i = 0; i < PRIVATE_CHANNELS_KEPT; i++)
		if (OidIsValid(made[i].role) && made[i].role == role && strcmp(made[i].prefix, prefix) == 0)
		{
			strlcpy(buf, made[i].name, NAMEDATALEN);
			return;
		}
	memcpy(input, &MyDatabaseId, sizeof(Oid));
	memcpy(input + sizeof(Oid), &role, sizeof(Oid));
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL ||
		pg_hmac_init(ctx, relay->channel_key, RELAY_CHANNEL_KEY_LEN) < 0 ||
		pg_hmac_update(ctx, input, sizeof(input)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) prefix, strlen(prefix)) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a channel name: %s", pg_hmac_error(ctx));
	pg_hmac_free(ctx);
	n = snprintf(buf, NAMEDATALEN, "%s_", prefix);
	Assert(n + 32 < NAMEDATALEN);
	hex_encode((const char *) digest, 16, buf + n);
	buf[n + 32] = '\0';
	if (strlen(prefix) < NAMEDATALEN)
	{
		made[next_made].role = role;
		strlcpy(made[next_made].prefix, prefix, NAMEDATALEN);
		strlcpy(made[next_made].name, buf, NAMEDATALEN);
		next_made = (next_made + 1) % PRIVATE_CHANNELS_KEPT;
	}
}


/*
 * orchestrator._relay_status(): the relay's pid, notifications waiting in the
 * ring, sent by it, dropped, sent directly, the pauses it made because the
 * server's queue was too full, since when it has been waiting for room, and
 * those not sent because nobody listened in the database.
 */
Datum
orchestrator_relay_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	pid_t		pid;
	uint64		queued;
	TimestampTz deferred_since;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	LWLockAcquire(relay->lock, LW_SHARED);
	pid = relay->pgprocno >= 0 ? relay->pid : 0;
	queued = relay->head - relay->tail;
	deferred_since = relay->deferred_since;
	LWLockRelease(relay->lock);

	values[0] = Int32GetDatum(pid);
	nulls[0] = pid == 0;
	values[1] = Int64GetDatum((int64) queued);
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&relay->sent));
	values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&relay->dropped));
	values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&relay->direct));
	values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&relay->deferrals));
	values[6] = TimestampTzGetDatum(deferred_since);
	nulls[6] = deferred_since == 0;
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&relay->unheard));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}


/* Exit callback of the relay: backends notify directly from now on. */
static void
relay_detach(int code, Datum arg)
{
	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	if (relay->pid == MyProcPid)
	{
		relay->pgprocno = -1;
		relay->database = InvalidOid;
		relay->pid = 0;
		relay->deferred_since = 0;
	}
	LWLockRelease(relay->lock);
}

/* The held entry the relay waits for, and since when (relay_take()). */
static uint64 waiting_at = PG_UINT64_MAX;
static TimestampTz waiting_since = 0;

/*
 * relay_take
 *		Take up to RELAY_BATCH ready entries from the ring's tail into
 *		"batch", stepping over void ones and stopping at a held one: its
 *		transaction is committing, and what follows may be later events of
 *		the same run.  A transaction that holds its entries longer than
 *		RELAY_HELD_MAX is passed over (its entries voided; it writes them
 *		again at its commit, out of order for its runs): one slow commit
 *		does not hold back everybody else's notifications.
 */
static int
relay_take(RelayEntry *batch)
{
	int			n = 0;
	int			passed = 0;
	int32		passed_pid = 0;

	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	while (relay->tail < relay->head && n < RELAY_BATCH)
	{
		RelayEntry *e = &relay->entries[relay->tail % relay->capacity];

		if (e->state == ENTRY_HELD)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (e->pos != waiting_at)
			{
				waiting_at = e->pos;
				waiting_since = now;
				break;
			}
			if (!TimestampDifferenceExceeds(waiting_since, now, RELAY_HELD_MAX))
				break;
			passed_pid = e->pid;
			for (uint64 k = e->pos; k < e->group_end; k++, passed++)
				relay->entries[k % relay->capacity].state = ENTRY_VOID;
			relay->tail = e->group_end;
			continue;
		}
		if (e->state == ENTRY_READY)
			batch[n++] = *e;
		relay->tail++;
	}
	LWLockRelease(relay->lock);
	if (passed > 0)
		ereport(LOG,
				(errmsg("orchestrator relay sent past %d notifications held for over %d ms by process %d",
						passed, RELAY_HELD_MAX, passed_pid),
				 errdetail("Their transaction was still committing; they are sent when it has committed, after the ones that followed them.")));
	return n;
}

/*
 * relay_waiting_ms
 *		While the relay waits for a held entry: how long until it passes it
 *		over, else -1.
 */
static long
relay_waiting_ms(void)
{
	bool		held;
	long		left;

	LWLockAcquire(relay->lock, LW_SHARED);
	held = relay->tail < relay->head &&
		relay->entries[relay->tail % relay->capacity].state == ENTRY_HELD &&
		relay->entries[relay->tail % relay->capacity].pos == waiting_at;
	LWLockRelease(relay->lock);
	if (!held)
		return -1;
	left = RELAY_HELD_MAX - TimestampDifferenceMilliseconds(waiting_since, GetCurrentTimestamp());
	return Max(left, 1);
}

/*
 * relay_send
 *		Take up to RELAY_BATCH notifications from the ring and send them in
 *		one transaction.  Returns how many were taken.
 */
static int
relay_send(RelayEntry *batch, MemoryContext loop_context)
{
	int			n;

	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	if (relay->head == relay->tail)
	{
		LWLockRelease(relay->lock);
		return 0;
	}
	LWLockRelease(relay->lock);

	/* the server's queue too full: leave them in the ring (see the top) */
	if (!notify_queue_has_room())
		return -1;

	n = relay_take(batch);
	if (n == 0)
		return 0;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "NOTIFY (orchestrator relay)");
		for (int i = 0; i < n; i++)
		{
			if (batch[i].channel == RELAY_PRIVATE)
				Async_Notify(batch[i].payload,
							 batch[i].payload + strlen(batch[i].payload) + 1);
			else
				Async_Notify(channel_names[batch[i].channel], batch[i].payload);
		}
		CommitTransactionCommand();
		pg_atomic_fetch_add_u64(&relay->sent, n);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the server's notification queue is full, most likely */
		MemoryContextSwitchTo(loop_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pg_atomic_fetch_add_u64(&relay->dropped, n);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("orchestrator relay dropped %d notifications: %s", n, edata->message),
				 errhint("Clients catch up with orchestrator.events(run_id, after_seq).  A full notification queue is held back by a listening session that does not consume notifications (see pg_notification_queue_usage()).")));
		FreeErrorData(edata);
		n = -1;					/* back off: the queue drains only as listeners read */
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(false);
	return n;
}

/*
 * relay_pause
 *		Wait "ms" milliseconds, answering interrupts and reloads, whether
 *		the latch is set or not (a push onto an empty ring sets it): while
 *		the queue has no room, and between batches.
 */
static void
relay_pause(long ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * orchestrator_relay_main
 *		The relay worker: connect to orchestrator.database, announce itself,
 *		send what the ring holds whenever the latch is set.
 */
void
orchestrator_relay_main(Datum main_arg)
{
	MemoryContext loop_context;
	RelayEntry *batch;
	long		backoff = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(orchestrator_database, NULL, 0);
	pgstat_report_appname(ORCHESTRATOR_RELAY_TYPE);

	/* a notification need not outlive a crash: the event it announces does */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	loop_context = AllocSetContextCreate(TopMemoryContext, "orchestrator relay",
										 ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(RelayEntry) * RELAY_BATCH);

	LWLockAcquire(relay->lock, LW_EXCLUSIVE);
	relay->database = MyDatabaseId;
	relay->pid = MyProcPid;
	relay->pgprocno = MyProc->pgprocno;
	LWLockRelease(relay->lock);
	before_shmem_exit(relay_detach, (Datum) 0);

	for (;;)
	{
		int			sent;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);

		ResetLatch(MyLatch);
		sent = relay_send(batch, loop_context);
		if (sent < 0)
		{
			/* the queue is (too) full: wait for listeners to read it */
			backoff = backoff == 0 ? RELAY_BACKOFF_MIN : Min(backoff * 2, RELAY_BACKOFF_MAX);
			LWLockAcquire(relay->lock, LW_EXCLUSIVE);
			if (relay->deferred_since == 0)
				relay->deferred_since = GetCurrentTimestamp();
			LWLockRelease(relay->lock);
			pg_atomic_fetch_add_u64(&relay->deferrals, 1);
			relay_pause(backoff);
			continue;
		}
		if (backoff != 0)
		{
			backoff = 0;
			LWLockAcquire(relay->lock, LW_EXCLUSIVE);
			relay->deferred_since = 0;
			LWLockRelease(relay->lock);
		}
		if (sent > 0)
		{
			/*
			 * Gather what commits meanwhile into the next batch: under load,
			 * one transaction here and one wake-up of every listener per
			 * interval instead of one per commit (pushes do not wake us while
			 * the ring is not empty, so the wait is not cut short by them).
			 */
			if (sent < RELAY_BATCH && orchestrator_notify_interval > 0)
				relay_pause(orchestrator_notify_interval);
			continue;			/* there may be more */
		}
		{
			long		held = relay_waiting_ms();

			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 held >= 0 ? held : 1000L, PG_WAIT_EXTENSION);
		}
	}
}

/*
 * orchestrator_relay_install
 *		From _PG_init: shared memory for the ring, and the relay worker
 *		(restarted by the postmaster when it exits).
 */
void
orchestrator_relay_install(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = relay_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = relay_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, ORCHESTRATOR_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "orchestrator_relay_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, ORCHESTRATOR_RELAY_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, ORCHESTRATOR_RELAY_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}
