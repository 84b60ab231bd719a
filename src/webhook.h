/*-------------------------------------------------------------------------
 *
 * webhook.h
 *	  The webhook outbox's deliveries: claimed, and an outcome recorded
 *	  (webhook.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_WEBHOOK_H
#define ORCHESTRATOR_WEBHOOK_H

#include "http_types.h"

/* Claim up to max_items due deliveries (leases held by worker). */
extern int	webhook_claim(int max_items, const char *worker, bool recover,
						  WebhookClaim **claims);

/* Record one delivery's outcome, in the caller's transaction. */
extern void webhook_record(const HttpResult *r);

#endif							/* ORCHESTRATOR_WEBHOOK_H */
