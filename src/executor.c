/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  Run the statement of a sql step as the workflow's owner.
 *
 * The dispatcher is a superuser; the statement of a sql step must run with
 * the privileges of the role that started the workflow.  The user id is
 * switched for the duration of the statement inside a security-restricted
 * operation (like a SECURITY DEFINER function, but stricter): there the
 * statement cannot SET ROLE or SET SESSION AUTHORIZATION back to the
 * superuser, RESET ROLE is refused as well, and it cannot create temporary
 * objects or PREPARE statements that would outlive the step.  Settings it
 * changes are undone when the statement ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parser.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "caller.h"
#include "cache_figures.h"
#include "executor.h"
#include "leaf.h"
#include "guc.h"
#include "journal.h"

PG_FUNCTION_INFO_V1(orchestrator_run_sql_step);
PG_FUNCTION_INFO_V1(orchestrator_sql_statement_count);

/* search_path of a step: the default one, resolved for the owner */
#define STEP_SEARCH_PATH	"\"$user\", public"

/* State of the statement timeout around a step. */
typedef struct StepTimeout
{
	bool		armed;			/* we enabled STATEMENT_TIMEOUT */
	bool		outer_active;	/* it was already enabled by the caller */
	TimestampTz outer_finish;	/* ... and would fire then */
	int			guard_ms;		/* the engine's guard was armed (ms) */
	bool		watchdog;		/* we enabled the watchdog */
} StepTimeout;

/*
 * The watchdog of a dispatcher's step (registered by the dispatcher only):
 * a timeout that the statement cannot catch.  It fires
 * orchestrator.step_timeout_grace after the step's own timeout, when the
 * statement went on (a PL/pgSQL block that catches query_canceled, code
 * that does not check for interrupts often) and makes the process exit.
 */
static TimeoutId watchdog_timeout = MAX_TIMEOUTS;

/*
 * The engine's guard (orchestrator.engine_timeout): STATEMENT_TIMEOUT armed
 * by the dispatcher around its own work for a step or a timer pass, so that
 * the engine's jsonpath conditions and templates cannot hold it for ever.
 * A step's statement has a timeout of its own instead, whatever the guard.
 */
static int	engine_guard_ms = 0;

/* One sql step to run: inputs, and where its result goes. */
typedef struct SqlStep
{
	Oid			owner;
	const char *sql;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *values;
	char	   *nulls;
	int			timeout_ms;
	MemoryContext result_context;	/* the caller's, outlives SPI */
	Datum		result;
	bool		result_isnull;
} SqlStep;

/*
 * Prepared plans of step statements, kept across transactions so that a
 * statement is parsed and planned once per dispatcher, not once per step.
 * The plan cache revalidates them as usual: after DDL on what they use,
 * when the search_path they were made under ("$user" differs per owner)
 * or, with row-level security, the role differs.  A small array with
 * least-recently-used eviction: the distinct statements of a deployment
 * are few, and a lookup compares a handful of strings.  Bounded by count and
 * by orchestrator.plan_cache_size bytes: a statement's text and its plans
 * (measured again at each use: the generic plan is made at a later run).  A
 * plan that does not fit alone is used once and not kept.
 */
#define STEP_PLAN_CACHE_SIZE 64

typedef struct StepPlan
{
	char	   *sql;			/* in TopMemoryContext */
	int			nargs;
	SPIPlanPtr	plan;			/* kept with SPI_keepplan */
	uint64		last_used;
	Size		bytes;			/* text and plans, when last measured */
} StepPlan;

static StepPlan step_plans[STEP_PLAN_CACHE_SIZE];
static int	step_plan_count = 0;
static uint64 step_plan_clock = 0;
static CacheFigures step_plan_figures;

/*
 * step_plan
 *		The prepared plan of a step's statement, from the cache or made now
 *		(a syntax error is raised by SPI_prepare as for any statement).
 */
static StepPlan *
step_plan_lookup(SqlStep *step)
{
	int			i;

	for (i = 0; i < step_plan_count; i++)
		if (step_plans[i].nargs == step->nargs && strcmp(step_plans[i].sql, step->sql) == 0)
			return &step_plans[i];
	return NULL;
}

/* Was this text prepared before (so it holds exactly one statement)? */
static bool
step_sql_known(const char *sql)
{
	int			i;

	for (i = 0; i < step_plan_count; i++)
		if (strcmp(step_plans[i].sql, sql) == 0)
			return true;
	return false;
}

static Size
step_plan_limit(void)
{
	return (Size) orchestrator_plan_cache_size * 1024;
}

/* Evict the least recently used plan but "keep"; false when there is none. */
static bool
step_plan_evict(SPIPlanPtr keep)
{
	int			oldest = -1;

	for (int i = 0; i < step_plan_count; i++)
		if (step_plans[i].plan != keep &&
			(oldest < 0 || step_plans[i].last_used < step_plans[oldest].last_used))
			oldest = i;
	if (oldest < 0)
		return false;
	SPI_freeplan(step_plans[oldest].plan);
	pfree(step_plans[oldest].sql);
	step_plan_figures.bytes -= step_plans[oldest].bytes;
	step_plan_figures.evictions++;
	step_plans[oldest] = step_plans[--step_plan_count];
	return true;
}

/* Evict least recently used plans but "keep" until "more" bytes fit. */
static void
step_plans_shrink(SPIPlanPtr keep, Size more)
{
	while (step_plan_figures.bytes + more > step_plan_limit() && step_plan_evict(keep))
		;
}

static SPIPlanPtr
step_plan(SqlStep *step)
{
	StepPlan   *slot = step_plan_lookup(step);
	SPIPlanPtr	plan;
	Size		bytes;

	if (slot != NULL)
	{
		step_plan_figures.hits++;
		slot->last_used = ++step_plan_clock;
		bytes = strlen(slot->sql) + 1 + orchestrator_plan_bytes(slot->plan);
		step_plan_figures.bytes += bytes - slot->bytes;
		slot->bytes = bytes;
		plan = slot->plan;
		step_plans_shrink(plan, 0);
		return plan;
	}
	step_plan_figures.misses++;

	plan = SPI_prepare(step->sql, step->nargs, step->argtypes);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not prepare sql step: %s", SPI_result_code_string(SPI_result))));

	/* not kept (freed with the SPI connection) when it does not fit */
	bytes = strlen(step->sql) + 1 + orchestrator_plan_bytes(plan);
	if (bytes > step_plan_limit())
		return plan;
	if (step_plan_count == STEP_PLAN_CACHE_SIZE)
		(void) step_plan_evict(NULL);
	step_plans_shrink(NULL, bytes);

	if (SPI_keepplan(plan) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not keep the plan of a sql step")));
	slot = &step_plans[step_plan_count++];
	slot->sql = MemoryContextStrdup(TopMemoryContext, step->sql);
	slot->nargs = step->nargs;
	slot->plan = plan;
	slot->last_used = ++step_plan_clock;
	slot->bytes = bytes;
	step_plan_figures.bytes += bytes;
	return plan;
}

/* The figures of the cache of sql steps' plans in this process. */
void
orchestrator_step_plan_figures(CacheFigures *figures)
{
	*figures = step_plan_figures;
	figures->entries = step_plan_count;
	figures->limit_bytes = step_plan_limit();
}

/*
 * parse_error_callback
 *		Point the cursor of a syntax error into the statement of the step,
 *		not into the query that called us (as SPI does for its queries).
 */
static void
parse_error_callback(void *arg)
{
	int			position = geterrposition();

	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery((const char *) arg);
	}
}

/*
 * count_statements
 *		Number of statements in a SQL string.  A syntax error is raised
 *		(SQLSTATE 42601) as the parser reports it.
 */
static int
count_statements(const char *sql)
{
	ErrorContextCallback errcallback;
	List	   *stmts;

	errcallback.callback = parse_error_callback;
	errcallback.arg = unconstify(char *, sql);
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);

	error_context_stack = errcallback.previous;

	return list_length(stmts);
}

/*
 * step_watchdog_handler
 *		The step went on past its timeout and the grace: end the process as
 *		die() would (a FATAL error at the next interrupt check, which no
 *		exception handler catches).  The journal (journal.c) then counts the
 *		attempt as failed, and the launcher starts a new dispatcher at once.
 */
static void
step_watchdog_handler(void)
{
	orchestrator_watchdog_fired = true;
	ProcDiePending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * orchestrator_enable_step_watchdog
 *		In a dispatcher: steps run from now on have a watchdog.
 */
void
orchestrator_enable_step_watchdog(void)
{
	if (watchdog_timeout == MAX_TIMEOUTS)
		watchdog_timeout = RegisterTimeout(USER_TIMEOUT, step_watchdog_handler);
}

/*
 * orchestrator_engine_guard_arm
 *		Arm the engine's guard: the dispatcher's own work fails with a
 *		statement timeout (57014) after "ms".  Steps run meanwhile suspend it
 *		and arm it afresh when their statement is done.
 */
void
orchestrator_engine_guard_arm(int ms)
{
	engine_guard_ms = ms;
	if (ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, ms);
}

/*
 * orchestrator_engine_guard_disarm
 *		Disarm the engine's guard.  A guard that fired just before is served
 *		first, so that its error belongs to the work it limited (the step in
 *		hand), not to whatever comes next.
 */
void
orchestrator_engine_guard_disarm(void)
{
	if (engine_guard_ms > 0)
	{
		CHECK_FOR_INTERRUPTS();
		disable_timeout(STATEMENT_TIMEOUT, false);
	}
	engine_guard_ms = 0;
}

/* After disable_all_timeouts() (error recovery): the guard is gone. */
void
orchestrator_engine_guard_forget(void)
{
	engine_guard_ms = 0;
}

/*
 * arm_step_timeout
 *		Make STATEMENT_TIMEOUT fire timeout_ms from now, unless a statement
 *		timeout of the caller fires earlier anyway.  The caller's timeout is
 *		remembered so that disarm_step_timeout() can put it back: a plain
 *		backend uses the same timer for statement_timeout.  The engine's
 *		guard is not the caller's timeout: it is suspended instead.  In a
 *		dispatcher the watchdog is armed for timeout + grace.
 */
static void
arm_step_timeout(StepTimeout *st, int timeout_ms)
{
	TimestampTz finish;

	st->armed = false;
	st->watchdog = false;
	st->guard_ms = engine_guard_ms;
	if (engine_guard_ms > 0)
	{
		/* no interrupt check here: the caller is the owner already */
		disable_timeout(STATEMENT_TIMEOUT, false);
		engine_guard_ms = 0;
		st->outer_active = false;
	}
	else
		st->outer_active = get_timeout_active(STATEMENT_TIMEOUT);
	st->outer_finish = st->outer_active ? get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;

	/* no attempt outlives orchestrator.max_step_timeout */
	if (timeout_ms <= 0 || timeout_ms > orchestrator_max_step_timeout)
		timeout_ms = orchestrator_max_step_timeout;

	finish = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	if (watchdog_timeout != MAX_TIMEOUTS)
	{
		enable_timeout_at(watchdog_timeout,
						  TimestampTzPlusMilliseconds(finish, orchestrator_step_timeout_grace));
		st->watchdog = true;
	}

	if (st->outer_active && st->outer_finish <= finish)
		return;

	enable_timeout_at(STATEMENT_TIMEOUT, finish);
	st->armed = true;
}

/*
 * disarm_step_timeout
 *		Undo arm_step_timeout(); safe to call after the timeout fired.
 */
static void
disarm_step_timeout(StepTimeout *st)
{
	if (st->watchdog)
	{
		disable_timeout(watchdog_timeout, false);
		st->watchdog = false;
	}
	if (st->armed)
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (st->outer_active)
			enable_timeout_at(STATEMENT_TIMEOUT, st->outer_finish);
		st->armed = false;
	}
	if (st->guard_ms > 0)
	{
		orchestrator_engine_guard_arm(st->guard_ms);
		st->guard_ms = 0;
	}
}

/*
 * to_jsonb(record), called as a query calls it: it reads its argument's
 * type from the call's expression, which DirectFunctionCall has none of.
 */
static FmgrInfo *
record_to_jsonb_fn(void)
{
	static FmgrInfo *fn = NULL;

	if (fn == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		FmgrInfo   *f = palloc0(sizeof(FmgrInfo));

		fmgr_info_cxt(F_TO_JSONB, f, TopMemoryContext);
		f->fn_expr = (Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
										   list_make1(makeNullConst(RECORDOID, -1, InvalidOid)),
										   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		MemoryContextSwitchTo(old);
		fn = f;
	}
	return fn;
}

/*
 * row_to_jsonb
 *		A result row as a jsonb object (column name: value), built in
 *		"target" so that it survives SPI_finish().  The same as
 *		row_to_json(row)::jsonb, without printing and parsing the text.
 */
static Datum
row_to_jsonb(HeapTuple tuple, TupleDesc tupdesc, MemoryContext target)
{
	TupleDesc	desc = CreateTupleDescCopy(tupdesc);
	Datum		row;
	Datum		jsonb;
	MemoryContext oldcontext;

	/* to_jsonb() looks the row type up by its typmod */
	BlessTupleDesc(desc);
	row = heap_copy_tuple_as_datum(tuple, desc);
	jsonb = FunctionCall1(record_to_jsonb_fn(), row);

	oldcontext = MemoryContextSwitchTo(target);
	jsonb = datumCopy(jsonb, false, -1);
	MemoryContextSwitchTo(oldcontext);

	return jsonb;
}

/*
 * execute_step
 *		Execute the statement with SPI and keep its first row.  Runs with the
 *		owner's identity already in place.
 */
static void
execute_step(SqlStep *step)
{
	int			rc;

	SPI_connect();

	rc = SPI_execute_plan(step_plan(step), step->values, step->nulls, false, 0);
	if (rc == SPI_ERROR_TRANSACTION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("transaction control statements are not allowed in a sql step"),
				 errdetail("A sql step runs inside the transaction that records its result.")));
	if (rc == SPI_ERROR_COPY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY to or from the client is not allowed in a sql step")));
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not run sql step: %s", SPI_result_code_string(rc))));

	/* output functions of the row's types also run as the owner */
	step->result_isnull = true;
	if (SPI_tuptable != NULL && SPI_processed > 0)
	{
		step->result = row_to_jsonb(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									step->result_context);
		step->result_isnull = false;
	}

	SPI_finish();
}

/*
 * close_step_cursors
 *		Close the cursors the step's statement left open.
 *
 * A step runs in a subtransaction of the dispatcher's batch, and a cursor it
 * declares (DECLARE, or a function that opens one and returns its name)
 * would outlive it to the end of the batch: the next steps, of other owners,
 * could FETCH from it (rows read with the first owner's rights) or find its
 * name taken.  The portals this subtransaction made, and not running, go.
 * Cheap when there are none (the usual case): one look for a ready portal.
 * (ThereAreNoReadyPortals() leaves its scan of the portals registered when
 * it finds one; only scans begun in this subtransaction are at its level,
 * and the statement that began them has ended, so they are let go as an
 * abort of it would.)  A step run outside a subtransaction (the superuser's
 * _run_sql_step() called at top level) shares its transaction with nobody.
 */
static void
close_step_cursors(void)
{
	SubTransactionId mine = GetCurrentSubTransactionId();
	MemoryContext outer = CurrentMemoryContext;
	List	   *names = NIL;
	ListCell   *lc;

	if (GetCurrentTransactionNestLevel() <= 1 || ThereAreNoReadyPortals())
		return;
	AtEOSubXact_HashTables(false, GetCurrentTransactionNestLevel());
	SPI_connect();
	if (SPI_execute("SELECT name FROM pg_catalog.pg_cursors", true, 0) == SPI_OK_SELECT)
	{
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			MemoryContext spi = MemoryContextSwitchTo(outer);

			/* the list outlives SPI_finish() */
			if (name != NULL)
				names = lappend(names, pstrdup(name));
			MemoryContextSwitchTo(spi);
		}
	}
	SPI_finish();
	foreach(lc, names)
	{
		Portal		portal = GetPortalByName((const char *) lfirst(lc));

		if (PortalIsValid(portal) && portal->createSubid == mine &&
			portal->status != PORTAL_ACTIVE && !portal->portalPinned)
			PortalDrop(portal, false);
	}
	list_free_deep(names);
}

/*
 * run_step_as_owner
 *		Execute the step as its owner inside a security-restricted
 *		operation, with its own GUC nest level and statement timeout.
 */
static void
run_step_as_owner(SqlStep *step)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Oid			save_step_owner = orchestrator_step_owner;
	StepTimeout st;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	save_nestlevel = NewGUCNestLevel();

	SetUserIdAndSecContext(step->owner,
						   save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("search_path", STEP_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the step's own statement may call the API, as the owner (caller.c) */
	orchestrator_step_owner = step->owner;
	arm_step_timeout(&st, step->timeout_ms);

	PG_TRY();
	{
		execute_step(step);
		close_step_cursors();
	}
	PG_CATCH();
	{
		/*
		 * The timer is ours to clean up: a caller that catches the error (a
		 * PL/pgSQL exception block) must not be cancelled later.  The GUC
		 * nest level is unwound by the (sub)transaction abort that follows,
		 * as for SECURITY DEFINER functions; the user id (and the step owner
		 * that _caller() reports) are restored here as well, so that error
		 * handling never runs as the owner.
		 */
		disarm_step_timeout(&st);
		orchestrator_step_owner = save_step_owner;
		SetUserIdAndSecContext(save_userid, save_sec_context);
		PG_RE_THROW();
	}
	PG_END_TRY();

	disarm_step_timeout(&st);
	orchestrator_step_owner = save_step_owner;
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * orchestrator_run_sql_step
 *		SQL-callable form of orchestrator_execute_sql_step().
 *
 * Arguments: owner oid, sql text, args jsonb[] (NULL: no parameters; a NULL
 * element is a SQL NULL), timeout_ms integer (NULL or 0: no timeout).
 */
Datum
orchestrator_run_sql_step(PG_FUNCTION_ARGS)
{
	Datum	   *values = NULL;
	char	   *nulls = NULL;
	int			nargs = 0;
	int			timeout_ms = 0;
	Datum		result;
	bool		isnull;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function _run_sql_step"),
				 errdetail("Only the orchestrator dispatcher (a superuser) runs sql steps.")));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("owner of a sql step must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("statement of a sql step must not be null")));
	if (!PG_ARGISNULL(3))
	{
		timeout_ms = PG_GETARG_INT32(3);
		if (timeout_ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout of a sql step must not be negative"),
					 errdetail("The timeout was %d ms.", timeout_ms)));
	}
	if (!PG_ARGISNULL(2))
		orchestrator_sql_step_args(PG_GETARG_ARRAYTYPE_P(2), &nargs, &values, &nulls);

	result = orchestrator_execute_sql_step(PG_GETARG_OID(0),
										   text_to_cstring(PG_GETARG_TEXT_PP(1)),
										   nargs, values, nulls, timeout_ms, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * orchestrator_sql_step_args
 *		The parameters of a step from a jsonb[] (a NULL element is a SQL
 *		NULL), as SPI wants them.
 */
void
orchestrator_sql_step_args(ArrayType *args, int *nargs, Datum **values, char **nulls)
{
	bool	   *elem_nulls;
	int			i;

	if (ARR_NDIM(args) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("arguments of a sql step must be a one-dimensional array")));
	deconstruct_array(args, JSONBOID, -1, false, TYPALIGN_INT,
					  values, &elem_nulls, nargs);
	*nulls = palloc(sizeof(char) * Max(*nargs, 1));
	for (i = 0; i < *nargs; i++)
		(*nulls)[i] = elem_nulls[i] ? 'n' : ' ';
}

/*
 * orchestrator_execute_sql_step
 *		Run one statement as role "owner" with jsonb parameters and a
 *		timeout (0: none); return its first row as a jsonb object (in the
 *		caller's memory context), or NULL.
 *
 * The statement runs to completion (all rows of an UPDATE are updated) in
 * the caller's transaction; an error propagates to the caller, and the
 * (sub)transaction abort undoes the statement and its settings.
 */
Datum
orchestrator_execute_sql_step(Oid owner, const char *sql, int nargs,
							  Datum *values, char *nulls, int timeout_ms,
							  bool *isnull)
{
	SqlStep		step;
	Oid		   *argtypes;
	int			nstmts;
	int			i;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", owner),
				 errdetail("A sql step runs as the role that started the workflow; that role has been dropped.")));

	/* a statement with a kept plan was counted when it was prepared */
	nstmts = step_sql_known(sql) ? 1 : count_statements(sql);
	if (nstmts != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a sql step must contain exactly one statement"),
				 errdetail("The statement text contains %d statements.", nstmts),
				 errhint("Split the work into several sql steps, or wrap it in a function.")));

	argtypes = palloc(sizeof(Oid) * Max(nargs, 1));
	for (i = 0; i < nargs; i++)
		argtypes[i] = JSONBOID;

	memset(&step, 0, sizeof(step));
	step.owner = owner;
	step.sql = sql;
	step.nargs = nargs;
	step.argtypes = argtypes;
	step.values = values;
	step.nulls = nulls;
	step.timeout_ms = timeout_ms;
	step.result_context = CurrentMemoryContext;

	run_step_as_owner(&step);

	*isnull = step.result_isnull;
	return step.result;
}

/*
 * orchestrator_sql_statement_count
 *		Number of statements in a SQL string, so that a workflow definition
 *		with a multi-statement sql step is refused when it is defined.
 */
Datum
orchestrator_sql_statement_count(PG_FUNCTION_ARGS)
{
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT32(count_statements(sql));
}
