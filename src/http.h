/*-------------------------------------------------------------------------
 *
 * http.h
 *	  HTTP steps and webhook deliveries of a dispatcher (libcurl multi).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_H
#define ORCHESTRATOR_HTTP_H

#include "utils/timestamp.h"

/* Set up curl, the epoll set of its sockets and the wait event set. */
extern void orchestrator_http_init(void);

/* How many more requests this dispatcher may claim now. */
extern int	orchestrator_http_room(void);

/* Requests in flight or claimed and not yet sent. */
extern int	orchestrator_http_in_flight(void);

/* Finished requests whose outcome is not recorded yet. */
extern int	orchestrator_http_done_count(void);

/*
 * In a transaction: claim up to max_items due requests (lease, attempt
 * counted).  When fewer were due, *next_wake is when the next one is due.
 */
extern int	orchestrator_http_claim(int max_items, bool recover,
									bool *has_next_wake, TimestampTz *next_wake);

/* The claiming transaction failed: forget what it returned. */
extern void orchestrator_http_discard_claimed(void);

/* Outside any transaction: hand the claimed requests to curl. */
extern void orchestrator_http_start_claimed(void);

/* In a transaction: record the finished requests; returns how many. */
extern int	orchestrator_http_record(void);

/* After the recording transaction committed (ok) or failed (!ok). */
extern void orchestrator_http_recorded(int n, bool ok);

/*
 * Wait up to timeout_ms for the latch, curl's sockets or curl's timer, then
 * drive the transfers.  Returns true when the latch was set.
 */
extern bool orchestrator_http_wait(long timeout_ms);

#endif							/* ORCHESTRATOR_HTTP_H */
