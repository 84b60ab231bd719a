/*-------------------------------------------------------------------------
 *
 * lookup_cache.h
 *	  Workflows' latest versions and owners, and whether webhook
 *	  subscriptions exist, cached per process (lookup_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_LOOKUP_CACHE_H
#define ORCHESTRATOR_LOOKUP_CACHE_H

extern bool lookup_workflow(const char *name, int32 asked, int32 *version, Oid *owner);
extern bool lookup_webhooks_exist(void);

#endif							/* ORCHESTRATOR_LOOKUP_CACHE_H */
