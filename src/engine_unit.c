/*-------------------------------------------------------------------------
 *
 * engine_unit.c
 *	  Units of work of the engine: an SPI connection, the search_path its
 *	  statements are prepared under, the sql batch's chain hook, nesting
 *	  (an API call made by a step's statement is a unit inside the
 *	  batch's); and engine_try(), the one way an error is contained.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "defcache.h"
#include "engine_events.h"
#include "engine_unit.h"
#include "version.h"

/* A unit of work of the engine (see engine_unit()). */
typedef struct EngineState
{
	int			nestlevel;		/* GUC nest level of its search_path, or -1 */
	int			depth;			/* units it runs inside, plus one */
	EngineChainHook chain;		/* set by the unit itself (sql_steps.c) */
} EngineState;

/*
 * The current unit of work.  Units nest: a sql step's statement may call
 * complete_step() or signal_workflow(); each entry point saves the outer
 * unit and puts it back, also when an error unwinds through it.
 */
static EngineState engine = {-1, 0};

/*
 * engine_begin
 *		Start a unit of work (a dispatcher batch, a call of the API), saving
 *		the one it runs inside (if any) in *outer: the search_path the
 *		statements are prepared under (their names are qualified; nothing
 *		else may resolve them).
 *		Memory goes to the SPI connection of the unit.
 */
static void
engine_begin(EngineState *outer)
{
	*outer = engine;
	engine.depth = outer->depth + 1;
	engine.nestlevel = -1;
	engine.chain = NULL;
	if (strcmp(namespace_search_path, ENGINE_SEARCH_PATH) != 0)
	{
		engine.nestlevel = NewGUCNestLevel();
		(void) set_config_option("search_path", ENGINE_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	}
	if (engine.depth == 1)
		engine_def_cache_check();
}

static void
engine_end(EngineState *outer)
{
	if (engine.nestlevel >= 0)
		AtEOXact_GUC(true, engine.nestlevel);
	engine = *outer;
}

/*
 * engine_unit
 *		Run "work" as a unit of work, in an SPI connection of its own.  The
 *		outer unit is put back afterwards, also when an error unwinds
 *		through this one (the (sub)transaction's abort then releases this
 *		unit's memory and setting).
 */
void
engine_unit(void (*work) (void *arg), void *arg)
{
	EngineState outer;

	orchestrator_require_current_schema();
	SPI_connect();
	engine_begin(&outer);
	PG_TRY();
	{
		work(arg);
	}
	PG_CATCH();
	{
		engine = outer;
		(void) engine_take_deferred_start();
		PG_RE_THROW();
	}
	PG_END_TRY();
	engine_end(&outer);
	SPI_finish();
}

/*
 * engine_set_chain_hook
 *		The current unit offers the sql steps made ready to "hook" (NULL:
 *		none); units run inside it don't (an API call made by a step's
 *		statement queues what it makes ready).
 */
void
engine_set_chain_hook(EngineChainHook hook)
{
	engine.chain = hook;
}

/* Offer a sql step made ready to the unit's chain hook: true when taken. */
bool
engine_chain_offer(EngineRun *run, const char *step, int32 attempt)
{
	return engine.chain != NULL && engine.chain(run, step, attempt);
}

/*
 * engine_try
 *		Run fn(arg) in a subtransaction of its own.  True when it returned;
 *		false when it raised an error: the subtransaction is then rolled
 *		back (whatever fn did is undone) and the error returned in *error,
 *		in the caller's memory context.  The one way the engine contains an
 *		error: a sql step's statement, a timer, a value that is no time.
 */
bool
engine_try(void (*fn) (void *arg), void *arg, ErrorData **error)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		ok = false;
	}
	PG_END_TRY();
	return ok;
}
