/*-------------------------------------------------------------------------
 *
 * http_util.c
 *	  URL checks against orchestrator.http_allowed_hosts, request header
 *	  checks, webhook signing, random bytes; and their SQL entry points.
 *
 * URLs are parsed with libcurl's own URL parser (curl_url), the same one the
 * transfer uses, so the host that is checked is the host that is contacted.
 * The egress policy itself (entries, ports, special addresses, the check
 * of resolved addresses) is in egress.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <netinet/in.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/timestamp.h"

#include "egress.h"
#include "http_util.h"
#include "secrets.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "orchestrator needs libcurl 7.85.0 or later (CURLOPT_PROTOCOLS_STR)"
#endif

PG_FUNCTION_INFO_V1(orchestrator_http_check_url_sql);
PG_FUNCTION_INFO_V1(orchestrator_http_check_connect);
PG_FUNCTION_INFO_V1(orchestrator_http_url_host);
PG_FUNCTION_INFO_V1(orchestrator_webhook_sign);

/*
 * orchestrator_http_check_url
 *		NULL when url is an http or https URL whose host and port
 *		orchestrator.http_allowed_hosts allows; otherwise why not (palloc'd),
 *		with *invalid set for a URL that does not parse or has another
 *		scheme.  *target (when not NULL) receives the host and ports of a
 *		URL that parses, for the connect-time check.
 */
char *
orchestrator_http_check_url(const char *url, bool *invalid, char **hostport,
							HttpUrlTarget *target)
{
	CURLU	   *h;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *result = NULL;
	char	   *bare;
	int			len;
	int			portnum;
	int			default_port;

	*invalid = false;
	if (hostport)
		*hostport = NULL;
	if (target)
		memset(target, 0, sizeof(*target));

	h = curl_url();
	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	rc = curl_url_set(h, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		*invalid = true;
		result = psprintf("invalid URL: %s", curl_url_strerror(rc));
		goto done;
	}
	if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		*invalid = true;
		result = psprintf("only http and https URLs are allowed, not \"%s\"",
						  scheme ? scheme : "");
		goto done;
	}
	if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
	{
		*invalid = true;
		result = pstrdup("invalid URL: no host");
		goto done;
	}
	if (curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		port = NULL;
	default_port = pg_strcasecmp(scheme, "https") == 0 ? 443 : 80;
	portnum = port ? atoi(port) : default_port;

	/* lowercase; IPv6 literals come with brackets */
	bare = pstrdup(host);
	for (char *c = bare; *c; c++)
		*c = pg_tolower((unsigned char) *c);
	len = strlen(bare);
	if (len >= 2 && bare[0] == '[' && bare[len - 1] == ']')
	{
		bare[len - 1] = '\0';
		bare++;
	}
	/* the circuit breaker's key: lowercase, whatever the URL's case */
	if (hostport)
	{
		*hostport = psprintf("%s:%s", host, port ? port : "");
		for (char *c = *hostport; *c; c++)
			*c = pg_tolower((unsigned char) *c);
	}
	if (target)
	{
		target->host = bare;
		target->port = portnum;
		target->default_port = default_port;
	}
	result = orchestrator_egress_check_host(bare, portnum, default_port);

done:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(h);
	return result;
}

/*
 * orchestrator_http_header_refusal
 *		NULL for a header line we are willing to send: "Name: value", the
 *		name an HTTP token (RFC 9110), no line breaks, and not one of the
 *		headers curl derives from the URL and the body (Host, Content-Length,
 *		Transfer-Encoding), which a user may not override: another Host than
 *		the checked URL's could reach another virtual host, and a wrong
 *		length or encoding would smuggle requests.  Otherwise why not.
 */
char *
orchestrator_http_header_refusal(const char *h)
{
	static const char *const reserved[] = {"host", "content-length", "transfer-encoding"};
	const char *colon = strchr(h, ':');
	size_t		namelen;

	if (strchr(h, '\r') != NULL || strchr(h, '\n') != NULL)
		return psprintf("request header \"%s\" contains a line break", h);
	if (colon == NULL || colon == h)
		return psprintf("invalid request header \"%s\"", h);
	namelen = colon - h;
	for (const char *p = h; p < colon; p++)
	{
		if (!(isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p) != NULL))
			return psprintf("request header name \"%.*s\" is not an HTTP token", (int) namelen, h);
	}
	for (size_t i = 0; i < lengthof(reserved); i++)
	{
		if (namelen == strlen(reserved[i]) && pg_strncasecmp(h, reserved[i], namelen) == 0)
			return psprintf("request header \"%.*s\" may not be set: it is derived from the URL and the body",
							(int) namelen, h);
	}
	return NULL;
}

/*
 * orchestrator_http_check_url_sql
 *		_http_check_url(url): NULL when the URL may be used, else
 *		'invalid: <message>' or 'refused: <message>'.
 */
Datum
orchestrator_http_check_url_sql(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		invalid;
	char	   *msg = orchestrator_http_check_url(url, &invalid, NULL, NULL);

	if (msg == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s: %s", invalid ? "invalid" : "refused", msg)));
}

/*
 * orchestrator_http_check_connect
 *		_http_check_connect(url, address): what a dispatcher decides for url
 *		if its host resolved to address, the URL check first, then the
 *		connect-time check: NULL when it would connect, else 'invalid: ...'
 *		or 'refused: ...'.  Lets tests judge addresses that no DNS they
 *		control returns (a name resolving to a metadata address).
 */
Datum
orchestrator_http_check_connect(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	inet	   *address = PG_GETARG_INET_PP(1);
	bool		invalid;
	HttpUrlTarget target;
	char	   *msg;
	struct sockaddr_storage ss;
	socklen_t	salen;
	char		refusal[512];

	msg = orchestrator_http_check_url(url, &invalid, NULL, &target);
	if (msg != NULL)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s: %s", invalid ? "invalid" : "refused", msg)));

	memset(&ss, 0, sizeof(ss));
	if (ip_family(address) == PGSQL_AF_INET)
	{
		struct sockaddr_in *in = (struct sockaddr_in *) &ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16) target.port);
		memcpy(&in->sin_addr, ip_addr(address), 4);
		salen = sizeof(*in);
	}
	else
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16) target.port);
		memcpy(&in6->sin6_addr, ip_addr(address), 16);
		salen = sizeof(*in6);
	}
	if (orchestrator_egress_check_address(target.host, target.default_port,
										  (struct sockaddr *) &ss, salen,
										  refusal, sizeof(refusal)))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("refused: %s", refusal)));
}

/*
 * orchestrator_http_url_host
 *		_http_url_host(url): "host:port" (lowercase host, default port made
 *		explicit) of an http(s) URL, the key of its circuit breaker; NULL
 *		when the URL does not parse.
 */
Datum
orchestrator_http_url_host(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *hostport = orchestrator_http_breaker_key(url);

	if (hostport == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(hostport));
}

/*
 * orchestrator_http_breaker_key
 *		"host:port" of an http(s) URL (lowercase, default port explicit):
 *		the key of its circuit breaker; NULL when the URL does not parse.
 */
char *
orchestrator_http_breaker_key(const char *url)
{
	bool		invalid;
	char	   *hostport;

	if (url == NULL)
		return NULL;
	(void) orchestrator_http_check_url(url, &invalid, &hostport, NULL);
	return invalid ? NULL : hostport;
}

/*
 * orchestrator_webhook_signature
 *		"v1," + base64(HMAC-SHA256(key, msg_id "." timestamp "." body)), the
 *		Standard Webhooks signature.
 */
static char *
orchestrator_webhook_signature(const char *key, int keylen, const char *msg_id,
							   int64 timestamp, const char *body, size_t bodylen)
{
	pg_hmac_ctx *ctx;
	uint8		digest[32];
	char		prefix[128];
	int			prefixlen;
	char	   *result;
	int			enclen;

	prefixlen = snprintf(prefix, sizeof(prefix), "%s." INT64_FORMAT ".", msg_id, timestamp);
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) prefix, prefixlen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, bodylen) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute HMAC-SHA256: %s", err)));
	}
	pg_hmac_free(ctx);

	result = palloc(3 + pg_b64_enc_len(sizeof(digest)) + 1);
	memcpy(result, "v1,", 3);
	enclen = pg_b64_encode((const char *) digest, sizeof(digest), result + 3,
						   pg_b64_enc_len(sizeof(digest)));
	if (enclen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode the webhook signature")));
	result[3 + enclen] = '\0';
	return result;
}

/*
 * orchestrator_webhook_sign_sealed
 *		The Standard Webhooks signature with a webhook's sealed secret
 *		(webhook_secrets.sealed_secret): opened here, used, wiped.  NULL with
 *		*err filled in when the secret cannot be opened (a missing or other
 *		key file): the caller must then not send the delivery at all.
 */
char *
orchestrator_webhook_sign_sealed(const char *sealed, int sealedlen, const char *msg_id,
								 int64 timestamp, const char *body, size_t bodylen,
								 SecretError *err)
{
	char	   *plain;
	int			plainlen;
	uint8		key[WEBHOOK_KEY_MAX_LEN];
	int			keylen;
	char	   *result = NULL;

	plain = orchestrator_secret_open(sealed, sealedlen, &plainlen, err);
	if (plain == NULL)
		return NULL;
	keylen = orchestrator_webhook_secret_key(plain, plainlen, key);
	explicit_bzero(plain, plainlen);
	pfree(plain);
	if (keylen < 0)
	{
		err->sqlerrcode = ERRCODE_DATA_CORRUPTED;
		err->message = pstrdup("sealed secret is not a webhook secret");
		err->detail = pstrdup("A webhook secret is \"whsec_\" followed by the base64 encoding of 16 to 64 bytes.");
		err->hint = pstrdup("Set a new secret with orchestrator.rotate_webhook_secret().");
		return NULL;
	}
	PG_TRY();
	{
		result = orchestrator_webhook_signature((const char *) key, keylen, msg_id, timestamp,
												body, bodylen);
	}
	PG_FINALLY();
	{
		explicit_bzero(key, sizeof(key));
	}
	PG_END_TRY();
	return result;
}

/*
 * orchestrator_webhook_sign
 *		_webhook_sign(sealed_secret text, msg_id text, ts bigint, body text):
 *		the signature header value, for tests and receivers' reference.
 *		Takes the sealed secret: no SQL function sees a plain one.
 */
Datum
orchestrator_webhook_sign(PG_FUNCTION_ARGS)
{
	text	   *sealed = PG_GETARG_TEXT_PP(0);
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ts = PG_GETARG_INT64(2);
	text	   *body = PG_GETARG_TEXT_PP(3);
	SecretError err;
	char	   *sig;

	sig = orchestrator_webhook_sign_sealed(VARDATA_ANY(sealed), VARSIZE_ANY_EXHDR(sealed),
										   msg_id, ts, VARDATA_ANY(body),
										   VARSIZE_ANY_EXHDR(body), &err);
	if (sig == NULL)
		orchestrator_secret_report(ERROR, &err);
	PG_RETURN_TEXT_P(cstring_to_text(sig));
}

/*
 * http_retry_after
 *		A Retry-After value (delay-seconds or an HTTP date) as a delay of at
 *		most a day; false when there is none or it does not parse.
 */
bool
http_retry_after(const char *value, Datum *delay)
{
	Interval   *i;
	int64		us;
	const char *p = value;
	int			digits = 0;

	if (value == NULL)
		return false;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
		p++;
	while (p[digits] >= '0' && p[digits] <= '9')
		digits++;
	if (digits > 0 && digits <= 9)
	{
		const char *q = p + digits;

		while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == '\f' || *q == '\v')
			q++;
		if (*q == '\0')
			us = (int64) atoi(p) * USECS_PER_SEC;
		else
			digits = 0;
	}
	else
		digits = 0;
	if (digits == 0)
	{
		time_t		t = curl_getdate(value, NULL);

		if (t == -1)
			return false;
		us = time_t_to_timestamptz(t) - GetCurrentTransactionStartTimestamp();
		us = Max(us, 0);
	}
	us = Min(us, USECS_PER_DAY);
	i = palloc0(sizeof(Interval));
	/* a whole day is '1 day', as least() of intervals would give */
	if (us == USECS_PER_DAY)
		i->day = 1;
	else
		i->time = us;
	*delay = IntervalPGetDatum(i);
	return true;
}
