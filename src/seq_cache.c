/*-------------------------------------------------------------------------
 *
 * seq_cache.c
 *	  Each run's last event sequence number, remembered so that an append
 *	  need not read it back from the history.
 *
 * An append gives the next sequence number of the run; finding the last
 * one means reading the history's primary key backwards (an index opened,
 * searched and its heap tuple checked: about 12k instructions).  Every
 * transaction that appends to a run it did not create did that once per
 * run: a dispatcher's turn, an external step's claim and its completion,
 * an HTTP step's claim and its recording.
 *
 * Two memories replace the search:
 *
 * - In the transaction: the last number this transaction appended to each
 *   run, with the subtransaction that appended it.  A subtransaction that
 *   rolls back forgets what it and its children appended (those rows are
 *   gone): the next append of such a run reads the history again.
 *
 * - In shared memory: a fixed table of slots, one run each, chosen by the
 *   run id's hash (another run may take the slot: then the history is
 *   read).  A transaction writes its runs' last numbers into their slots
 *   before it commits, marked pending with its transaction id, and marks
 *   them committed once it has.  A slot is used only when committed.
 *
 * Why that is safe: every append holds the run's row lock (history.c), so
 * the transaction that last appended to a run has ended before another
 * reads the run's slot.  If it committed and marked its slot, the slot
 * holds the run's last number.  If it committed but has not marked it yet
 * (the moment between becoming visible and its commit callback), the slot
 * is pending: read the history.  If it rolled back, its abort callback
 * emptied the slot.  A crash resets shared memory.  Appends from outside
 * history.c would make a slot stale; none exist (rows restored from a dump
 * land in partitions of other OIDs, and the slot names its partition).
 * Should a slot ever be stale, the append fails on the primary key, and
 * the failed transaction empties the slots of the runs it appended to, so
 * the retry reads the history.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "seq_cache.h"

/* slots in shared memory (a power of two): 4096 x 40 bytes */
#define SEQ_SLOTS 4096

typedef enum SlotState
{
	SLOT_EMPTY = 0,
	SLOT_PENDING,				/* written before commit by "xid" */
	SLOT_COMMITTED				/* "xid" committed: "seq" is the run's last */
} SlotState;

typedef struct SeqSlot
{
	slock_t		mutex;
	uint8		state;
	Oid			partition;		/* the run's partition of workflow_events */
	TransactionId xid;
	pg_uuid_t	run_id;
	int64		seq;
} SeqSlot;

static SeqSlot *slots = NULL;

/* What this transaction appended, per run (in TopTransactionContext). */
typedef struct Appended
{
	pg_uuid_t	run_id;			/* hash key (of others) */
	Oid			partition;
	int64		seq;
	SubTransactionId subid;		/* of the last append */
	bool		valid;			/* false: read the history */
} Appended;

/*
 * The transaction's runs: the first in "first" (most transactions append
 * to one run: a start, a trickle's turn), the others in a hash table made
 * for the second.
 */
static Appended first;
static bool first_used = false;
static HTAB *others = NULL;
static TransactionId publishing_xid = InvalidTransactionId;
static bool callbacks_registered = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
seq_cache_shmem_size(void)
{
	return mul_size(SEQ_SLOTS, sizeof(SeqSlot));
}

static void
seq_cache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(seq_cache_shmem_size()));
}

static void
seq_cache_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slots = ShmemInitStruct("orchestrator event sequence cache", seq_cache_shmem_size(), &found);
	if (!found)
	{
		memset(slots, 0, seq_cache_shmem_size());
		for (int i = 0; i < SEQ_SLOTS; i++)
			SpinLockInit(&slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* seq_cache_install: from _PG_init, the slots in shared memory. */
void
seq_cache_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = seq_cache_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = seq_cache_shmem_startup;
}

static SeqSlot *
slot_of(const pg_uuid_t *run_id)
{
	return &slots[hash_bytes(run_id->data, UUID_LEN) & (SEQ_SLOTS - 1)];
}

/* Empty the run's slot, if it holds that run. */
static void
forget(Appended *e)
{
	SeqSlot    *s = slot_of(&e->run_id);

	SpinLockAcquire(&s->mutex);
	if (memcmp(&s->run_id, &e->run_id, sizeof(pg_uuid_t)) == 0)
		s->state = SLOT_EMPTY;
	SpinLockRelease(&s->mutex);
}

/* Before commit: the run's last number into its slot, pending. */
static void
publish(Appended *e)
{
	SeqSlot    *s = slot_of(&e->run_id);

	if (!e->valid || !OidIsValid(e->partition) || !TransactionIdIsValid(publishing_xid))
	{
		/* this transaction lost track of the run's number */
		forget(e);
		return;
	}
	SpinLockAcquire(&s->mutex);
	s->state = SLOT_PENDING;
	s->partition = e->partition;
	s->xid = publishing_xid;
	s->run_id = e->run_id;
	s->seq = e->seq;
	SpinLockRelease(&s->mutex);
}

/*
 * After commit: the slot, if still ours, marked committed (publish() never
 * leaves a slot pending without a transaction id).
 */
static void
confirm(Appended *e)
{
	SeqSlot    *s = slot_of(&e->run_id);

	SpinLockAcquire(&s->mutex);
	if (s->state == SLOT_PENDING && s->xid == publishing_xid &&
		memcmp(&s->run_id, &e->run_id, sizeof(pg_uuid_t)) == 0)
		s->state = SLOT_COMMITTED;
	SpinLockRelease(&s->mutex);
}

static void
for_each_run(void (*fn) (Appended *))
{
	if (first_used)
		fn(&first);
	if (others != NULL)
	{
		HASH_SEQ_STATUS status;
		Appended   *e;

		hash_seq_init(&status, others);
		while ((e = hash_seq_search(&status)) != NULL)
			fn(e);
	}
}

/*
 * Before commit: each run's last number into its slot, pending (runs whose
 * number this transaction lost track of are forgotten).  At commit: the
 * slots still ours marked committed.  At abort or prepare: forgotten.
 */
static void
seq_cache_xact_callback(XactEvent event, void *arg)
{
	if (!first_used || slots == NULL)
	{
		first_used = false;
		others = NULL;
		return;
	}
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			publishing_xid = GetTopTransactionIdIfAny();
			for_each_run(publish);
			return;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for_each_run(confirm);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			for_each_run(forget);
			break;
		default:
			return;
	}
	/* the table's memory goes with TopTransactionContext */
	first_used = false;
	others = NULL;
	publishing_xid = InvalidTransactionId;
}

/*
 * A subtransaction that rolls back takes its appends, and its children's,
 * with it: every subtransaction begun after it started is one of its
 * children, so what was appended at or after its id is gone.
 */
static SubTransactionId aborted_subid;

static void
invalidate_if_aborted(Appended *e)
{
	if (e->subid >= aborted_subid)
		e->valid = false;
}

static void
seq_cache_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB || !first_used)
		return;
	aborted_subid = mySubid;
	for_each_run(invalidate_if_aborted);
}

/*
 * This transaction's entry of a run, made when missing (*made: it was, so
 * the transaction has not appended to the run yet).
 */
static Appended *
entry_of(const pg_uuid_t *run_id, bool *made)
{
	Appended   *e;
	bool		found;

	*made = false;
	if (first_used && memcmp(&first.run_id, run_id, sizeof(pg_uuid_t)) == 0)
		return &first;
	if (others != NULL)
	{
		e = hash_search(others, run_id, HASH_ENTER, &found);
		if (found)
			return e;
	}
	else if (!first_used)
	{
		if (!callbacks_registered)
		{
			RegisterXactCallback(seq_cache_xact_callback, NULL);
			RegisterSubXactCallback(seq_cache_subxact_callback, NULL);
			callbacks_registered = true;
		}
		first_used = true;
		e = &first;
		e->run_id = *run_id;
	}
	else
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(Appended);
		ctl.hcxt = TopTransactionContext;
		others = hash_create("orchestrator appended runs", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		e = hash_search(others, run_id, HASH_ENTER, NULL);
	}
	e->partition = InvalidOid;
	e->seq = 0;
	e->valid = false;
	e->subid = GetCurrentSubTransactionId();
	*made = true;
	return e;
}

/*
 * seq_cache_begin
 *		This transaction is about to append to a run whose row it has
 *		locked: *last is the run's last sequence number if known without
 *		reading the history (what this transaction appended last, else the
 *		run's committed slot); returns false otherwise.  Should the append
 *		fail, the number is forgotten with the subtransaction, and the slot
 *		with the transaction.  seq_cache_end() follows the append.
 */
bool
seq_cache_begin(Oid partition, Datum run_id, int64 *last)
{
	const pg_uuid_t *id = DatumGetUUIDP(run_id);
	bool		made;
	Appended   *e = entry_of(id, &made);
	bool		known = e->valid;

	/*
	 * The slot only for a run this transaction has not appended to: once
	 * it has, the slot is older than its own appends (a number it lost
	 * track of, in a subtransaction rolled back, is read from the history).
	 */
	if (known)
		*last = e->seq;
	else if (made && slots != NULL)
	{
		SeqSlot    *s = slot_of(id);

		SpinLockAcquire(&s->mutex);
		known = s->state == SLOT_COMMITTED && s->partition == partition &&
			memcmp(&s->run_id, id, sizeof(pg_uuid_t)) == 0;
		if (known)
			*last = s->seq;
		SpinLockRelease(&s->mutex);
	}
	e->valid = false;
	e->subid = GetCurrentSubTransactionId();
	e->partition = partition;
	return known;
}

/*
 * seq_cache_end
 *		This transaction appended to the run up to "last" (0: it created the
 *		run, which has no event yet).
 */
void
seq_cache_end(Oid partition, Datum run_id, int64 last)
{
	bool		made;
	Appended   *e = entry_of(DatumGetUUIDP(run_id), &made);

	e->partition = partition;
	e->seq = last;
	e->subid = GetCurrentSubTransactionId();
	e->valid = true;
}
