/*-------------------------------------------------------------------------
 *
 * breaker.h
 *	  Circuit breakers of http steps (breaker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_BREAKER_H
#define ORCHESTRATOR_BREAKER_H

#include "postgres.h"

#include "utils/timestamp.h"
#include "utils/uuid.h"

/* What one recorded request tells the breaker of its owner and host. */
typedef struct BreakerOutcome
{
	Oid			owner;
	char	   *host;			/* "host:port" */
	bool		failed;			/* a failure of the host, else a success */
	pg_uuid_t	run_id;			/* whose request it was (its events) */
	char	   *step;
	int			order;			/* in the batch */
} BreakerOutcome;

extern char *breaker_tag(Oid owner, const char *host);
extern bool breaker_admit(Oid owner, const char *host, Datum probe_lease, TimestampTz *wait);
extern void breaker_apply(BreakerOutcome *outcomes, int n);

#endif							/* ORCHESTRATOR_BREAKER_H */
