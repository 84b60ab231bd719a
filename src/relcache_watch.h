/*-------------------------------------------------------------------------
 *
 * relcache_watch.h
 *	  One relcache invalidation callback for the whole extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RELCACHE_WATCH_H
#define ORCHESTRATOR_RELCACHE_WATCH_H

#include "postgres.h"

/* Told of every relcache invalidation (relid InvalidOid: of all relations). */
typedef void (*RelcacheWatcher) (Datum arg, Oid relid);

extern void orchestrator_watch_relcache(RelcacheWatcher watcher);

#endif							/* ORCHESTRATOR_RELCACHE_WATCH_H */
