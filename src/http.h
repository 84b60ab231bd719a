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
#include "utils/uuid.h"

/* Set up curl, the epoll set of its sockets and the wait event set. */
extern void orchestrator_http_init(void);

/* How many more requests this dispatcher may claim now. */
extern int	orchestrator_http_room(void);

/* Requests in flight or claimed and not yet sent. */
extern int	orchestrator_http_in_flight(void);

/* Finished requests whose outcome is not recorded yet. */
extern int	orchestrator_http_done_count(void);

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

extern int	orchestrator_http_claim_steps(int max_items, const char *worker, bool recover,
										  HttpStepClaim **claims);

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

/* http_record.c: record finished requests, in the caller's transaction. */
extern void http_record_batch(HttpResult *items, int n);

/* http_record.c: a Retry-After value as a delay (an interval); false: none. */
extern bool http_retry_after(const char *value, Datum *delay);

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

/* webhook.c: claim due deliveries; record one delivery's outcome. */
extern int	webhook_claim(int max_items, const char *worker, bool recover, WebhookClaim **claims);
extern void webhook_record(const HttpResult *r);

/* http_util.c: the circuit breaker's key of a URL ("host:port"), or NULL. */
extern char *orchestrator_http_breaker_key(const char *url);

/* http_record.c: when a dispatcher looks for HTTP work next (false: none). */
extern bool http_next_wake(TimestampTz *next_wake);

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

/* What the URL check learnt of a URL, for the connect-time check. */
typedef struct HttpUrlTarget
{
	char	   *host;			/* lowercase, IPv6 without brackets */
	int			port;
	int			default_port;	/* of the scheme: 80 (http) or 443 (https) */
} HttpUrlTarget;

/*
 * http_util.c: is a URL one we may send to?  NULL when it is; otherwise a
 * message, with *invalid telling a malformed URL from a refused host.
 * *hostport (when not NULL) receives "host:port" of a parseable URL,
 * *target (when not NULL) its host and ports.
 */
extern char *orchestrator_http_check_url(const char *url, bool *invalid,
										 char **hostport, HttpUrlTarget *target);

/* http_util.c: Standard Webhooks signature "v1,<base64 HMAC-SHA256>". */
extern char *orchestrator_webhook_signature(const char *key, int keylen,
											const char *msg_id, int64 timestamp,
											const char *body, size_t bodylen);

/*
 * http_util.c: the same with a sealed webhook secret (secrets.h); NULL with
 * *err filled in when it cannot be opened.
 */
struct SecretError;
extern char *orchestrator_webhook_sign_sealed(const char *sealed, int sealedlen,
											  const char *msg_id, int64 timestamp,
											  const char *body, size_t bodylen,
											  struct SecretError *err);

#endif							/* ORCHESTRATOR_HTTP_H */
