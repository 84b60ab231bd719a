/*-------------------------------------------------------------------------
 *
 * http_types.h
 *	  What the HTTP files hand each other: a claimed http step and a
 *	  claimed webhook delivery (to send), a finished request (to record).
 *
 * The claims are made by http_claim.c and webhook.c and read by http.c,
 * which turns them into requests; a finished request is made by http.c and
 * read by http_record.c and webhook.c.  This header depends on none of
 * them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_TYPES_H
#define ORCHESTRATOR_HTTP_TYPES_H

#include "utils/uuid.h"

/* An http step claimed, to send (http_claim.c). */
typedef struct HttpStepClaim
{
	pg_uuid_t	run_id;
	char	   *step;
	pg_uuid_t	token;			/* its lease */
	int32		attempt;		/* the attempt the lease is for */
	char	   *method;
	char	   *url;
	char	  **headers;		/* "Name: value" */
	int			nheaders;
	char	   *body;			/* NULL: none */
	int			timeout_ms;
} HttpStepClaim;

/* A webhook delivery claimed, to send (webhook.c). */
typedef struct WebhookClaim
{
	pg_uuid_t	run_id;
	pg_uuid_t	id;
	pg_uuid_t	token;			/* its lease */
	char	   *url;
	char	   *traceparent;	/* NULL: its run is gone */
	char	   *body;
	int			timeout_ms;
	char	   *sealed_secret;	/* NULL: none */
} WebhookClaim;

/* A finished request (http.c), to record (http_record.c, webhook.c). */
typedef struct HttpResult
{
	bool		is_webhook;
	pg_uuid_t	run_id;
	const char *step;			/* http steps */
	pg_uuid_t	id;				/* webhook deliveries */
	pg_uuid_t	token;			/* the lease */
	int32		attempt;		/* http steps: the attempt the lease is for (0:
								 * unknown, read with the run's lock) */
	const char *url;
	int			status;			/* HTTP status, 0 when none */
	const char *headers;		/* response headers, a JSON object */
	const char *retry_after;	/* the Retry-After header, or NULL */
	const char *body;			/* NULL: none */
	const char *body_kind;		/* json, text or base64 */
	const char *error_kind;		/* NULL, network, timeout, too_large,
								 * invalid, refused, tls, secret */
	const char *error;
	double		elapsed_ms;
	struct ErrorData *record_error; /* why recording it failed */
} HttpResult;

#endif							/* ORCHESTRATOR_HTTP_TYPES_H */
