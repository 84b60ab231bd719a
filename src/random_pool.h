/*-------------------------------------------------------------------------
 *
 * random_pool.h
 *	  Random bytes for identifiers, drawn from a per-process pool.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_RANDOM_POOL_H
#define ORCHESTRATOR_RANDOM_POOL_H

extern void random_pool_fill(void *dst, size_t len);

#endif
