/*-------------------------------------------------------------------------
 *
 * quota.c
 *	  Hard per-owner limits: payload sizes, events per run, active runs,
 *	  pending webhook deliveries, live session keys.
 *
 * A limit belongs to the role that owns the run (the workflow's owner): a row
 * of orchestrator.owner_limits, set by an administrator with
 * set_owner_limits(), or else the setting orchestrator.max_<name>; 0 is no
 * limit.  Going over one raises 54000 (program_limit_exceeded) before
 * anything is written, naming the limit and its value.
 *
 * The checks are cheap where they run on every call: a payload's size is its
 * datum's, and each backend keeps the rows it looked up, dropped when
 * set_owner_limits() commits anywhere (a relcache invalidation of the
 * table).  The counts (active runs, pending deliveries) are made only for an
 * owner with such a limit; active runs are counted under a lock per owner
 * and with the latest snapshot, so concurrent starts, in any isolation
 * level, cannot go over together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "guc.h"
#include "lock_space.h"
#include "quota.h"
#include "relcache_watch.h"

typedef enum QuotaKind
{
	Q_INPUT = 0,
	Q_RESULT,
	Q_SIGNAL,
	Q_EVENTS,
	Q_ACTIVE_RUNS,
	Q_PENDING_WEBHOOKS,
	Q_SESSIONS,
	Q_COUNT
} QuotaKind;

/* Column of orchestrator.owner_limits and key of set_owner_limits(). */
static const char *const quota_names[Q_COUNT] = {
	"max_input_bytes", "max_result_bytes", "max_signal_bytes",
	"max_events_per_run", "max_active_runs", "max_pending_webhooks", "max_sessions"
};

/* The setting that gives each one's default. */
static const char *const quota_settings[Q_COUNT] = {
	"orchestrator.max_input_size", "orchestrator.max_result_size", "orchestrator.max_signal_size",
	"orchestrator.max_events_per_run", "orchestrator.max_active_runs_per_owner", "orchestrator.max_pending_webhooks",
	"orchestrator.max_sessions_per_owner"
};

typedef struct OwnerLimits
{
	Oid			owner;			/* hash key */
	bool		set[Q_COUNT];	/* a value in the owner's row */
	int64		value[Q_COUNT];
} OwnerLimits;

static HTAB *owner_cache = NULL;
static Oid	owner_cache_relid = InvalidOid;	/* orchestrator.owner_limits */
static bool callback_registered = false;

PG_FUNCTION_INFO_V1(orchestrator_owner_limit);
PG_FUNCTION_INFO_V1(orchestrator_check_signal);
PG_FUNCTION_INFO_V1(orchestrator_owner_limits_changed);

/*
 * set_owner_limits() committed somewhere (or every relation is invalidated:
 * InvalidOid): forget every row.  The cache is made again when next used.
 */
static void
owner_limits_invalidated(Datum arg, Oid relid)
{
	if (owner_cache != NULL && (relid == InvalidOid || relid == owner_cache_relid))
	{
		hash_destroy(owner_cache);
		owner_cache = NULL;
	}
}

/* The cache of rows, made when missing (and emptied when large). */
static void
owner_cache_ensure(void)
{
	HASHCTL		ctl;

	if (owner_cache != NULL && hash_get_num_entries(owner_cache) <= 4096)
		return;
	if (owner_cache != NULL)
		hash_destroy(owner_cache);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(OwnerLimits);
	ctl.hcxt = TopMemoryContext;
	owner_cache = hash_create("orchestrator owner limits", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static Oid
owner_limits_relid(void)
{
	return get_relname_relid("owner_limits", get_namespace_oid("orchestrator", false));
}

/* The default of limit "k" in its unit (bytes for sizes). */
static int64
quota_default(QuotaKind k)
{
	switch (k)
	{
		case Q_INPUT:
			return (int64) orchestrator_max_input_size * 1024;
		case Q_RESULT:
			return (int64) orchestrator_max_result_size * 1024;
		case Q_SIGNAL:
			return (int64) orchestrator_max_signal_size * 1024;
		case Q_EVENTS:
			return orchestrator_max_events_per_run;
		case Q_ACTIVE_RUNS:
			return orchestrator_max_owner_active_runs;
		case Q_PENDING_WEBHOOKS:
			return orchestrator_max_pending_webhooks;
		case Q_SESSIONS:
			return orchestrator_max_sessions_per_owner;
		default:
			return 0;
	}
}

/* The owner's row, read once per backend until set_owner_limits() commits. */
static OwnerLimits *
owner_limits(Oid owner)
{
	OwnerLimits *entry;
	bool		found;
	Datum		arg = ObjectIdGetDatum(owner);
	Oid			argtype = REGROLEOID;

	if (!callback_registered)
	{
		orchestrator_watch_relcache(owner_limits_invalidated);
		callback_registered = true;
	}
	owner_cache_ensure();
	entry = hash_search(owner_cache, &owner, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	/* read before entering: an error leaves no half-made entry */
	{
		OwnerLimits row;

		memset(&row, 0, sizeof(row));
		row.owner = owner;
		SPI_connect();
		if (SPI_execute_with_args("SELECT max_input_bytes, max_result_bytes, max_signal_bytes, "
								  "max_events_per_run, max_active_runs, max_pending_webhooks, max_sessions "
								  "FROM orchestrator.owner_limits WHERE owner = $1",
								  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read orchestrator.owner_limits");
		if (SPI_processed == 1)
		{
			for (int k = 0; k < Q_COUNT; k++)
			{
				bool		isnull;
				Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, k + 1, &isnull);

				row.set[k] = !isnull;
				row.value[k] = isnull ? 0 : DatumGetInt64(d);
			}
		}
		SPI_finish();
		/* the query may have taken invalidations that dropped the cache */
		owner_cache_relid = owner_limits_relid();
		owner_cache_ensure();
		entry = hash_search(owner_cache, &owner, HASH_ENTER, &found);
		*entry = row;
	}
	return entry;
}

/* The limit "k" of "owner" (0: none). */
static int64
quota_limit(Oid owner, QuotaKind k)
{
	OwnerLimits *l = owner_limits(owner);

	return l->set[k] ? l->value[k] : quota_default(k);
}

static const char *
role_name(Oid owner)
{
	const char *name = GetUserNameFromId(owner, true);

	return name != NULL ? name : "?";
}

/* How a limit is raised, for an errhint. */
static char *
raise_hint(Oid owner, QuotaKind k)
{
	return psprintf("An administrator can raise it for the role: SELECT orchestrator.set_owner_limits(%s, '{\"%s\": ...}'); "
					"the default of all roles is the setting %s.  0 is no limit.",
					quote_literal_cstr(role_name(owner)), quota_names[k], quota_settings[k]);
}

/* Bytes of a jsonb datum in its binary form, uncompressed (no serialisation). */
static int64
payload_bytes(Datum d)
{
	return (int64) toast_raw_datum_size(d);
}

static void
check_payload(Oid owner, QuotaKind k, const char *what, Datum payload, bool isnull)
{
	int64		limit;
	int64		bytes;

	if (isnull)
		return;
	limit = quota_limit(owner, k);
	if (limit <= 0)
		return;
	bytes = payload_bytes(payload);
	if (bytes > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large for role \"%s\"", what, role_name(owner)),
				 errdetail("It is %lld bytes; %s of role \"%s\" is %lld.",
						   (long long) bytes, quota_names[k], role_name(owner), (long long) limit),
				 errhint("%s", raise_hint(owner, k))));
}

/* The counts, prepared once per backend (kept; revalidated by the plan cache). */
typedef enum QuotaCount
{
	COUNT_ACTIVE_RUNS,
	COUNT_PENDING_WEBHOOKS,
	COUNT_RUN_EVENTS,
	COUNT_SESSION_KEY,
	COUNT_SESSIONS,
	COUNT_KINDS
} QuotaCount;

static const struct
{
	const char *sql;
	Oid			argtype;
	Oid			argtype2;		/* of $2, when not the limit */
}			count_queries[COUNT_KINDS] = {
	[COUNT_ACTIVE_RUNS] = {
		"SELECT count(*) FROM (SELECT 1 FROM orchestrator.workflow_runs r "
		"WHERE r.owner = $1 AND r.finished_at IS NULL LIMIT $2) s", REGROLEOID},
	[COUNT_PENDING_WEBHOOKS] = {
		"SELECT count(*) FROM (SELECT 1 FROM orchestrator.webhook_outbox o "
		"JOIN orchestrator.workflow_runs r ON r.id = o.run_id "
		"WHERE o.status IN ('pending', 'delivering') AND r.owner = $1 LIMIT $2) s", REGROLEOID},
	[COUNT_RUN_EVENTS] = {
		"SELECT coalesce(max(e.seq), 0) FROM orchestrator.workflow_events e "
		"WHERE e.run_id = $1 AND $2 > 0", UUIDOID},
	/* 1 when the role's key $2 is live (a primary key probe) */
	[COUNT_SESSION_KEY] = {
		"SELECT count(*) FROM orchestrator.session_store s WHERE s.owner = $1 AND s.key = $2 "
		"AND (s.expires_at IS NULL OR s.expires_at > now())", REGROLEOID, TEXTOID},
	[COUNT_SESSIONS] = {
		"SELECT count(*) FROM (SELECT 1 FROM orchestrator.session_store s WHERE s.owner = $1 "
		"AND (s.expires_at IS NULL OR s.expires_at > now()) LIMIT $2) c", REGROLEOID},
};

static SPIPlanPtr count_plans[COUNT_KINDS];

static int64 count_with(QuotaCount kind, Datum arg, Datum arg2);

/*
 * count_at_most
 *		Count "kind" ($1 the owner or run, $2 a limit) with the latest
 *		snapshot: what concurrent transactions committed counts.
 */
static int64
count_at_most(QuotaCount kind, Datum arg, int64 limit)
{
	return count_with(kind, arg, Int64GetDatum(limit));
}

/* count_at_most() with any second argument. */
static int64
count_with(QuotaCount kind, Datum arg, Datum arg2)
{
	Oid			types[2] = {count_queries[kind].argtype,
		OidIsValid(count_queries[kind].argtype2) ? count_queries[kind].argtype2 : INT8OID};
	Datum		values[2] = {arg, arg2};
	int64		n = 0;
	bool		isnull;

	SPI_connect();
	if (count_plans[kind] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(count_queries[kind].sql, 2, types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare an orchestrator quota count: %s", SPI_result_code_string(SPI_result));
		count_plans[kind] = plan;
	}
	if (SPI_execute_snapshot(count_plans[kind], values, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not run an orchestrator quota count");
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		n = isnull ? 0 : DatumGetInt64(d);
	}
	SPI_finish();
	return n;
}

/*
 * lock_role_counts
 *		Take, until commit, the lock per role under which its counts of one
 *		kind ("space", lock_space.h) are made and acted on, so that two
 *		transactions of the role cannot both take the last place.
 */
static void
lock_role_counts(Oid role, uint16 space)
{
	LOCKTAG		tag;

	/* the extension's own lock space (lock_space.h): "orch", the role */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0x6f726368, (uint32) role, space);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static void
check_pending_webhooks(Oid owner)
{
	int64		limit = quota_limit(owner, Q_PENDING_WEBHOOKS);
	int64		n;

	if (limit <= 0)
		return;
	n = count_at_most(COUNT_PENDING_WEBHOOKS, ObjectIdGetDatum(owner), limit);
	if (n >= limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" has too many webhook deliveries pending", role_name(owner)),
				 errdetail("%lld deliveries of its runs' events are pending; %s of role \"%s\" is %lld.",
						   (long long) n, quota_names[Q_PENDING_WEBHOOKS], role_name(owner), (long long) limit),
				 errhint("Wait for the deliveries (orchestrator.webhook_deliveries).  %s",
						 raise_hint(owner, Q_PENDING_WEBHOOKS))));
}

/*
 * orchestrator_quota_check_start
 *		Before a run of "owner" is written (start.c): its input's size, the
 *		pending webhook deliveries of its runs, its active runs.  The last
 *		takes a lock per owner held until commit, so that starts of one owner
 *		with an active-runs limit are counted one after the other.
 */
void
orchestrator_quota_check_start(Oid owner, Datum input, bool input_isnull)
{
	int64		limit;

	check_payload(owner, Q_INPUT, "the input", input, input_isnull);
	check_pending_webhooks(owner);

	limit = quota_limit(owner, Q_ACTIVE_RUNS);
	if (limit > 0)
	{
		int64		n;

		lock_role_counts(owner, LOCK_SPACE_OWNER_STARTS);
		n = count_at_most(COUNT_ACTIVE_RUNS, ObjectIdGetDatum(owner), limit);
		if (n >= limit)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("role \"%s\" has too many active runs", role_name(owner)),
					 errdetail("%lld runs of workflows it owns are pending or running; %s of role \"%s\" is %lld.",
							   (long long) n, quota_names[Q_ACTIVE_RUNS], role_name(owner), (long long) limit),
					 errhint("Wait for runs to finish or cancel some.  %s", raise_hint(owner, Q_ACTIVE_RUNS))));
	}
}

/*
 * orchestrator._check_signal(run_id uuid, owner regrole, payload jsonb)
 *		Before a signal is written to a run (locked) of "owner": its payload's
 *		size, the run's events so far, the pending webhook deliveries.
 */
Datum
orchestrator_check_signal(PG_FUNCTION_ARGS)
{
	Datum		run_id = PG_GETARG_DATUM(0);
	Oid			owner = PG_GETARG_OID(1);

	check_payload(owner, Q_SIGNAL, "the signal's payload", PG_GETARG_DATUM(2), PG_ARGISNULL(2));
	orchestrator_quota_check_events(owner, run_id);
	check_pending_webhooks(owner);
	PG_RETURN_VOID();
}

/*
 * orchestrator_quota_check_events
 *		Before an event that an outside caller asks for is appended to a run
 *		(locked) of "owner" (a signal, a worker's progress): the run's events
 *		so far.
 */
void
orchestrator_quota_check_events(Oid owner, Datum run_id)
{
	int64		limit = quota_limit(owner, Q_EVENTS);

	if (limit > 0)
	{
		int64		n = count_at_most(COUNT_RUN_EVENTS, run_id, limit);

		if (n >= limit)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the run has too many events for role \"%s\"", role_name(owner)),
					 errdetail("It has %lld events; %s of role \"%s\" is %lld.",
							   (long long) n, quota_names[Q_EVENTS], role_name(owner), (long long) limit),
					 errhint("%s", raise_hint(owner, Q_EVENTS))));
	}
}

/*
 * orchestrator_quota_check_worker_payload
 *		Before what an external worker reports of an attempt is recorded for
 *		a run of "owner" (heartbeat_step's progress, fail_step's error): its
 *		size, under the limit of a step's result ("what" names it).
 */
void
orchestrator_quota_check_worker_payload(Oid owner, const char *what, Datum payload, bool isnull)
{
	check_payload(owner, Q_RESULT, what, payload, isnull);
}

/*
 * orchestrator_quota_check_result
 *		Before a step's result is recorded for a run of "owner" (an external
 *		worker's complete_step, a sql step's row, a signal that completes a
 *		wait step): its size.  In a dispatcher the error is the attempt's.
 */
void
orchestrator_quota_check_result(Oid owner, Datum result, bool isnull)
{
	check_payload(owner, Q_RESULT, "the step's result", result, isnull);
}

/*
 * orchestrator_quota_check_session
 *		Before "role" writes a session (session_create(), session_set()):
 *		the value is held to the role's max_input_bytes, as a run's input
 *		(sessions had no bound: one role could write values of up to 1 GB
 *		into the table all roles share), and a new key ("key" not (Datum) 0,
 *		and not live) to its max_sessions, counted under a lock per role held
 *		until commit, so that concurrent writers of new keys cannot go over
 *		together.  A write of a live key is never refused for the count.
 */
void
orchestrator_quota_check_session(Oid role, Datum key, Datum value, bool isnull)
{
	int64		limit;
	int64		n;

	check_payload(role, Q_INPUT, "the session's value", value, isnull);
	if (key == (Datum) 0)
		return;
	limit = quota_limit(role, Q_SESSIONS);
	if (limit <= 0 || count_with(COUNT_SESSION_KEY, ObjectIdGetDatum(role), key) > 0)
		return;
	lock_role_counts(role, LOCK_SPACE_OWNER_SESSIONS);
	n = count_at_most(COUNT_SESSIONS, ObjectIdGetDatum(role), limit);
	if (n >= limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" has too many sessions", role_name(role)),
				 errdetail("It has %lld live session keys; %s of role \"%s\" is %lld.",
						   (long long) n, quota_names[Q_SESSIONS], role_name(role), (long long) limit),
				 errhint("Delete keys, or give them a ttl.  %s", raise_hint(role, Q_SESSIONS))));
}

/*
 * orchestrator._check_session_write(role regrole, key text, value jsonb):
 * the same, for session_create() (PL/pgSQL).
 */
PG_FUNCTION_INFO_V1(orchestrator_check_session_write);

Datum
orchestrator_check_session_write(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		orchestrator_quota_check_session(PG_GETARG_OID(0), PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
										 PG_GETARG_DATUM(2), PG_ARGISNULL(2));
	PG_RETURN_VOID();
}

/*
 * orchestrator._owner_limit(owner regrole, name text): the limit "name" of
 * a role as it applies (its row, else the default; 0: none).
 */
Datum
orchestrator_owner_limit(PG_FUNCTION_ARGS)
{
	Oid			owner = PG_GETARG_OID(0);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));

	for (int k = 0; k < Q_COUNT; k++)
		if (strcmp(name, quota_names[k]) == 0)
			PG_RETURN_INT64(quota_limit(owner, (QuotaKind) k));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown owner limit \"%s\"", name)));
	PG_RETURN_NULL();
}

/*
 * orchestrator._owner_limits_changed(): after orchestrator.owner_limits
 * changed, every backend forgets the rows it keeps when this commits.
 */
Datum
orchestrator_owner_limits_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(owner_limits_relid());
	PG_RETURN_VOID();
}
