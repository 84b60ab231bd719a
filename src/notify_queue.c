/*-------------------------------------------------------------------------
 *
 * notify_queue.c
 *	  The server's notification queue as commands/async.c keeps it: how
 *	  full it is, who listens and who holds it back.
 *
 * The relay (relay.c) asks two things of it: whether any backend of this
 * database listens (nothing is copied or sent otherwise), and whether the
 * queue has room below orchestrator.notify_queue_max_usage (a full queue
 * fails every NOTIFY at commit, so nothing is sent above it).  health()
 * names the listener that holds the queue back (_notify_listeners()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/slru.h"
#include "commands/async.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "guc.h"
#include "notify_queue.h"

PG_FUNCTION_INFO_V1(orchestrator_notify_listeners);
PG_FUNCTION_INFO_V1(orchestrator_notify_queue_usage);

/*
 * The server's record of the notification queue: where it begins and ends
 * and how far each listening backend has read.  PostgreSQL keeps it private
 * to commands/async.c; this is its layout in PostgreSQL 14 to 16 (stable
 * within a major release), found by its shared-memory name when shared memory is set up.  A size
 * that differs from the entry's (another layout) leaves it unread: the
 * queue's usage then comes from pg_notification_queue_usage() and no
 * listener is named.
 */
typedef struct NotifyQueuePos
{
	int			page;
	int			offset;
} NotifyQueuePos;

typedef struct NotifyListener
{
	int32		pid;			/* InvalidPid: this slot does not listen */
	Oid			dboid;
	BackendId	next;			/* next listening slot */
	NotifyQueuePos pos;			/* next entry it will read */
} NotifyListener;

typedef struct NotifyQueueControl
{
	NotifyQueuePos head;
	NotifyQueuePos tail;
	int			stop_page;
	BackendId	first;			/* first listening slot */
	TimestampTz last_fill_warning;
	NotifyListener slots[FLEXIBLE_ARRAY_MEMBER];	/* [1..MaxBackends] */
} NotifyQueueControl;

/* Pages of the queue before it wraps (async.c's QUEUE_MAX_PAGE + 1). */
#define NOTIFY_QUEUE_PAGES ((int64) SLRU_PAGES_PER_SEGMENT * 0x10000)

/* Bytes of the queue listener "l" has still to read. */
static int64
notify_listener_behind(NotifyQueueControl *q, NotifyListener *l)
{
	int64		pages = ((int64) q->head.page - l->pos.page + NOTIFY_QUEUE_PAGES) % NOTIFY_QUEUE_PAGES;

	return pages * BLCKSZ + q->head.offset - l->pos.offset;
}

/*
 * notify_queue_find
 *		In the postmaster, after the server's own shared memory is set up:
 *		the server's record of the notification queue, or NULL.
 */
static NotifyQueueControl *
notify_queue_find(void)
{
#if PG_VERSION_NUM >= 140000 && PG_VERSION_NUM < 170000
	NotifyQueueControl *volatile q = NULL;
	Size		size = add_size(offsetof(NotifyQueueControl, slots),
								mul_size(MaxBackends + 1, sizeof(NotifyListener)));
	MemoryContext context = CurrentMemoryContext;

	PG_TRY();
	{
		bool		found;
		NotifyQueueControl *c = ShmemInitStruct("Async Queue Control", size, &found);

		if (found)
			q = c;
	}
	PG_CATCH();
	{
		/* "ShmemIndex entry size is wrong": a layout we do not know */
		MemoryContextSwitchTo(context);
		FlushErrorState();
		q = NULL;
	}
	PG_END_TRY();
	return q;
#else
	return NULL;
#endif
}

/*
 * notify_queue_behind
 *		Bytes of the notification queue the listener furthest behind has
 *		still to read (the real extent of the queue: the server moves its
 *		tail only now and then, when a notifying transaction crosses some
 *		pages), and through "pid" that listener.
 */
static int64
notify_queue_behind(NotifyQueueControl *q, int32 *pid)
{
	int64		most = 0;

	*pid = 0;
	LWLockAcquire(NotifyQueueLock, LW_SHARED);
	for (BackendId i = q->first; i > 0 && i <= MaxBackends; i = q->slots[i].next)
	{
		int64		b = notify_listener_behind(q, &q->slots[i]);

		if (q->slots[i].pid != InvalidPid && b > most)
		{
			most = b;
			*pid = q->slots[i].pid;
		}
	}
	LWLockRelease(NotifyQueueLock);
	return most;
}

/* The server's record, found when shared memory was set up (NULL: unknown). */
static NotifyQueueControl *queue = NULL;

/*
 * notify_queue_attach
 *		From the shared memory start-up hook, after the server's own shared
 *		memory is set up (again after a crash restart).
 */
void
notify_queue_attach(void)
{
	queue = notify_queue_find();
}

/*
 * notify_queue_listened_here
 *		Does a backend LISTEN in this database?  (True when the server's
 *		record cannot be read.)
 *
 * The relay asks before a commit (nobody listens: nothing is held) and again
 * at the commit, after the transaction became visible, which is the answer
 * that counts: a session whose LISTEN registers later reads the events the
 * transaction appended when it catches up with events(run_id, after_seq)
 * after its LISTEN, so nothing is lost by not sending them.  A session that registered before is seen here
 * (both under NotifyQueueLock).  So when nobody listens, the notifications
 * of a commit are neither copied, nor sent, nor is the relay woken: most
 * commits of an engine without a LISTENing client cost nothing here.
 */
bool
notify_queue_listened_here(void)
{
	NotifyQueueControl *q = queue;
	bool		found = false;

	if (q == NULL)
		return true;
	LWLockAcquire(NotifyQueueLock, LW_SHARED);
	for (BackendId i = q->first; i > 0 && i <= MaxBackends && !found; i = q->slots[i].next)
		found = q->slots[i].pid != InvalidPid && q->slots[i].dboid == MyDatabaseId;
	LWLockRelease(NotifyQueueLock);
	return found;
}

/*
 * notify_queue_usage
 *		How full the server's notification queue is, as
 *		pg_notification_queue_usage() counts (1: the half of its pages it
 *		can use), but up to the listener furthest behind rather than to the
 *		tail the server last recorded.
 */
double
notify_queue_usage(void)
{
	int32		pid;

	if (queue == NULL)
		return DatumGetFloat8(DirectFunctionCall1(pg_notification_queue_usage, (Datum) 0));
	return (double) notify_queue_behind(queue, &pid) /
		((double) NOTIFY_QUEUE_PAGES / 2 * BLCKSZ);
}

/*
 * notify_queue_has_room
 *		Is the server's notification queue below
 *		orchestrator.notify_queue_max_usage?
 */
bool
notify_queue_has_room(void)
{
	return notify_queue_usage() * 100.0 < (double) orchestrator_notify_queue_max_usage;
}

/*
 * orchestrator._notify_listeners(): every backend that listens (in any
 * database), with how many bytes of the notification queue it has still to
 * read; the one with the most holds the queue back (its position is the
 * queue's tail).  No rows when the server's record cannot be read.
 */
Datum
orchestrator_notify_listeners(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NotifyQueueControl *q;

	InitMaterializedSRF(fcinfo, 0);
	q = queue;
	if (q == NULL)
		PG_RETURN_VOID();

	LWLockAcquire(NotifyQueueLock, LW_SHARED);
	for (BackendId i = q->first; i > 0 && i <= MaxBackends; i = q->slots[i].next)
	{
		NotifyListener *l = &q->slots[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (l->pid == InvalidPid)
			continue;
		values[0] = Int32GetDatum(l->pid);
		values[1] = ObjectIdGetDatum(l->dboid);
		values[2] = Int64GetDatum(notify_listener_behind(q, l));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(NotifyQueueLock);
	PG_RETURN_VOID();
}

/*
 * orchestrator._notify_queue_usage(): notify_queue_usage(), what the relay
 * compares with orchestrator.notify_queue_max_usage.
 */
Datum
orchestrator_notify_queue_usage(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(notify_queue_usage());
}
