/*-------------------------------------------------------------------------
 *
 * admission.c
 *	  Admission control: at most N active runs (pending, running,
 *	  compensating) in a scope; runs over a limit wait as "queued" and are
 *	  admitted, in priority-then-age order, as slots free.
 *
 * Scopes (ADMISSION_* bits, admission.h), checked in this order:
 *   global    setting orchestrator.max_active_runs (0: none)
 *   workflow  "max_active_runs" of the latest version of a workflow name,
 *             counting the runs of every version of it
 *   tenant    set_tenant_limits(tenant, n)
 *
 * Each scope with a limit has a row in orchestrator.admission_slots: its
 * limit (NULL for global: the setting) and how many runs hold a slot of it
 * (active).  A run records the slots it holds in workflow_runs.admission, so
 * that it gives back exactly those when it leaves the active statuses
 * (succeeded, failed, cancelled): a limit set or removed while runs are
 * active never makes a counter drift.  A row is created with a count of the
 * active runs of its scope (recount(), which also marks them), so a limit
 * set on a busy workflow counts the runs already going.
 *
 * Concurrency: a start locks the rows of its scopes (FOR UPDATE, in the
 * order above) before it decides, and holds them to commit; a run that
 * leaves locks the rows of its slots in the same order, gives them back,
 * and then admits queued runs.  Whichever of a start and a finish in the
 * same scope comes second sees what the first committed: the limit holds,
 * and a slot freed while a start was queueing its run is given to that run.
 * Admitting takes the rows of a queued run's other scopes and the run
 * itself with SKIP LOCKED, never waiting while it holds a row (no lock
 * cycle); a run passed over that way is admitted by the next finish or by
 * the dispatchers' pass (admission_queued_runs()), which also admits runs
 * after a limit was raised.
 *
 * This file decides and keeps the slots; it makes no step ready.  The
 * transition of a queued run admitted (its first steps made ready) is the
 * engine's: engine_admit_waiting() (engine.c) asks admission_candidates()
 * and admission_admit() here, batch by batch.
 *
 * With no limit configured a start costs a hash lookup of the workflow
 * (and of the tenant): the limits are kept per backend, dropped when
 * _admission_configure() commits anywhere.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "admission.h"
#include "engine_events.h"
#include "engine_run.h"
#include "engine_stmt.h"
#include "guc.h"
#include "relcache_watch.h"

static const char *const scope_names[ADMISSION_SCOPES] = {"global", "workflow", "tenant"};

/* queued runs looked at per batch (admission_candidates()) */
#define ADMIT_BATCH 64

/* ----------------------------------------------------------------
 * Statements (on the partitioned parents: none is on the hot path)
 * ---------------------------------------------------------------- */

typedef enum AdmStmt
{
	A_LIMIT,
	A_ENSURE_GLOBAL,
	A_LOCK,
	A_LOCK_SKIP,
	A_RECOUNT,
	A_TAKE,
	A_GIVE_BACK,
	A_RUN_SET,
	A_QUEUE_ADD,
	A_QUEUE_DEL,
	A_QUEUE_LOCK,
	A_CANDIDATES,
	A_ADMIT_RUN,
	A_ROOTS,
	A_QUEUE_EXISTS,
	A_DROP_GLOBAL,
	A_CONFIGURE,
	A_UNCONFIGURE,
	A_COUNT
} AdmStmt;

static const struct
{
	const char *sql;
	int			nargs;
	Oid			types[5];
}			adm_stmts[A_COUNT] = {
	[A_LIMIT] = {
		"SELECT max_active FROM orchestrator.admission_slots WHERE scope = $1 AND key = $2",
	2, {TEXTOID, TEXTOID}},
	[A_ENSURE_GLOBAL] = {
		"INSERT INTO orchestrator.admission_slots (scope, key, active) VALUES ('global', '', 0)"
		" ON CONFLICT DO NOTHING",
	0, {0}},
	[A_LOCK] = {
		"SELECT max_active, active FROM orchestrator.admission_slots WHERE scope = $1 AND key = $2 FOR UPDATE",
	2, {TEXTOID, TEXTOID}},
	[A_LOCK_SKIP] = {
		"SELECT max_active, active FROM orchestrator.admission_slots WHERE scope = $1 AND key = $2"
		" FOR UPDATE SKIP LOCKED",
	2, {TEXTOID, TEXTOID}},

	/*
	 * The active runs of a scope take its slots: marked and counted by one
	 * statement, so that a run that finishes meanwhile (its row is re-read
	 * once its lock is released) is neither marked nor counted.
	 */
	[A_RECOUNT] = {
		"WITH marked AS (UPDATE orchestrator.workflow_runs r SET admission = r.admission | $3"
		"   WHERE r.finished_at IS NULL AND r.status IN ('pending', 'running', 'compensating')"
		"     AND ($1 = 'global' OR ($1 = 'workflow' AND r.name = $2) OR ($1 = 'tenant' AND r.tenant = $2))"
		"   RETURNING 1)"
		" UPDATE orchestrator.admission_slots SET active = (SELECT count(*) FROM marked)"
		" WHERE scope = $1 AND key = $2",
	3, {TEXTOID, TEXTOID, INT2OID}},
	[A_TAKE] = {
		"UPDATE orchestrator.admission_slots SET active = active + 1 WHERE scope = $1 AND key = $2",
	2, {TEXTOID, TEXTOID}},
	[A_GIVE_BACK] = {
		"UPDATE orchestrator.admission_slots SET active = greatest(active - 1, 0) WHERE scope = $1 AND key = $2",
	2, {TEXTOID, TEXTOID}},
	[A_RUN_SET] = {
		"UPDATE orchestrator.workflow_runs SET status = $2, admission = $3 WHERE id = $1",
	3, {UUIDOID, TEXTOID, INT2OID}},
	[A_QUEUE_ADD] = {
		"INSERT INTO orchestrator.admission_queue (run_id, priority, workflow, tenant) VALUES ($1, $2, $3, $4)"
		" ON CONFLICT (run_id) DO NOTHING",
	4, {UUIDOID, INT4OID, TEXTOID, TEXTOID}},
	[A_QUEUE_DEL] = {
		"DELETE FROM orchestrator.admission_queue WHERE run_id = $1", 1, {UUIDOID}},
	[A_QUEUE_LOCK] = {
		"SELECT 1 FROM orchestrator.admission_queue WHERE run_id = $1 FOR UPDATE SKIP LOCKED", 1, {UUIDOID}},
	/* queued runs that a freed slot may let in, best first (not locked) */
	[A_CANDIDATES] = {
		"SELECT q.run_id, q.workflow, q.tenant FROM orchestrator.admission_queue q"
		" WHERE $1 OR q.workflow = $2 OR q.tenant = $3"
		" ORDER BY q.priority DESC, q.queued_at, q.run_id LIMIT $4",
	4, {BOOLOID, TEXTOID, TEXTOID, INT4OID}},
	[A_ADMIT_RUN] = {
		"UPDATE orchestrator.workflow_runs SET admission = $2,"
		" status = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END"
		" WHERE id = $1 AND status = 'queued' RETURNING status",
	2, {UUIDOID, INT2OID}},
	/* its steps with nothing left to wait for (first steps; a resumed run's) */
	[A_ROOTS] = {
		"SELECT step FROM orchestrator.workflow_steps"
		" WHERE run_id = $1 AND status = 'waiting' AND deps_open = 0 ORDER BY position",
	1, {UUIDOID}},
	[A_QUEUE_EXISTS] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.admission_queue) AS queued", 0, {0}},
	[A_DROP_GLOBAL] = {
		"DELETE FROM orchestrator.admission_slots WHERE scope = 'global'", 0, {0}},
	[A_CONFIGURE] = {
		"INSERT INTO orchestrator.admission_slots AS s (scope, key, max_active, active) VALUES ($1, $2, $3, 0)"
		" ON CONFLICT (scope, key) DO UPDATE SET max_active = excluded.max_active"
		" RETURNING (s.xmax = 0) AS created",
	3, {TEXTOID, TEXTOID, INT4OID}},
	[A_UNCONFIGURE] = {
		"DELETE FROM orchestrator.admission_slots WHERE scope = $1 AND key = $2", 2, {TEXTOID, TEXTOID}},
};

static SPIPlanPtr adm_plans[A_COUNT];

/* Run statement "s" in the current SPI connection; its rows in SPI_tuptable. */
static uint64
adm_exec(AdmStmt s, Datum *values, const char *nulls)
{
	MemoryContext context = CurrentMemoryContext;
	int			rc;

	if (adm_plans[s] == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(adm_stmts[s].sql, adm_stmts[s].nargs, (Oid *) adm_stmts[s].types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare orchestrator admission statement %d: %s", (int) s,
				 SPI_result_code_string(SPI_result));
		adm_plans[s] = plan;
	}
	rc = SPI_execute_plan(adm_plans[s], values, nulls, false, 0);
	MemoryContextSwitchTo(context);
	if (rc < 0)
		elog(ERROR, "orchestrator admission statement %d failed: %s", (int) s, SPI_result_code_string(rc));
	return SPI_processed;
}

/* ----------------------------------------------------------------
 * Limits per backend
 * ---------------------------------------------------------------- */

#define LIMIT_KEY_LEN 1100		/* "w:" or "t:" and a name or tenant */

typedef struct LimitEntry
{
	char		key[LIMIT_KEY_LEN];
	int32		limit;			/* 0: none */
} LimitEntry;

static HTAB *limit_cache = NULL;
static Oid	limit_cache_relid = InvalidOid;
static bool limit_callback = false;

static void
limits_invalidated(Datum arg, Oid relid)
{
	if (limit_cache != NULL && (relid == InvalidOid || relid == limit_cache_relid))
	{
		hash_destroy(limit_cache);
		limit_cache = NULL;
	}
}

static Oid
slots_relid(void)
{
	return get_relname_relid("admission_slots", get_namespace_oid("orchestrator", false));
}

static void
limit_cache_ensure(void)
{
	HASHCTL		ctl;

	if (limit_cache != NULL && hash_get_num_entries(limit_cache) <= 4096)
		return;
	if (limit_cache != NULL)
		hash_destroy(limit_cache);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = LIMIT_KEY_LEN;
	ctl.entrysize = sizeof(LimitEntry);
	ctl.hcxt = TopMemoryContext;
	limit_cache = hash_create("orchestrator admission limits", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * The limit of a workflow or tenant scope (0: none), as this backend last
 * read it.  Only a hint of whether to count: the locked row decides.
 */
static int32
scope_limit(int scope, const char *key)
{
	char		k[LIMIT_KEY_LEN];
	LimitEntry *e;
	bool		found;
	int32		limit = 0;

	if (!limit_callback)
	{
		orchestrator_watch_relcache(limits_invalidated);
		limit_callback = true;
	}
	snprintf(k, sizeof(k), "%c:%s", scope_names[scope][0], key);
	limit_cache_ensure();
	e = hash_search(limit_cache, k, HASH_FIND, NULL);
	if (e != NULL)
		return e->limit;
	{
		Datum		values[2] = {CStringGetTextDatum(scope_names[scope]), CStringGetTextDatum(key)};
		bool		isnull;

		if (adm_exec(A_LIMIT, values, NULL) == 1)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			limit = isnull ? 0 : DatumGetInt32(d);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	/* the query may have taken invalidations that dropped the cache */
	limit_cache_relid = slots_relid();
	limit_cache_ensure();
	e = hash_search(limit_cache, k, HASH_ENTER, &found);
	e->limit = limit;
	return limit;
}

static void
limits_changed(void)
{
	CacheInvalidateRelcacheByRelid(slots_relid());
	limits_invalidated((Datum) 0, InvalidOid);
}

/* ----------------------------------------------------------------
 * Scopes
 * ---------------------------------------------------------------- */

typedef struct Scope
{
	int			scope;			/* index in scope_names */
	const char *key;
	int32		limit;
	int32		active;
} Scope;

/* The scopes with a limit of a run of workflow "name" and "tenant". */
static int
scopes_of(const char *name, const char *tenant, Scope *out)
{
	int			n = 0;

	if (orchestrator_max_active_runs > 0)
		out[n++] = (Scope) {0, "", orchestrator_max_active_runs, 0};
	if (scope_limit(1, name) > 0)
		out[n++] = (Scope) {1, name, 0, 0};
	if (tenant != NULL && scope_limit(2, tenant) > 0)
		out[n++] = (Scope) {2, tenant, 0, 0};
	return n;
}

/* Mark the active runs of a scope and count them in its row. */
static void
recount(int scope, const char *key)
{
	Datum		values[3] = {CStringGetTextDatum(scope_names[scope]), CStringGetTextDatum(key),
	Int16GetDatum(1 << scope)};

	adm_exec(A_RECOUNT, values, NULL);
}

/*
 * Lock the row of a scope (skip_locked: false at once when another
 * transaction holds it) and read its limit and count.  False when it is
 * locked, or has no row (*no_row: the limit was removed).  The global row
 * is made, counted, when the setting is first seen set.
 */
static bool
lock_scope(Scope *s, bool skip_locked, bool *no_row)
{
	Datum		values[2] = {CStringGetTextDatum(scope_names[s->scope]), CStringGetTextDatum(s->key)};
	bool		isnull;
	Datum		d;

	*no_row = false;
	for (int attempt = 0;; attempt++)
	{
		bool		exists;

		if (adm_exec(skip_locked ? A_LOCK_SKIP : A_LOCK, values, NULL) == 1)
			break;
		SPI_freetuptable(SPI_tuptable);
		exists = false;
		if (skip_locked)
		{
			/* locked, or absent: tell them apart without waiting */
			exists = adm_exec(A_LIMIT, values, NULL) == 1;
			SPI_freetuptable(SPI_tuptable);
		}
		if (exists)
			return false;
		if (s->scope != 0 || attempt > 0)
		{
			*no_row = true;
			return false;
		}
		/* the setting is set and its row is new: count what is active */
		if (adm_exec(A_ENSURE_GLOBAL, NULL, NULL) == 1)
			recount(0, "");
	}
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (s->scope != 0)
		s->limit = isnull ? 0 : DatumGetInt32(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	s->active = isnull ? 0 : DatumGetInt32(d);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

static void
scope_stmt(AdmStmt stmt, Scope *s)
{
	Datum		values[2] = {CStringGetTextDatum(scope_names[s->scope]), CStringGetTextDatum(s->key)};

	adm_exec(stmt, values, NULL);
}

/* {"scope": ..., "key": ..., "max_active_runs": n, "active": n} */
static char *
reason_json(Scope *s)
{
	StringInfoData r;

	initStringInfo(&r);
	appendStringInfo(&r, "{\"scope\": \"%s\"", scope_names[s->scope]);
	if (s->scope != 0)
	{
		appendStringInfoString(&r, ", \"key\": ");
		escape_json(&r, s->key);
	}
	appendStringInfo(&r, ", \"max_active_runs\": %d, \"active\": %d}", s->limit, s->active);
	return r.data;
}

/*
 * decide
 *		Lock the rows of the scopes (in order, waiting) and take a slot of
 *		each when every one has room.  False (and why) when one is full.
 */
static bool
decide(Scope *scopes, int n, int16 *bits, char **reason)
{
	bool		room = true;

	*bits = 0;
	*reason = NULL;
	for (int i = 0; i < n; i++)
	{
		bool		no_row;

		if (!lock_scope(&scopes[i], false, &no_row))
		{
			scopes[i].limit = 0;	/* its limit was removed meanwhile */
			continue;
		}
		if (scopes[i].limit > 0 && scopes[i].active >= scopes[i].limit && room)
		{
			room = false;
			*reason = reason_json(&scopes[i]);
		}
	}
	if (!room)
		return false;
	for (int i = 0; i < n; i++)
		if (scopes[i].limit > 0)
		{
			scope_stmt(A_TAKE, &scopes[i]);
			*bits |= (int16) (1 << scopes[i].scope);
		}
	return true;
}

/* ----------------------------------------------------------------
 * Transitions
 * ---------------------------------------------------------------- */

/*
 * admission_at_start
 *		A run is about to be created (engine_run_created()): with no limit
 *		in its scopes, nothing (a->limited false); else the slots are taken,
 *		or the run is to wait (a->queued).
 */
void
admission_at_start(EngineRun *run, const char *tenant, Admission *a)
{
	Scope		scopes[ADMISSION_SCOPES];
	int			n;

	memset(a, 0, sizeof(*a));
	n = scopes_of(run->name, tenant, scopes);
	if (n == 0)
		return;
	a->limited = true;
	a->queued = !decide(scopes, n, &a->bits, &a->reason);
}

/*
 * admission_created
 *		The run of a limited start is written: it holds its slots, or it is
 *		queued (workflow.queued, with the limit it waits for).
 */
void
admission_created(EngineRun *run, const char *tenant, Admission *a)
{
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	values[0] = run->id;
	values[1] = CStringGetTextDatum(a->queued ? "queued" : "pending");
	values[2] = Int16GetDatum(a->queued ? 0 : a->bits);
	adm_exec(A_RUN_SET, values, NULL);
	if (!a->queued)
	{
		run->admission = a->bits;
		return;
	}
	run->status = RUN_QUEUED;
	run->admission = 0;
	values[1] = Int32GetDatum(run->priority);
	values[2] = CStringGetTextDatum(run->name);
	values[3] = tenant ? CStringGetTextDatum(tenant) : (Datum) 0;
	nulls[3] = tenant ? ' ' : 'n';
	adm_exec(A_QUEUE_ADD, values, nulls);
	engine_emit(run, "workflow.queued", NULL, a->reason);
}

/* The scopes known full in one admission pass. */
struct AdmitPass
{
	int			nfull;
	Scope		full[16];
	bool		global_full;
};

static bool
known_full(AdmitPass *p, Scope *s)
{
	if (s->scope == 0)
		return p->global_full;
	for (int i = 0; i < p->nfull; i++)
		if (p->full[i].scope == s->scope && strcmp(p->full[i].key, s->key) == 0)
			return true;
	return false;
}

static void
note_full(AdmitPass *p, Scope *s)
{
	if (s->scope == 0)
		p->global_full = true;
	else if (p->nfull < (int) lengthof(p->full))
		p->full[p->nfull++] = *s;
}

/*
 * admission_candidates
 *		The next batch of queued runs that slots freed "where" may admit,
 *		best first (the transitions admit them: engine_admit_waiting()).
 */
AdmitBatch *
admission_candidates(const AdmitWhere *where)
{
	Datum		values[4];
	char		nulls[4] = {' ', where->workflow ? ' ' : 'n', where->tenant ? ' ' : 'n', ' '};
	AdmitBatch *b = palloc0(sizeof(AdmitBatch));
	uint64		n;

	values[0] = BoolGetDatum(where->all);
	values[1] = where->workflow ? CStringGetTextDatum(where->workflow) : (Datum) 0;
	values[2] = where->tenant ? CStringGetTextDatum(where->tenant) : (Datum) 0;
	values[3] = Int32GetDatum(ADMIT_BATCH);
	n = adm_exec(A_CANDIDATES, values, nulls);
	b->n = (int) n;
	b->ids = palloc(sizeof(Datum) * Max(n, 1));
	b->workflows = palloc(sizeof(char *) * Max(n, 1));
	b->tenants = palloc(sizeof(char *) * Max(n, 1));
	b->pass = palloc0(sizeof(AdmitPass));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		memcpy(id, DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		b->ids[i] = UUIDPGetDatum(id);
		b->workflows[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		b->tenants[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
	}
	SPI_freetuptable(SPI_tuptable);
	return b;
}

/* Is the global scope full (nothing more fits in this pass)? */
bool
admission_nothing_fits(AdmitBatch *b)
{
	return b->pass->global_full;
}

/* May a batch that admitted some runs be followed by more candidates? */
bool
admission_batch_more(AdmitBatch *b)
{
	return b->n == ADMIT_BATCH && !b->pass->global_full;
}

/*
 * admission_admit
 *		Admit the batch's run i when each of its scopes has room, taking
 *		nothing that another transaction holds: the run (locked into *q)
 *		becomes pending (running, when resumed after it had started) with
 *		its slots, workflow.admitted.  *roots are its steps with nothing to
 *		wait for, which the caller makes ready.
 */
bool
admission_admit(AdmitBatch *b, int i, EngineRun *q, char ***roots, int *nroots)
{
	Scope		scopes[ADMISSION_SCOPES];
	int			n = scopes_of(b->workflows[i], b->tenants[i], scopes);
	int16		bits = 0;
	Datum		values[2] = {b->ids[i], (Datum) 0};
	int			nsteps;
	char	  **steps;

	for (int s = 0; s < n; s++)
		if (known_full(b->pass, &scopes[s]))
			return false;
	for (int s = 0; s < n; s++)
	{
		bool		no_row;

		if (!lock_scope(&scopes[s], true, &no_row))
		{
			if (no_row)
			{
				scopes[s].limit = 0;
				continue;
			}
			return false;		/* another transaction decides there now */
		}
		if (scopes[s].limit > 0 && scopes[s].active >= scopes[s].limit)
		{
			note_full(b->pass, &scopes[s]);
			return false;
		}
	}
	if (adm_exec(A_QUEUE_LOCK, values, NULL) != 1)
		return false;
	SPI_freetuptable(SPI_tuptable);
	if (!engine_lock_run(b->ids[i], NULL, true, q))
		return false;
	if (q->status != RUN_QUEUED)
	{
		adm_exec(A_QUEUE_DEL, values, NULL);
		return false;
	}
	for (int s = 0; s < n; s++)
		if (scopes[s].limit > 0)
		{
			scope_stmt(A_TAKE, &scopes[s]);
			bits |= (int16) (1 << scopes[s].scope);
		}
	values[1] = Int16GetDatum(bits);
	if (adm_exec(A_ADMIT_RUN, values, NULL) != 1)
		elog(ERROR, "queued run %s could not be admitted",
			 DatumGetCString(DirectFunctionCall1(uuid_out, b->ids[i])));
	q->status = run_status_from_name(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_freetuptable(SPI_tuptable);
	q->admission = bits;
	adm_exec(A_QUEUE_DEL, values, NULL);
	engine_emit(q, "workflow.admitted", NULL, NULL);

	nsteps = (int) adm_exec(A_ROOTS, values, NULL);
	steps = palloc(sizeof(char *) * Max(nsteps, 1));
	for (int s = 0; s < nsteps; s++)
		steps[s] = SPI_getvalue(SPI_tuptable->vals[s], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);
	*roots = steps;
	*nroots = nsteps;
	return true;
}

/*
 * admission_run_left
 *		A run left the active statuses (or a queued run ended: cancelled, or
 *		failed at its deadline): its slots are given back.  True when queued
 *		runs are to be admitted into them: in *where.
 */
bool
admission_run_left(EngineRun *run, bool was_queued, AdmitWhere *where)
{
	Datum		values[1] = {run->id};
	Scope		scopes[ADMISSION_SCOPES];
	int			n = 0;
	char	   *tenant = NULL;
	bool		all = false;

	if (was_queued)
	{
		adm_exec(A_QUEUE_DEL, values, NULL);
		return false;
	}
	if ((run->admission & ADMISSION_TENANT) != 0)
	{
		Datum		t[1] = {run->id};

		/* not read-only: a run written in this command (rows.c) is seen */
		SPI_execute_with_args("SELECT tenant FROM orchestrator.workflow_runs WHERE id = $1",
							  1, (Oid[]) {UUIDOID}, t, NULL, false, 1);
		if (SPI_processed == 1)
			tenant = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		SPI_freetuptable(SPI_tuptable);
	}
	if (run->admission & ADMISSION_GLOBAL)
		scopes[n++] = (Scope) {0, "", 0, 0};
	if (run->admission & ADMISSION_WORKFLOW)
		scopes[n++] = (Scope) {1, run->name, 0, 0};
	if ((run->admission & ADMISSION_TENANT) && tenant != NULL)
		scopes[n++] = (Scope) {2, tenant, 0, 0};
	run->admission = 0;
	/* in the order of a start; a row gone is a limit removed */
	for (int i = 0; i < n; i++)
	{
		Datum		k[2] = {CStringGetTextDatum(scope_names[scopes[i].scope]), CStringGetTextDatum(scopes[i].key)};

		if (adm_exec(A_LOCK, k, NULL) == 1)
			scope_stmt(A_GIVE_BACK, &scopes[i]);
		SPI_freetuptable(SPI_tuptable);
		if (scopes[i].scope == 0)
			all = true;
	}
	where->all = all;
	where->workflow = run->name;
	where->tenant = tenant;
	return true;
}

/*
 * admission_queued_runs
 *		The dispatchers' pass: are there queued runs (which may fit now,
 *		after a limit was raised or removed, or when a finish passed them
 *		over)?  An idle pass drops the global row once the setting is 0, so
 *		that it is counted afresh when set again.
 */
bool
admission_queued_runs(bool idle)
{
	bool		queued;

	if (idle && orchestrator_max_active_runs == 0)
		adm_exec(A_DROP_GLOBAL, NULL, NULL);
	adm_exec(A_QUEUE_EXISTS, NULL, NULL);
	queued = engine_col_bool("queued");
	engine_rows_done();
	return queued;
}

/*
 * admission_configure
 *		Set (limit 0: remove) the limit of a workflow or tenant scope (the
 *		caller checked the right and the scope's name).  A new limit counts
 *		the scope's active runs.  *where: the queued runs that may fit now.
 */
void
admission_configure(const char *scope_name, const char *key, int32 limit, AdmitWhere *where)
{
	Datum		values[3] = {CStringGetTextDatum(scope_name), CStringGetTextDatum(key), Int32GetDatum(limit)};
	int			scope = strcmp(scope_name, "workflow") == 0 ? 1 : 2;

	if (limit <= 0)
		adm_exec(A_UNCONFIGURE, values, NULL);
	else
	{
		bool		created;

		adm_exec(A_CONFIGURE, values, NULL);
		created = engine_col_bool("created");
		engine_rows_done();
		if (created)
			recount(scope, key);
	}
	limits_changed();
	where->all = false;
	where->workflow = scope == 1 ? key : NULL;
	where->tenant = scope == 2 ? key : NULL;
}

/*
 * admission_resumed
 *		retry_run() made a failed or cancelled run (locked, its status
 *		pending or running again) active again: it takes slots like a start,
 *		or waits queued (workflow.queued; run->status becomes queued).
 */
void
admission_resumed(EngineRun *run)
{
	Datum		run_id = run->id;
	char	   *tenant = NULL;
	Admission	a;

	SPI_execute_with_args("SELECT tenant FROM orchestrator.workflow_runs WHERE id = $1",
						  1, (Oid[]) {UUIDOID}, &run_id, NULL, false, 1);
	if (SPI_processed == 1)
		tenant = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);

	admission_at_start(run, tenant, &a);
	if (!a.limited)
	{
		/* slots it held before it ended were given back then */
		if (run->admission != 0)
		{
			Datum		values[3] = {run->id, CStringGetTextDatum(run_status_names[run->status]), Int16GetDatum(0)};

			adm_exec(A_RUN_SET, values, NULL);
			run->admission = 0;
		}
		return;
	}
	if (!a.queued)
	{
		Datum		values[3] = {run->id, CStringGetTextDatum(run_status_names[run->status]), Int16GetDatum(a.bits)};

		adm_exec(A_RUN_SET, values, NULL);
		run->admission = a.bits;
		return;
	}
	admission_created(run, tenant, &a);
}
