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

#endif							/* ORCHESTRATOR_QUOTA_H */
