/*-------------------------------------------------------------------------
 *
 * http_transfer.h
 *	  The transfers of a dispatcher's HTTP requests (libcurl multi) and its
 *	  table of requests in flight (http_transfer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_TRANSFER_H
#define ORCHESTRATOR_HTTP_TRANSFER_H

#include <curl/curl.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/uuid.h"

#include "http_types.h"

/*
 * A request: what to send (filled in by http.c from a claim), the transfer,
 * and the outcome (read by http.c to record it).
 */
typedef struct HttpRequest
{
	dlist_node	node;
	MemoryContext context;		/* everything below except curl's own */

	/*
	 * what to send: an http step's claim (http_claim.c), copied, or a
	 * webhook delivery's in the same shape (step NULL, attempt 0; webhook.c)
	 */
	bool		is_webhook;
	HttpStepClaim what;
	pg_uuid_t	id;				/* webhook delivery */
	char	   *sign_headers[3];	/* webhooks: webhook-id, -timestamp, -signature */
	char	   *sign_error;		/* webhooks: why it could not be signed (not sent) */

	/* the connect-time egress checks (open_socket/prereq_callback) */
	char	   *host;			/* the URL's host, as the URL check saw it */
	int			default_port;	/* of the URL's scheme */
	bool		egress_passed;	/* a socket was opened to an allowed address */
	bool		egress_stopped; /* the request's connection was refused */
	char		egress_refusal[512];	/* why (the first refusal) */

	/* the transfer */
	CURL	   *easy;
	struct curl_slist *header_list;
	char		errbuf[CURL_ERROR_SIZE];
	StringInfoData response;
	StringInfoData resp_headers;	/* "name": "value" pairs, JSON */
	bool		too_large;
	char	   *content_type;
	char	   *retry_after;	/* the Retry-After header (the last one) */

	/* the outcome */
	int			status;			/* HTTP status, 0 when none */
	const char *error_kind;		/* NULL, network, timeout, too_large,
								 * invalid, refused, tls */
	char	   *error;
	double		elapsed_ms;
	int			record_failures;
} HttpRequest;

/* Set up curl, the epoll set of its sockets and the wait event set. */
extern void orchestrator_http_init(void);

/* How many more requests this dispatcher may claim now. */
extern int	orchestrator_http_room(void);

/* Requests in flight or claimed and not yet sent. */
extern int	orchestrator_http_in_flight(void);

/* Finished requests whose outcome is not recorded yet. */
extern int	orchestrator_http_done_count(void);

/* A new request, in a memory context of its own (req->context). */
extern HttpRequest *http_request_new(void);

/* A request filled in is claimed: it is sent by orchestrator_http_start_claimed. */
extern void http_request_claimed(HttpRequest *req);

/* The claiming transaction failed: forget what it returned. */
extern void orchestrator_http_discard_claimed(void);

/* Outside any transaction: hand the claimed requests to curl. */
extern void orchestrator_http_start_claimed(void);

/*
 * Wait up to timeout_ms for the latch, curl's sockets or curl's timer, then
 * drive the transfers.  Returns true when the latch was set.
 */
extern bool orchestrator_http_wait(long timeout_ms);

/* The finished requests, oldest first: the first (after NULL), the next. */
extern HttpRequest *http_request_done_next(HttpRequest *after);

/* A finished request recorded or given up: free it. */
extern void http_request_forget(HttpRequest *req);

#endif							/* ORCHESTRATOR_HTTP_TRANSFER_H */
