/*-------------------------------------------------------------------------
 *
 * http_claim.h
 *	  The claim of due http steps (http_claim.c), in the dispatcher's
 *	  claiming transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_CLAIM_H
#define ORCHESTRATOR_HTTP_CLAIM_H

#include "utils/timestamp.h"

#include "http_types.h"

/* Claim up to max_items due http steps (leases held by worker). */
extern int	orchestrator_http_claim_steps(int max_items, const char *worker, bool recover,
										  HttpStepClaim **claims);

/* When a dispatcher looks for HTTP work next (false: none). */
extern bool http_next_wake(TimestampTz *next_wake);

#endif							/* ORCHESTRATOR_HTTP_CLAIM_H */
