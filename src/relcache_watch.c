/*-------------------------------------------------------------------------
 *
 * relcache_watch.c
 *	  One relcache invalidation callback for the whole extension, shared by
 *	  the modules' caches.
 *
 * PostgreSQL keeps room for ten relcache callbacks in a process
 * (MAX_RELCACHE_CALLBACKS in utils/cache/inval.c) and ends the process
 * with FATAL when an eleventh registers; its own code takes some (the plan
 * cache, logical decoding), other extensions others.  So the modules that
 * cache what they read from tables (admission limits, the workflow lookup,
 * quotas, the rows' index information, the session store, the version
 * check) do not each register one: they add a watcher here, and this
 * module registers one callback that tells them all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/inval.h"

#include "relcache_watch.h"

#define MAX_WATCHERS 16

static RelcacheWatcher watchers[MAX_WATCHERS];
static int	nwatchers = 0;
static bool registered = false;

static void
tell_watchers(Datum arg, Oid relid)
{
	for (int i = 0; i < nwatchers; i++)
		watchers[i] (arg, relid);
}

/*
 * orchestrator_watch_relcache
 *		Call "watcher" at every relcache invalidation from now on (once,
 *		however often it is added).
 */
void
orchestrator_watch_relcache(RelcacheWatcher watcher)
{
	for (int i = 0; i < nwatchers; i++)
		if (watchers[i] == watcher)
			return;
	if (nwatchers == MAX_WATCHERS)
		elog(ERROR, "too many orchestrator relcache watchers");
	if (!registered)
	{
		CacheRegisterRelcacheCallback(tell_watchers, (Datum) 0);
		registered = true;
	}
	watchers[nwatchers++] = watcher;
}
