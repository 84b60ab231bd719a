/*-------------------------------------------------------------------------
 *
 * http_util.h
 *	  URL checks against orchestrator.http_allowed_hosts, request header
 *	  checks, a breaker's key, Retry-After, webhook signatures
 *	  (http_util.c).  Below every other HTTP file: it uses only egress.c
 *	  and secrets.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_HTTP_UTIL_H
#define ORCHESTRATOR_HTTP_UTIL_H

/* What the URL check learnt of a URL, for the connect-time check. */
typedef struct HttpUrlTarget
{
	char	   *host;			/* lowercase, IPv6 without brackets */
	int			port;
	int			default_port;	/* of the scheme: 80 (http) or 443 (https) */
} HttpUrlTarget;

/*
 * Is a URL one we may send to?  NULL when it is; otherwise a message, with
 * *invalid telling a malformed URL from a refused host.  *hostport (when
 * not NULL) receives "host:port" of a parseable URL, *target (when not
 * NULL) its host and ports.
 */
extern char *orchestrator_http_check_url(const char *url, bool *invalid,
										 char **hostport, HttpUrlTarget *target);

/*
 * NULL for a request header line we are willing to send ("Name: value", the
 * name a token, not Host, Content-Length or Transfer-Encoding); otherwise
 * why not.
 */
extern char *orchestrator_http_header_refusal(const char *h);

/* The circuit breaker's key of a URL ("host:port"), or NULL. */
extern char *orchestrator_http_breaker_key(const char *url);

/* A Retry-After value as a delay (an interval); false: none. */
extern bool http_retry_after(const char *value, Datum *delay);

/*
 * Standard Webhooks signature "v1,<base64 HMAC-SHA256>" with a sealed
 * webhook secret (secrets.h); NULL with *err filled in when it cannot be
 * opened.
 */
struct SecretError;
extern char *orchestrator_webhook_sign_sealed(const char *sealed, int sealedlen,
											  const char *msg_id, int64 timestamp,
											  const char *body, size_t bodylen,
											  struct SecretError *err);

#endif							/* ORCHESTRATOR_HTTP_UTIL_H */
