/*-------------------------------------------------------------------------
 *
 * otlp.c
 *	  Spans of runs and step attempts, exported over OTLP/HTTP (JSON).
 *
 * With orchestrator.otlp_endpoint set, every committed end of a step
 * attempt (succeeded, retrying, failed, dead) and of a run (succeeded,
 * failed, cancelled) becomes a span: the transition is noted with the
 * metrics of its transaction (metrics.c) and, at commit, copied into a
 * bounded ring in shared memory.  A run's span is the parent of its
 * attempts' spans, and its own parent is the span of the caller that
 * passed option "traceparent" (a root span otherwise); span ids are derived
 * from run id, step and attempt (trace.c), so they match the traceparent
 * headers of HTTP requests and of claim_steps().  A caller's traceparent
 * whose sampled flag is clear makes no spans.
 *
 * The exporter, a background worker of its own without a database
 * connection, takes up to OTLP_BATCH spans at a time and posts them as one
 * ExportTraceServiceRequest to <endpoint>/v1/traces with libcurl.  Neither
 * a dispatcher nor an application backend ever waits for the collector:
 * when the ring is full, new spans are dropped; when a post fails (the
 * collector is down, slow beyond OTLP_TIMEOUT_MS, or answers other than
 * 2xx), its spans are dropped; both are counted in
 * orchestrator_otlp_spans_dropped_total.  Spans are not kept across a
 * restart.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/md5.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "guc.h"
#include "otlp.h"
#include "workers.h"

#define ORCHESTRATOR_OTLP_TYPE "orchestrator otlp exporter"

/* Spans per request; the exporter is woken when this many wait. */
#define OTLP_BATCH 512
/* How long a post may take, and how often waiting spans are sent. */
#define OTLP_TIMEOUT_MS 5000
#define OTLP_CONNECT_TIMEOUT_MS 2000
#define OTLP_FLUSH_MS 1000

typedef struct OtlpShared
{
	LWLock	   *lock;
	int			pgprocno;		/* the exporter's latch, -1 when none */
	uint64		head;			/* spans written so far */
	uint64		tail;			/* spans taken by the exporter so far */
	pg_atomic_uint64 exported;	/* sent and accepted */
	pg_atomic_uint64 dropped;	/* queue full, collector failed, or turned off */
	int			capacity;
	OtlpSpan	spans[FLEXIBLE_ARRAY_MEMBER];
} OtlpShared;

static OtlpShared *otlp = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
otlp_shmem_size(void)
{
	return add_size(offsetof(OtlpShared, spans),
					mul_size(orchestrator_otlp_queue_size, sizeof(OtlpSpan)));
}

static void
otlp_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(otlp_shmem_size()));
	RequestNamedLWLockTranche("orchestrator otlp", 1);
}

static void
otlp_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	otlp = ShmemInitStruct("orchestrator otlp", otlp_shmem_size(), &found);
	if (!found)
	{
		otlp->lock = &(GetNamedLWLockTranche("orchestrator otlp"))->lock;
		otlp->pgprocno = -1;
		otlp->head = otlp->tail = 0;
		pg_atomic_init_u64(&otlp->exported, 0);
		pg_atomic_init_u64(&otlp->dropped, 0);
		otlp->capacity = orchestrator_otlp_queue_size;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Spans exported and dropped since the server started (for metrics.c). */
void
orchestrator_otlp_counts(uint64 *exported, uint64 *dropped)
{
	*exported = otlp != NULL ? pg_atomic_read_u64(&otlp->exported) : 0;
	*dropped = otlp != NULL ? pg_atomic_read_u64(&otlp->dropped) : 0;
}

bool
orchestrator_otlp_enabled(void)
{
	return otlp != NULL && orchestrator_otlp_endpoint != NULL && orchestrator_otlp_endpoint[0] != '\0';
}

/*
 * orchestrator_span_id
 *		left(md5(run_id || '/' || coalesce(step, '') || '/' || attempt), 16),
 *		as orchestrator._span_id() computes it (attempt 0 for a run).  An
 *		empty string when md5 is not available.
 */
void
orchestrator_span_id(const char *run_id, const char *step, int32 attempt, char *out)
{
	char		buf[256];
	char		hex[33];
	const char *errstr = NULL;
	int			len;

	len = snprintf(buf, sizeof(buf), "%s/%s/%d", run_id, step ? step : "", step ? attempt : 0);
	out[0] = '\0';
	if (len < 0 || len >= (int) sizeof(buf) || !pg_md5_hash(buf, len, hex, &errstr))
		return;
	memcpy(out, hex, 16);
	out[16] = '\0';
}

/*
 * orchestrator_otlp_push
 *		Copy a committed span into the ring and wake the exporter when a
 *		batch is waiting.  Runs in a commit callback: what does not fit is
 *		dropped and counted.
 */
void
orchestrator_otlp_push(const OtlpSpan *span)
{
	bool		stored = false;
	int			procno = -1;

	if (otlp == NULL)
		return;
	LWLockAcquire(otlp->lock, LW_EXCLUSIVE);
	if (otlp->head - otlp->tail < (uint64) otlp->capacity)
	{
		otlp->spans[otlp->head % otlp->capacity] = *span;
		otlp->head++;
		stored = true;
		if (otlp->head - otlp->tail >= OTLP_BATCH)
			procno = otlp->pgprocno;
	}
	LWLockRelease(otlp->lock);
	if (!stored)
		pg_atomic_fetch_add_u64(&otlp->dropped, 1);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/* A TimestampTz as Unix nanoseconds. */
static int64
unix_nanos(TimestampTz t)
{
	return (t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC) * 1000;
}

static void
add_string_attribute(StringInfo buf, bool *first, const char *key, const char *value)
{
	appendStringInfoString(buf, *first ? "{\"key\":" : ",{\"key\":");
	escape_json(buf, key);
	appendStringInfoString(buf, ",\"value\":{\"stringValue\":");
	escape_json(buf, value);
	appendStringInfoString(buf, "}}");
	*first = false;
}

/*
 * append_span
 *		One span in the OTLP JSON encoding (ids in hex, 64-bit integers as
 *		strings, enums as numbers).
 */
static void
append_span(StringInfo buf, const OtlpSpan *s)
{
	bool		first = true;
	bool		ok = strcmp(s->status, "succeeded") == 0;

	appendStringInfo(buf, "{\"traceId\":\"%s\",\"spanId\":\"%s\",", s->trace_id, s->span_id);
	if (s->parent_span_id[0] != '\0')
		appendStringInfo(buf, "\"parentSpanId\":\"%s\",", s->parent_span_id);
	appendStringInfoString(buf, "\"name\":");
	if (s->step[0] != '\0')
	{
		char	   *name = psprintf("%s.%s", s->workflow, s->step);

		escape_json(buf, name);
		pfree(name);
	}
	else
		escape_json(buf, s->workflow);
	/* SPAN_KIND_INTERNAL */
	appendStringInfo(buf, ",\"kind\":1,\"startTimeUnixNano\":\"" INT64_FORMAT "\",\"endTimeUnixNano\":\"" INT64_FORMAT "\",\"attributes\":[",
					 unix_nanos(s->start), unix_nanos(s->end));
	add_string_attribute(buf, &first, "orchestrator.workflow", s->workflow);
	add_string_attribute(buf, &first, "orchestrator.run_id", s->run_id);
	if (s->step[0] != '\0')
	{
		add_string_attribute(buf, &first, "orchestrator.step", s->step);
		add_string_attribute(buf, &first, "orchestrator.step.kind", s->kind);
		appendStringInfo(buf, ",{\"key\":\"orchestrator.attempt\",\"value\":{\"intValue\":\"%d\"}}", s->attempt);
	}
	add_string_attribute(buf, &first, "orchestrator.status", s->status);
	/* STATUS_CODE_OK = 1, STATUS_CODE_ERROR = 2 */
	if (ok)
		appendStringInfoString(buf, "],\"status\":{\"code\":1}}");
	else
	{
		appendStringInfoString(buf, "],\"status\":{\"code\":2,\"message\":");
		escape_json(buf, s->status);
		appendStringInfoString(buf, "}}");
	}
}

static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/*
 * otlp_post
 *		Post spans as one ExportTraceServiceRequest.  True when the collector
 *		accepted them (2xx).
 */
static bool
otlp_post(CURL *easy, const char *endpoint, OtlpSpan *spans, int n)
{
	StringInfoData body;
	StringInfoData url;
	struct curl_slist *headers = NULL;
	CURLcode	rc;
	long		status = 0;
	int			len = strlen(endpoint);

	initStringInfo(&url);
	while (len > 0 && endpoint[len - 1] == '/')
		len--;
	appendBinaryStringInfo(&url, endpoint, len);
	appendStringInfoString(&url, "/v1/traces");

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
						   "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"orchestrator\"}},"
						   "{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" ORCHESTRATOR_VERSION "\"}}]},"
						   "\"scopeSpans\":[{\"scope\":{\"name\":\"orchestrator\",\"version\":\"" ORCHESTRATOR_VERSION "\"},"
						   "\"spans\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&body, ',');
		append_span(&body, &spans[i]);
	}
	appendStringInfoString(&body, "]}]}]}");

	headers = curl_slist_append(headers, "Content-Type: application/json");
	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, url.data);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) body.len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) OTLP_TIMEOUT_MS);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) OTLP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	rc = curl_easy_perform(easy);
	if (rc == CURLE_OK)
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);

	if (rc != CURLE_OK || status < 200 || status > 299)
	{
		/* once per failure is enough: the drops are counted */
		ereport(LOG,
				(errmsg("orchestrator could not export %d spans to \"%s\": %s",
						n, url.data,
						rc != CURLE_OK ? curl_easy_strerror(rc) : psprintf("HTTP status %ld", status))));
		return false;
	}
	return true;
}

/* Exit callback of the exporter. */
static void
otlp_detach(int code, Datum arg)
{
	LWLockAcquire(otlp->lock, LW_EXCLUSIVE);
	otlp->pgprocno = -1;
	LWLockRelease(otlp->lock);
}

/*
 * orchestrator_otlp_main
 *		The exporter: send what the ring holds, a batch at a time, whenever
 *		a batch is waiting or OTLP_FLUSH_MS passed.
 */
void
orchestrator_otlp_main(Datum main_arg)
{
	MemoryContext loop_context;
	OtlpSpan   *batch;
	CURL	   *easy;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (curl_global_init(CURL_GLOBAL_ALL) != 0 || (easy = curl_easy_init()) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));

	loop_context = AllocSetContextCreate(TopMemoryContext, "orchestrator otlp",
										 ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(OtlpSpan) * OTLP_BATCH);

	LWLockAcquire(otlp->lock, LW_EXCLUSIVE);
	otlp->pgprocno = MyProc->pgprocno;
	LWLockRelease(otlp->lock);
	before_shmem_exit(otlp_detach, (Datum) 0);

	for (;;)
	{
		int			n;
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		ResetLatch(MyLatch);

		LWLockAcquire(otlp->lock, LW_EXCLUSIVE);
		n = (int) Min(otlp->head - otlp->tail, (uint64) OTLP_BATCH);
		for (int i = 0; i < n; i++)
			batch[i] = otlp->spans[(otlp->tail + i) % otlp->capacity];
		otlp->tail += n;
		more = otlp->head - otlp->tail >= OTLP_BATCH;
		LWLockRelease(otlp->lock);

		if (n > 0)
		{
			pgstat_report_activity(STATE_RUNNING, "exporting spans");
			if (orchestrator_otlp_endpoint[0] == '\0')
				pg_atomic_fetch_add_u64(&otlp->dropped, n);	/* turned off meanwhile */
			else if (otlp_post(easy, orchestrator_otlp_endpoint, batch, n))
				pg_atomic_fetch_add_u64(&otlp->exported, n);
			else
				pg_atomic_fetch_add_u64(&otlp->dropped, n);
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		if (more)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 OTLP_FLUSH_MS, PG_WAIT_EXTENSION);
	}
}

/*
 * orchestrator_otlp_install
 *		From _PG_init: the ring in shared memory and the exporter worker
 *		(idle while orchestrator.otlp_endpoint is empty).
 */
void
orchestrator_otlp_install(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = otlp_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = otlp_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, ORCHESTRATOR_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "orchestrator_otlp_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, ORCHESTRATOR_OTLP_TYPE, BGW_MAXLEN);
	strlcpy(worker.bgw_type, ORCHESTRATOR_OTLP_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}
