/*-------------------------------------------------------------------------
 *
 * lookup_cache.c
 *	  What every start and every event looks up of the workflows and the
 *	  webhook subscriptions, cached per process until those tables change.
 *
 * start_workflow() needs a workflow's latest version and its owner; every
 * event needs to know whether webhook subscriptions exist (then it gets
 * outbox rows).  Each was a statement per start, or per transaction.  The
 * answers change only when definitions, workflows or webhooks change, so
 * they are kept here, and a statement-level trigger on those three tables
 * (orchestrator._lookup_changed()) sends a relcache invalidation of the
 * table at commit: every process drops what it kept when it next starts a
 * transaction (PostgreSQL processes invalidations at transaction start),
 * the writing process at its next command, and an aborted write's at the
 * abort.  So a start sees a version defined by a transaction that committed
 * before it began, as the statement did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "engine_stmt.h"
#include "lookup_cache.h"
#include "relcache_watch.h"

PG_FUNCTION_INFO_V1(orchestrator_lookup_changed);

#define LOOKUP_NAME_LEN 256
/* more workflows than this: the cache starts again (it only saves a statement) */
#define LOOKUP_MAX_ENTRIES 4096

typedef struct LookupEntry
{
	char		name[LOOKUP_NAME_LEN];
	int32		version;		/* the latest */
	Oid			owner;
} LookupEntry;

static HTAB *workflows = NULL;
static int	webhooks_exist = -1;	/* unknown */
static bool callback_registered = false;
/* definitions, workflows, webhooks: whose invalidation drops the cache */
static Oid	watched[3];

static void
lookup_reset(void)
{
	if (workflows != NULL)
		hash_destroy(workflows);
	workflows = NULL;
	webhooks_exist = -1;
}

/*
 * A change to one of the three tables (or a full reset, relid 0) drops
 * everything: such changes are rare.  No catalog access here: callbacks
 * may run where it is not allowed.  A dropped table is invalidated too, so
 * an extension created again is noticed.
 */
static void
lookup_relcache_callback(Datum arg, Oid relid)
{
	if (workflows == NULL)
		return;
	if (relid == InvalidOid || relid == watched[0] || relid == watched[1] || relid == watched[2])
		lookup_reset();
}

static void
lookup_init(void)
{
	HASHCTL		ctl;
	Oid			nsp;

	if (!callback_registered)
	{
		orchestrator_watch_relcache(lookup_relcache_callback);
		callback_registered = true;
	}
	if (workflows != NULL)
		return;
	nsp = get_namespace_oid("orchestrator", false);
	watched[0] = get_relname_relid("definitions", nsp);
	watched[1] = get_relname_relid("workflows", nsp);
	watched[2] = get_relname_relid("webhooks", nsp);
	webhooks_exist = -1;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = LOOKUP_NAME_LEN;
	ctl.entrysize = sizeof(LookupEntry);
	ctl.hcxt = TopMemoryContext;
	workflows = hash_create("orchestrator workflow lookups", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * lookup_workflow
 *		A workflow's version (asked: that one, 0: its latest) and its owner
 *		(InvalidOid: no such workflow); false when there is no such version.
 *		Only the latest is kept: a version asked for is read each time.
 */
bool
lookup_workflow(const char *name, int32 asked, int32 *version, Oid *owner)
{
	LookupEntry *entry;
	Datum		values[2];
	char		nulls[2] = {' ', asked > 0 ? ' ' : 'n'};
	bool		missing;
	bool		isnull;
	bool		cacheable = asked == 0 && strlen(name) < LOOKUP_NAME_LEN;
	Datum		d;

	lookup_init();
	if (cacheable && (entry = hash_search(workflows, name, HASH_FIND, NULL)) != NULL)
	{
		*version = entry->version;
		*owner = entry->owner;
		return true;
	}
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(asked);
	engine_stmt(S_START_LOOKUP, NULL, values, nulls);
	d = engine_col("version", &missing);
	*owner = DatumGetObjectId(engine_col("owner", &isnull));
	if (isnull)
		*owner = InvalidOid;
	engine_rows_done();
	if (missing)
		return false;
	*version = DatumGetInt32(d);
	if (cacheable && OidIsValid(*owner))
	{
		if (hash_get_num_entries(workflows) >= LOOKUP_MAX_ENTRIES)
		{
			lookup_reset();
			lookup_init();
		}
		entry = hash_search(workflows, name, HASH_ENTER, NULL);
		entry->version = *version;
		entry->owner = *owner;
	}
	return true;
}

/* Do webhook subscriptions exist? */
bool
lookup_webhooks_exist(void)
{
	lookup_init();
	if (webhooks_exist < 0)
	{
		engine_stmt(S_WEBHOOKS_EXIST, NULL, NULL, NULL);
		webhooks_exist = engine_col_bool("exist") ? 1 : 0;
		engine_rows_done();
	}
	return webhooks_exist == 1;
}

/*
 * orchestrator._lookup_changed() returns trigger
 *		After a statement on definitions, workflows or webhooks: every
 *		process drops its cached lookups (at this transaction's commit).
 */
Datum
orchestrator_lookup_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("orchestrator._lookup_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
