/*-------------------------------------------------------------------------
 *
 * cache_figures.h
 *	  The figures of a per-process cache, as each cache counts them and the
 *	  dispatchers' slots (shmem.h) show them to health() and metrics().
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_CACHE_FIGURES_H
#define ORCHESTRATOR_CACHE_FIGURES_H

#include "postgres.h"

typedef struct CacheFigures
{
	uint64		entries;
	uint64		bytes;
	uint64		limit_bytes;
	uint64		hits;
	uint64		misses;
	uint64		evictions;
} CacheFigures;

#endif							/* ORCHESTRATOR_CACHE_FIGURES_H */
