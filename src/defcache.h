/*-------------------------------------------------------------------------
 *
 * defcache.h
 *	  The figures of the per-process caches; the step definitions' cache
 *	  (defcache.c) is bounded in bytes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_DEFCACHE_H
#define ORCHESTRATOR_DEFCACHE_H

#include "postgres.h"

/* Figures of a per-process cache, for health() and metrics(). */
typedef struct CacheFigures
{
	uint64		entries;
	uint64		bytes;
	uint64		limit_bytes;
	uint64		hits;
	uint64		misses;
	uint64		evictions;
} CacheFigures;

extern void defcache_figures(CacheFigures *figures);

#endif							/* ORCHESTRATOR_DEFCACHE_H */
