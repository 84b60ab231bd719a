/*-------------------------------------------------------------------------
 *
 * seq_cache.h
 *	  Each run's last event sequence number, remembered so that an append
 *	  need not read it back from the history (seq_cache.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_SEQ_CACHE_H
#define ORCHESTRATOR_SEQ_CACHE_H

extern void seq_cache_install(void);
extern bool seq_cache_begin(Oid partition, Datum run_id, int64 *last);
extern void seq_cache_end(Oid partition, Datum run_id, int64 last);

#endif							/* ORCHESTRATOR_SEQ_CACHE_H */
