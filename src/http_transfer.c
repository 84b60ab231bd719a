/*-------------------------------------------------------------------------
 *
 * http_transfer.c
 *	  The transfers of a dispatcher's HTTP requests, with libcurl multi,
 *	  outside any transaction; and the table of its requests in flight.
 *
 * Each claimed request (http.c) becomes an easy handle of this dispatcher's
 * multi handle (connections are reused, capped by
 * orchestrator.http_max_concurrency and http_max_host_connections); curl's
 * sockets are kept in an epoll set, and that epoll descriptor sits in a
 * WaitEventSet beside the latch and postmaster death, so one wait sees a
 * wake-up, a shutdown and network readiness at once.  The egress policy
 * (egress.c) judges every address curl connects to.  A request is claimed
 * (not yet sent), running (in curl), then done (its outcome waits to be
 * recorded by http.c); the requests are this file's, and http.c reaches
 * them through the functions of http_transfer.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "egress.h"
#include "guc.h"
#include "http_transfer.h"
#include "http_util.h"

#if LIBCURL_VERSION_NUM < 0x075500
#error "orchestrator needs libcurl 7.85.0 or later (CURLOPT_PROTOCOLS_STR)"
#endif

#define HTTP_EPOLL_EVENTS		256

/* External descriptors left for the process itself (wait event sets...). */
#define HTTP_RESERVED_EXTERNAL_FDS	16

static CURLM *multi = NULL;
static int	epoll_fd = -1;
static WaitEventSet *wait_set = NULL;

/* curl's timer: when to call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) */
static bool timer_set = false;
static TimestampTz timer_due = 0;

static dlist_head claimed = DLIST_STATIC_INIT(claimed);	/* not yet sent */
static dlist_head running = DLIST_STATIC_INIT(running);	/* in curl */
static dlist_head done = DLIST_STATIC_INIT(done);	/* outcome to record */
static int	n_claimed = 0;
static int	n_running = 0;
static int	n_done = 0;

/*
 * Easy handles of finished requests, kept for the next ones (reset, not
 * freed and made again: a handle is tens of kilobytes of curl's state); at
 * most as many as requests may be in flight.
 */
static CURL **spare_easy = NULL;
static int	n_spare_easy = 0;
static int	max_spare_easy = 0;

/* settings applied to the multi handle */
static int	applied_concurrency = -1;
static bool fd_cap_logged = false;
static int	applied_host_connections = -1;

/*
 * socket_callback
 *		curl tells which sockets to watch for what: mirror it in the epoll
 *		set.  Must not throw (curl is on the stack).  A socket in the set is
 *		marked with curl_multi_assign() (curl forgets the mark when it
 *		removes the socket), so that a socket is added, or changed, with one
 *		system call: a kept connection leaves the set after each request and
 *		comes back with the next.
 */
static int
socket_callback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		(void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (socketp != NULL)
	{
		if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
			(void) epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s, &ev);
		return 0;
	}
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
		(void) epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev);
	curl_multi_assign(multi, s, (void *) &epoll_fd);
	return 0;
}

/*
 * open_socket_callback
 *		Every connection curl opens comes here, with the address it is about
 *		to connect to (after DNS, for each address it tries; a reused
 *		connection was opened here too).  The egress policy judges that
 *		address: a name that resolves to the server's own or the cloud's
 *		metadata addresses is refused here, whatever the URL check said.
 *		Allowed sockets are opened through PostgreSQL's accounting of
 *		external file descriptors, so that sockets and the backend's own
 *		files never exceed the process's open-file limit together.  Must not
 *		throw.
 */
static curl_socket_t
open_socket_callback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HttpRequest *req = (HttpRequest *) clientp;
	curl_socket_t s;
	char		refusal[sizeof(req->egress_refusal)];

	if (!orchestrator_egress_check_address(req->host, req->default_port,
										   &address->addr, address->addrlen,
										   refusal, sizeof(refusal)))
	{
		if (req->egress_refusal[0] == '\0')
			strlcpy(req->egress_refusal, refusal, sizeof(req->egress_refusal));
		errno = EACCES;
		return CURL_SOCKET_BAD;
	}
	req->egress_passed = true;

	if (!AcquireExternalFD())
	{
		errno = EMFILE;
		return CURL_SOCKET_BAD;
	}
	s = socket(address->family, address->socktype, address->protocol);
	if (s == CURL_SOCKET_BAD)
		ReleaseExternalFD();
	return s;
}

/*
 * prereq_callback
 *		Called before each request is sent, on a new or a reused connection,
 *		with the address it is connected to: the egress policy judges that
 *		address again.  A connection kept open for reuse was opened under
 *		the allow-list of its time; this keeps it from carrying requests the
 *		current one refuses.  Must not throw.
 */
static int
prereq_callback(void *clientp, char *conn_primary_ip, char *conn_local_ip,
				int conn_primary_port, int conn_local_port)
{
	HttpRequest *req = (HttpRequest *) clientp;
	struct sockaddr_storage ss;
	socklen_t	salen = sizeof(ss);
	struct sockaddr_in *in = (struct sockaddr_in *) &ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
	char		refusal[sizeof(req->egress_refusal)];

	/* an address that does not parse stays AF_UNSPEC: refused */
	memset(&ss, 0, sizeof(ss));
	if (conn_primary_ip != NULL && inet_pton(AF_INET, conn_primary_ip, &in->sin_addr) == 1)
	{
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16) conn_primary_port);
		salen = sizeof(*in);
	}
	else if (conn_primary_ip != NULL && inet_pton(AF_INET6, conn_primary_ip, &in6->sin6_addr) == 1)
	{
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16) conn_primary_port);
		salen = sizeof(*in6);
	}
	if (orchestrator_egress_check_address(req->host, req->default_port,
										  (struct sockaddr *) &ss, salen,
										  refusal, sizeof(refusal)))
		return CURL_PREREQFUNC_OK;
	strlcpy(req->egress_refusal, refusal, sizeof(req->egress_refusal));
	req->egress_stopped = true;
	return CURL_PREREQFUNC_ABORT;
}

static int
close_socket_callback(void *clientp, curl_socket_t s)
{
	int			rc = close(s);

	ReleaseExternalFD();
	return rc;
}

/*
 * effective_concurrency
 *		orchestrator.http_max_concurrency, lowered to the sockets PostgreSQL
 *		lets this process hold (AcquireExternalFD allows a third of
 *		max_safe_fds, and the process holds a few itself: the epoll
 *		descriptors of its wait event sets).  Requests beyond it wait in the
 *		queue instead of failing to connect.
 */
static int
effective_concurrency(void)
{
	int			fd_cap = Max(max_safe_fds / 3 - HTTP_RESERVED_EXTERNAL_FDS, 1);

	if (orchestrator_http_max_concurrency <= fd_cap)
		return orchestrator_http_max_concurrency;
	if (!fd_cap_logged)
		ereport(LOG,
				(errmsg("orchestrator: %d HTTP requests in flight at most, not %d (orchestrator.http_max_concurrency)",
						fd_cap, orchestrator_http_max_concurrency),
				 errdetail("Each request may hold a connection, and this process may open %d more file descriptors.",
						   fd_cap),
				 errhint("Raise max_files_per_process (and the open-file limit of the server) for more.")));
	fd_cap_logged = true;
	return fd_cap;
}

/*
 * timer_callback
 *		curl wants to be called back after timeout_ms (-1: never).
 */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_set = false;
	else
	{
		timer_set = true;
		timer_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/*
 * write_callback
 *		Collect the response body, up to orchestrator.http_max_response_size.
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HttpRequest *req = (HttpRequest *) userp;
	size_t		len = size * nmemb;

	if ((Size) req->response.len + len > (Size) orchestrator_http_max_response_size * 1024)
	{
		req->too_large = true;
		return 0;				/* aborts the transfer */
	}
	/* appendBinaryStringInfo can only fail by running out of memory */
	appendBinaryStringInfo(&req->response, data, len);
	return len;
}

/*
 * header_callback
 *		Collect response headers as JSON members "name": "value" (names in
 *		lowercase).  A new status line (after 100 Continue) starts over.
 *
 * curl calls this (and write_callback) from curl_multi_socket_action() in
 * the dispatcher's loop context, which is reset every turn: whatever must
 * last goes into req->context.
 */
static size_t
header_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HttpRequest *req = (HttpRequest *) userp;
	size_t		len = size * nmemb;
	char	   *line;
	char	   *colon;
	char	   *value;
	char	   *end;

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		resetStringInfo(&req->resp_headers);
		return len;
	}
	if (req->resp_headers.len > 256 * 1024)
		return len;				/* enough headers */

	line = palloc(len + 1);
	memcpy(line, data, len);
	line[len] = '\0';
	colon = strchr(line, ':');
	if (colon != NULL && colon != line)
	{
		*colon = '\0';
		for (char *c = line; *c; c++)
			*c = pg_tolower((unsigned char) *c);
		value = colon + 1;
		while (*value == ' ' || *value == '\t')
			value++;
		end = value + strlen(value);
		while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			*--end = '\0';
		if (strcmp(line, "content-type") == 0)
			req->content_type = MemoryContextStrdup(req->context, value);
		if (strcmp(line, "retry-after") == 0 && pg_verifymbstr(value, strlen(value), true))
			req->retry_after = MemoryContextStrdup(req->context, value);
		/* headers are octets; keep only what is valid in the database encoding */
		if (pg_verifymbstr(line, strlen(line), true) &&
			pg_verifymbstr(value, strlen(value), true))
		{
			if (req->resp_headers.len > 0)
				appendStringInfoString(&req->resp_headers, ", ");
			escape_json(&req->resp_headers, line);
			appendStringInfoString(&req->resp_headers, ": ");
			escape_json(&req->resp_headers, value);
		}
	}
	pfree(line);
	return len;
}

/*
 * http_cleanup
 *		At process exit: abandon the transfers (their leases expire) and
 *		free curl's handles.
 */
static void
http_cleanup(int code, Datum arg)
{
	dlist_mutable_iter iter;

	if (multi == NULL)
		return;
	dlist_foreach_modify(iter, &running)
	{
		HttpRequest *req = dlist_container(HttpRequest, node, iter.cur);

		if (req->easy)
		{
			curl_multi_remove_handle(multi, req->easy);
			curl_easy_cleanup(req->easy);
			req->easy = NULL;
		}
		if (req->header_list)
			curl_slist_free_all(req->header_list);
	}
	while (n_spare_easy > 0)
		curl_easy_cleanup(spare_easy[--n_spare_easy]);
	curl_multi_cleanup(multi);
	multi = NULL;
	if (epoll_fd >= 0)
		close(epoll_fd);
	epoll_fd = -1;
}

/*
 * orchestrator_http_init
 *		Set up this dispatcher's multi handle and the wait event set.
 */
void
orchestrator_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	ReserveExternalFD();
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create an epoll descriptor: %m")));

	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);

	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);

	on_proc_exit(http_cleanup, (Datum) 0);
}

/*
 * apply_settings
 *		Bring the multi handle's limits in line with the settings (they may
 *		change on SIGHUP).
 */
static void
apply_settings(void)
{
	if (applied_concurrency != effective_concurrency())
	{
		applied_concurrency = effective_concurrency();
		curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) applied_concurrency);
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) applied_concurrency);
	}
	if (applied_host_connections != orchestrator_http_max_host_connections)
	{
		applied_host_connections = orchestrator_http_max_host_connections;
		curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) applied_host_connections);
	}
}

int
orchestrator_http_room(void)
{
	return Max(effective_concurrency() - n_claimed - n_running, 0);
}

int
orchestrator_http_in_flight(void)
{
	return n_claimed + n_running;
}

int
orchestrator_http_done_count(void)
{
	return n_done;
}

/* A new request, in a memory context of its own. */
HttpRequest *
http_request_new(void)
{
	MemoryContext context = AllocSetContextCreate(TopMemoryContext, "orchestrator http request",
												  ALLOCSET_SMALL_SIZES);
	HttpRequest *req = MemoryContextAllocZero(context, sizeof(HttpRequest));

	req->context = context;
	return req;
}

/* A request is ready to send. */
void
http_request_claimed(HttpRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(req->context);

	initStringInfo(&req->response);
	initStringInfo(&req->resp_headers);
	MemoryContextSwitchTo(old);
	dlist_push_tail(&claimed, &req->node);
	n_claimed++;
}

/*
 * orchestrator_http_discard_claimed
 *		The claiming transaction failed: what it returned was never claimed.
 */
void
orchestrator_http_discard_claimed(void)
{
	while (!dlist_is_empty(&claimed))
	{
		HttpRequest *req = dlist_container(HttpRequest, node, dlist_pop_head_node(&claimed));

		n_claimed--;
		MemoryContextDelete(req->context);
	}
}

/*
 * finish_request
 *		A request is over (sent or not): queue its outcome for recording.
 */
static void
finish_request(HttpRequest *req, const char *error_kind, const char *error)
{
	if (error_kind)
	{
		req->error_kind = error_kind;
		req->error = MemoryContextStrdup(req->context, error);
	}
	dlist_push_tail(&done, &req->node);
	n_done++;
}

/*
 * take_easy
 *		An easy handle for a request: a spare one, reset to curl's defaults
 *		(its options are all set again below; the connections it used stay
 *		in the multi handle's cache either way), else a new one.
 */
static CURL *
take_easy(void)
{
	CURL	   *easy;

	if (n_spare_easy == 0)
		return curl_easy_init();
	easy = spare_easy[--n_spare_easy];
	curl_easy_reset(easy);
	return easy;
}

/*
 * give_back_easy
 *		A request is over: keep its handle for another, up to the number of
 *		requests that may be in flight (the setting may have been lowered).
 */
static void
give_back_easy(CURL *easy)
{
	int			want = effective_concurrency();

	if (max_spare_easy < want)
	{
		CURL	  **grown = spare_easy == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(CURL *) * want)
			: repalloc(spare_easy, sizeof(CURL *) * want);

		spare_easy = grown;
		max_spare_easy = want;
	}
	while (n_spare_easy > want)
		curl_easy_cleanup(spare_easy[--n_spare_easy]);
	if (n_spare_easy < want)
		spare_easy[n_spare_easy++] = easy;
	else
		curl_easy_cleanup(easy);
}

/*
 * start_request
 *		Hand one request to curl.  Nothing here throws after the easy handle
 *		is created except out-of-memory, which ends the process anyway.
 */
static void
start_request(HttpRequest *req)
{
	MemoryContext old = MemoryContextSwitchTo(req->context);
	bool		invalid;
	char	   *refusal;
	HttpUrlTarget target;
	CURL	   *easy;
	struct curl_slist *list = NULL;
	bool		has_content_type = false;

	/* checked again here: the settings may have changed since the claim */
	refusal = orchestrator_http_check_url(req->what.url, &invalid, NULL, &target);
	if (refusal)
	{
		finish_request(req, invalid ? "invalid" : "refused", refusal);
		MemoryContextSwitchTo(old);
		return;
	}
	req->host = target.host;
	req->default_port = target.default_port;
	for (int i = 0; i < req->what.nheaders; i++)
	{
		refusal = orchestrator_http_header_refusal(req->what.headers[i]);
		if (refusal)
		{
			curl_slist_free_all(list);
			finish_request(req, "invalid", refusal);
			MemoryContextSwitchTo(old);
			return;
		}
		if (pg_strncasecmp(req->what.headers[i], "content-type:", 13) == 0)
			has_content_type = true;
		list = curl_slist_append(list, req->what.headers[i]);
	}
	if (req->what.body && !has_content_type)
		list = curl_slist_append(list, "Content-Type: application/json");
	/* no "Expect: 100-continue" round trip for larger bodies */
	list = curl_slist_append(list, "Expect:");
	for (int i = 0; i < 3 && req->sign_headers[i]; i++)
		list = curl_slist_append(list, req->sign_headers[i]);
	req->header_list = list;

	easy = take_easy();
	if (easy == NULL)
	{
		curl_slist_free_all(list);
		req->header_list = NULL;
		finish_request(req, "network", "could not create a curl handle");
		MemoryContextSwitchTo(old);
		return;
	}
	req->easy = easy;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_URL, req->what.url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_callback);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket_callback);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_callback);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);

	/*
	 * No proxy, whatever the environment says (http_proxy, ALL_PROXY...):
	 * through a proxy, the open-socket callback would judge the proxy's
	 * address instead of the host's.
	 */
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) Max(req->what.timeout_ms, 1));
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Max(Min(req->what.timeout_ms, 30000), 1));
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "orchestrator/" ORCHESTRATOR_VERSION);
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
					 (curl_off_t) orchestrator_http_max_response_size * 1024);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);

	if (strcmp(req->what.method, "HEAD") == 0)
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->what.method, "GET") != 0)
	{
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->what.method);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->what.body ? req->what.body : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) (req->what.body ? strlen(req->what.body) : 0));
	}

	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
	{
		give_back_easy(easy);
		req->easy = NULL;
		curl_slist_free_all(list);
		req->header_list = NULL;
		finish_request(req, "network", "could not add the request to the curl multi handle");
		MemoryContextSwitchTo(old);
		return;
	}
	dlist_push_tail(&running, &req->node);
	n_running++;
	MemoryContextSwitchTo(old);
}

/*
 * orchestrator_http_start_claimed
 *		Send what the last claim returned.  Called outside any transaction.
 */
void
orchestrator_http_start_claimed(void)
{
	apply_settings();
	while (!dlist_is_empty(&claimed))
	{
		HttpRequest *req = dlist_container(HttpRequest, node, dlist_pop_head_node(&claimed));

		n_claimed--;
		if (req->sign_error)
			finish_request(req, "secret", req->sign_error);	/* never unsigned */
		else
			start_request(req);
	}
}

/*
 * collect_finished
 *		Move the transfers curl reports as done to the "done" list.
 */
static void
collect_finished(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpRequest *req;
		CURL	   *easy;
		CURLcode	res;
		long		status = 0;
		curl_off_t	total_us = 0;
		const char *kind = NULL;
		const char *text = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		easy = msg->easy_handle;
		res = msg->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
		curl_multi_remove_handle(multi, easy);
		give_back_easy(easy);
		req->easy = NULL;
		curl_slist_free_all(req->header_list);
		req->header_list = NULL;
		dlist_delete(&req->node);
		n_running--;

		req->elapsed_ms = total_us / 1000.0;

		/*
		 * The egress policy refused every address of the host, or the
		 * connection the request was to use: not a network failure, and
		 * not retried.  (When some address was allowed and failed to
		 * connect, it is the network's failure.)
		 */
		if (res != CURLE_OK && req->egress_refusal[0] != '\0' &&
			(req->egress_stopped || !req->egress_passed))
		{
			finish_request(req, "refused", req->egress_refusal);
			continue;
		}

		switch (res)
		{
			case CURLE_OK:
				req->status = (int) status;
				break;
			case CURLE_OPERATION_TIMEDOUT:
				kind = "timeout";
				break;
			case CURLE_WRITE_ERROR:
			case CURLE_FILESIZE_EXCEEDED:
				if (req->too_large || res == CURLE_FILESIZE_EXCEEDED)
				{
					kind = "too_large";
					text = psprintf("response larger than orchestrator.http_max_response_size (%d kB)",
									orchestrator_http_max_response_size);
				}
				else
					kind = "network";
				break;
			case CURLE_UNSUPPORTED_PROTOCOL:
			case CURLE_URL_MALFORMAT:
				kind = "invalid";
				break;
			case CURLE_PEER_FAILED_VERIFICATION:
			case CURLE_SSL_CERTPROBLEM:
			case CURLE_SSL_CACERT_BADFILE:
				kind = "tls";
				break;
			default:
				kind = "network";
				break;
		}
		if (kind)
		{
			/* a response that was cut short still tells its status */
			if (status > 0 && strcmp(kind, "too_large") != 0)
				req->status = 0;
			if (text == NULL)
				text = req->errbuf[0] ? req->errbuf : curl_easy_strerror(res);
			finish_request(req, kind, text);
		}
		else
			finish_request(req, NULL, NULL);
	}
}

/*
 * drive
 *		Let curl act on the sockets that are ready and on its timer.
 */
static void
drive(void)
{
	struct epoll_event events[HTTP_EPOLL_EVENTS];
	int			running;
	int			n;

	if (multi == NULL)
		return;
	do
	{
		n = epoll_wait(epoll_fd, events, HTTP_EPOLL_EVENTS, 0);
		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			if (events[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (events[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (events[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, events[i].data.fd, flags, &running);
		}
	} while (n == HTTP_EPOLL_EVENTS);

	/* curl may ask for "at once" again while acting; bounded */
	for (int i = 0; i < 4 && timer_set && timer_due <= GetCurrentTimestamp(); i++)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_finished();
}

/*
 * orchestrator_http_wait
 *		Wait for the latch, postmaster death, curl's sockets or its timer,
 *		up to timeout_ms (0: just look), then drive the transfers.
 */
bool
orchestrator_http_wait(long timeout_ms)
{
	WaitEvent	events[3];
	int			n;
	bool		latch_set = false;
	long		timeout = timeout_ms;

	if (timer_set)
		timeout = Min(timeout, Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), timer_due), 0));
	/* TimestampDifferenceMilliseconds rounds down: never wait 0 ms for a timer in the future */
	if (timer_set && timeout == 0 && timer_due > GetCurrentTimestamp() && timeout_ms > 0)
		timeout = 1;

	n = WaitEventSetWait(wait_set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_set = true;
		}
	}
	drive();
	return latch_set;
}

/*
 * http_request_done_next
 *		The first finished request (after == NULL), or the one finished
 *		after "after"; NULL when there is no other.  Oldest first.
 */
HttpRequest *
http_request_done_next(HttpRequest *after)
{
	if (after == NULL)
		return dlist_is_empty(&done) ? NULL : dlist_container(HttpRequest, node, dlist_head_node(&done));
	if (!dlist_has_next(&done, &after->node))
		return NULL;
	return dlist_container(HttpRequest, node, dlist_next_node(&done, &after->node));
}

/*
 * http_request_forget
 *		A finished request was recorded, or given up: free it.
 */
void
http_request_forget(HttpRequest *req)
{
	dlist_delete(&req->node);
	n_done--;
	MemoryContextDelete(req->context);
}
