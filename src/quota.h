/*-------------------------------------------------------------------------
 *
 * quota.h
 *	  Hard per-owner limits (orchestrator.owner_limits and their defaults).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_QUOTA_H
#define ORCHESTRATOR_QUOTA_H

#include "postgres.h"

extern void orchestrator_quota_check_start(Oid owner, Datum input, bool input_isnull);
extern void orchestrator_quota_check_result(Oid owner, Datum result, bool isnull);
extern void orchestrator_quota_check_events(Oid owner, Datum run_id);
extern void orchestrator_quota_check_session(Oid role, Datum key, Datum value, bool isnull);
extern void orchestrator_quota_check_worker_payload(Oid owner, const char *what, Datum payload, bool isnull);

#endif							/* ORCHESTRATOR_QUOTA_H */
