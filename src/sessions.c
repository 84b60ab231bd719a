/*-------------------------------------------------------------------------
 *
 * sessions.c
 *	  The session store's announcements on a channel private to the owner.
 *
 * Every change of a session (set, delete, unlock) is announced, after
 * commit and through the relay, on a channel of its owner role:
 * "orchestrator_session_<32 hex digits>", a keyed hash of (database, role)
 * that orchestrator.session_channel() tells the role itself and nobody
 * else (relay.c).  The payload is {"op", "key", "version"}, never the value.
 *
 * The store (table, view and the other functions) is in
 * sql/src/79_sessions.sql.  The two calls that carry the load,
 * session_get() and session_set(), are here.  session_get() probes the
 * primary key itself, without a statement (session_lookup()).
 * session_set() is one statement prepared once per backend and run through
 * SPI, without PL/pgSQL and without a per-call SET search_path (every name
 * in the statements is schema-qualified, operators too, so the caller's
 * search_path cannot change what they mean).  Their refusals are raised by the PL/pgSQL
 * functions _session_check() and _session_refuse(), called only when
 * something is wrong, so each message is written once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "caller.h"
#include "quota.h"
#include "relay.h"
#include "relcache_watch.h"

#define SESSION_CHANNEL_PREFIX "orchestrator_session"

/* Longest key, in bytes (as in _session_check()). */
#define SESSION_KEY_MAX 512

PG_FUNCTION_INFO_V1(orchestrator_session_notify);
PG_FUNCTION_INFO_V1(orchestrator_session_channel);
PG_FUNCTION_INFO_V1(orchestrator_session_get);
PG_FUNCTION_INFO_V1(orchestrator_session_set);

/* $1 owner, $2 key, $3 value, $4 ttl, $5 expected_version, $6 lock_token */
static Oid	session_argtypes[6] = {REGROLEOID, TEXTOID, JSONBOID, INTERVALOID, INT8OID, UUIDOID};

#define LIVE(s) "(" s ".expires_at IS NULL OR " s ".expires_at OPERATOR(pg_catalog.>) pg_catalog.now())"
#define LOCKED(s) "coalesce(" s ".lock_expires_at OPERATOR(pg_catalog.>) pg_catalog.now(), false)"
#define DEAD(s) s ".expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
#define THIS_KEY(s) s ".owner OPERATOR(pg_catalog.=) $1 AND " s ".key OPERATOR(pg_catalog.=) $2"

/* A new key, or a live one whose lock is free or lapsed (ttl NULL keeps its expiry). */
static const char *const upsert_sql =
"INSERT INTO orchestrator.session_store AS s (owner, key, value, version, expires_at, updated_at) "
"VALUES ($1, $2, $3, 1, pg_catalog.now() OPERATOR(pg_catalog.+) $4, pg_catalog.now()) "
"ON CONFLICT ON CONSTRAINT session_store_pkey DO UPDATE SET value = excluded.value, "
" version = CASE WHEN " DEAD("s") " THEN 1 ELSE s.version OPERATOR(pg_catalog.+) 1 END, "
" expires_at = CASE WHEN $4 IS NOT NULL THEN excluded.expires_at WHEN " DEAD("s") " THEN NULL ELSE s.expires_at END, "
" lock_token = CASE WHEN " DEAD("s") " THEN NULL ELSE s.lock_token END, "
" lock_expires_at = CASE WHEN " DEAD("s") " THEN NULL ELSE s.lock_expires_at END, "
" updated_at = excluded.updated_at "
"WHERE " DEAD("s") " OR NOT " LOCKED("s") " "
"RETURNING s.version";

/* A new key only (expected_version 0): an expired one is gone. */
static const char *const insert_sql =
"INSERT INTO orchestrator.session_store AS s (owner, key, value, version, expires_at, updated_at) "
"VALUES ($1, $2, $3, 1, pg_catalog.now() OPERATOR(pg_catalog.+) $4, pg_catalog.now()) "
"ON CONFLICT ON CONSTRAINT session_store_pkey DO UPDATE SET value = excluded.value, version = 1, "
" expires_at = excluded.expires_at, lock_token = NULL, lock_expires_at = NULL, updated_at = excluded.updated_at "
"WHERE " DEAD("s") " "
"RETURNING s.version";

/* A live key at the expected version (if given), locked under $6 (if given) or not locked. */
static const char *const update_sql =
"UPDATE orchestrator.session_store s SET value = $3, version = s.version OPERATOR(pg_catalog.+) 1, "
" expires_at = CASE WHEN $4 IS NULL THEN s.expires_at ELSE pg_catalog.now() OPERATOR(pg_catalog.+) $4 END, "
" updated_at = pg_catalog.now() "
"WHERE " THIS_KEY("s") " AND " LIVE("s") " "
" AND ($5 IS NULL OR s.version OPERATOR(pg_catalog.=) $5) "
" AND CASE WHEN $6 IS NULL THEN NOT " LOCKED("s") " "
"      ELSE s.lock_token OPERATOR(pg_catalog.=) $6 AND s.lock_expires_at OPERATOR(pg_catalog.>) pg_catalog.now() END "
"RETURNING s.version";

static void session_announce(Oid owner, const char *op, const char *key, int64 version);

static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr update_plan = NULL;

/* A statement prepared once per backend. */
static SPIPlanPtr
session_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for session statement: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*plan = p;
	}
	return *plan;
}

/*
 * session_check
 *		The checks of session_get() (nargs 1) and session_set() (nargs 4:
 *		key, value, ttl, expected_version).  When one fails, the PL/pgSQL
 *		function that holds the messages raises the error.
 */
static void
session_check(FunctionCallInfo fcinfo, int nargs)
{
	bool		bad = PG_ARGISNULL(0);

	if (!bad)
	{
		int			len = VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0));

		bad = len == 0 || len > SESSION_KEY_MAX;
	}
	if (nargs > 1)
	{
		Interval	zero;

		memset(&zero, 0, sizeof(zero));
		bad = bad || PG_ARGISNULL(1) ||
			(!PG_ARGISNULL(2) &&
			 DatumGetBool(DirectFunctionCall2(interval_le, PG_GETARG_DATUM(2),
											  IntervalPGetDatum(&zero)))) ||
			(!PG_ARGISNULL(3) && PG_GETARG_INT64(3) < 0);
	}
	if (bad)
	{
		Oid			types[4] = {TEXTOID, JSONBOID, INTERVALOID, INT8OID};
		Datum		values[4];
		char		nulls[4];

		for (int i = 0; i < nargs; i++)
		{
			values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
			nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		}
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute_with_args(nargs == 1 ? "SELECT orchestrator._session_check($1)"
							  : "SELECT orchestrator._session_set_check($1, $2, $3, $4)",
							  nargs, types, values, nulls, true, 0);
		elog(ERROR, "the session checks accepted what session_check() refused");
	}
}

/* The first column of the only row SPI returned, as a Datum in the caller's context. */
static Datum
session_result(bool *isnull)
{
	Datum		d;

	*isnull = true;
	if (SPI_processed == 0)
		return (Datum) 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	if (*isnull)
		return (Datum) 0;
	return SPI_datumTransfer(d, TupleDescAttr(SPI_tuptable->tupdesc, 0)->attbyval,
							 TupleDescAttr(SPI_tuptable->tupdesc, 0)->attlen);
}

/*
 * The store's table, its primary key and the columns session_get() reads,
 * looked up once per backend and forgotten on any relcache invalidation of
 * either relation (the extension dropped and created again, an upgrade).
 */
static Oid	store_relid = InvalidOid;
static Oid	store_pkey = InvalidOid;
static AttrNumber store_value_att;
static AttrNumber store_expires_att;
static bool store_callback_registered = false;

static void
store_invalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == store_relid || relid == store_pkey)
		store_relid = InvalidOid;
}

/* Look up orchestrator.session_store, its key (owner, key) and two columns by name. */
static void
store_lookup(void)
{
	Oid			nsp = get_namespace_oid("orchestrator", false);
	Oid			relid = get_relname_relid("session_store", nsp);
	Oid			pkey = get_relname_relid("session_store_pkey", nsp);
	AttrNumber	owner_att,
				key_att;
	HeapTuple	tuple;
	bool		ok;

	if (!store_callback_registered)
	{
		orchestrator_watch_relcache(store_invalidated);
		store_callback_registered = true;
	}
	if (!OidIsValid(relid) || !OidIsValid(pkey))
		elog(ERROR, "orchestrator.session_store or its primary key is missing");
	owner_att = get_attnum(relid, "owner");
	key_att = get_attnum(relid, "key");
	store_value_att = get_attnum(relid, "value");
	store_expires_att = get_attnum(relid, "expires_at");
	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkey));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for index %u", pkey);
	{
		Form_pg_index idx = (Form_pg_index) GETSTRUCT(tuple);

		ok = idx->indrelid == relid && idx->indisunique && idx->indnkeyatts == 2 &&
			idx->indkey.values[0] == owner_att && idx->indkey.values[1] == key_att &&
			store_value_att != InvalidAttrNumber && store_expires_att != InvalidAttrNumber;
	}
	ReleaseSysCache(tuple);
	if (!ok)
		elog(ERROR, "orchestrator.session_store is not as this library expects");
	store_pkey = pkey;
	store_relid = relid;
}

/*
 * session_lookup
 *		The value of owner's live session "key" (a copy in the current
 *		memory context), or NULL: one probe of the primary key under the
 *		statement's snapshot, without a query.  Locks, predicate locks and
 *		statistics are the index scan's own, as in an executor's.
 */
static Datum
session_lookup(Oid owner, Datum key, bool *isnull)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	bool		pushed = false;
	Datum		result = (Datum) 0;

	*isnull = true;
	if (!OidIsValid(store_relid))
		store_lookup();
	rel = table_open(store_relid, AccessShareLock);
	index = index_open(store_pkey, AccessShareLock);
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	/* ScanKeyInit() compares text in the "C" collation, the column's */
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(owner));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, key);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		no_expiry;
		Datum		expires = slot_getattr(slot, store_expires_att, &no_expiry);

		/* live: expires_at IS NULL OR expires_at > now() */
		if (no_expiry || DatumGetTimestampTz(expires) > GetCurrentTransactionStartTimestamp())
		{
			Datum		value = slot_getattr(slot, store_value_att, isnull);

			if (!*isnull)
				result = PointerGetDatum(PG_DETOAST_DATUM_COPY(value));
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	if (pushed)
		PopActiveSnapshot();
	/* the locks stay until the end of the transaction, as a query's do */
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return result;
}

/*
 * orchestrator._api_session_get(key text) returns jsonb
 */
Datum
orchestrator_session_get(PG_FUNCTION_ARGS)
{
	Datum		result;
	bool		isnull;

	session_check(fcinfo, 1);
	result = session_lookup(orchestrator_current_caller(), PG_GETARG_DATUM(0), &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * orchestrator._api_session_set(key text, value jsonb, ttl interval,
 *		expected_version bigint, lock_token uuid) returns bigint
 */
Datum
orchestrator_session_set(PG_FUNCTION_ARGS)
{
	Oid		   *argtypes = session_argtypes;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			owner = orchestrator_current_caller();
	bool		has_expected = !PG_ARGISNULL(3);
	int64		expected = has_expected ? PG_GETARG_INT64(3) : 0;
	bool		has_token = !PG_ARGISNULL(4);
	Datum		version;
	bool		isnull;
	int			rc;

	session_check(fcinfo, 4);
	/* an update of a live key (a lock token or a version) makes no new key */
	orchestrator_quota_check_session(owner, has_token || (has_expected && expected > 0) ? (Datum) 0 : PG_GETARG_DATUM(0),
									 PG_GETARG_DATUM(1), false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	values[0] = ObjectIdGetDatum(owner);
	for (int i = 0; i < 5; i++)
	{
		values[i + 1] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i + 1] = PG_ARGISNULL(i) ? 'n' : ' ';
	}

	if (has_token || (has_expected && expected > 0))
		rc = SPI_execute_plan(session_plan(&update_plan, update_sql, 6, argtypes), values, nulls, false, 1);
	else if (has_expected)
		rc = SPI_execute_plan(session_plan(&insert_plan, insert_sql, 4, argtypes), values, nulls, false, 1);
	else
		rc = SPI_execute_plan(session_plan(&upsert_plan, upsert_sql, 4, argtypes), values, nulls, false, 1);
	if (rc != SPI_OK_UPDATE_RETURNING && rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "session_set: %s", SPI_result_code_string(rc));
	version = session_result(&isnull);
	if (isnull)
	{
		Oid			types[4] = {REGROLEOID, TEXTOID, INT8OID, UUIDOID};
		Datum		rvalues[4] = {values[0], values[1], values[4], values[5]};
		char		rnulls[4] = {' ', ' ', nulls[4], nulls[5]};

		SPI_execute_with_args("SELECT orchestrator._session_refuse($1, $2, $3, $4)",
							  4, types, rvalues, rnulls, false, 0);
		elog(ERROR, "_session_refuse() found nothing to refuse");
	}
	SPI_finish();

	session_announce(owner, "set", text_to_cstring(PG_GETARG_TEXT_PP(0)), DatumGetInt64(version));
	PG_RETURN_DATUM(version);
}

/*
 * session_announce
 *		{"op", "key", "version"} on owner's private channel at commit.
 */
static void
session_announce(Oid owner, const char *op, const char *key, int64 version)
{
	char		channel[NAMEDATALEN];
	StringInfoData payload;

	orchestrator_private_channel(SESSION_CHANNEL_PREFIX, owner, channel);
	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"op\": ");
	escape_json(&payload, op);
	appendStringInfoString(&payload, ", \"key\": ");
	escape_json(&payload, key);
	appendStringInfo(&payload, ", \"version\": " INT64_FORMAT "}", version);
	orchestrator_notify_private(channel, payload.data);
	pfree(payload.data);
}

/*
 * orchestrator._session_notify(owner regrole, op text, key text, version bigint)
 *		Announce a change of owner's session key when the transaction commits.
 */
Datum
orchestrator_session_notify(PG_FUNCTION_ARGS)
{
	session_announce(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
					 text_to_cstring(PG_GETARG_TEXT_PP(2)), PG_GETARG_INT64(3));
	PG_RETURN_VOID();
}

/*
 * orchestrator._api_session_channel()
 *		The caller's private session channel, to LISTEN to.
 */
Datum
orchestrator_session_channel(PG_FUNCTION_ARGS)
{
	char		channel[NAMEDATALEN];

	orchestrator_private_channel(SESSION_CHANNEL_PREFIX, orchestrator_current_caller(), channel);
	PG_RETURN_TEXT_P(cstring_to_text(channel));
}
