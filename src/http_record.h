/*-------------------------------------------------------------------------
 *
 * http_record.h
 *	  What finished requests mean, recorded in the caller's transaction
 *	  (http_record.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_RECORD_H
#define ORCHESTRATOR_HTTP_RECORD_H

#include "http_types.h"

/* Record finished requests, in the caller's transaction. */
extern void http_record_batch(HttpResult *items, int n);

#endif							/* ORCHESTRATOR_HTTP_RECORD_H */
