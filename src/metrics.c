/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  Counters and histograms of committed transitions, in shared memory.
 *
 * metrics() reports, besides gauges read from the tables, how many runs
 * finished per workflow and status, how many steps ended per workflow, kind
 * and status, how HTTP requests of steps and webhook deliveries turned out,
 * how long step attempts took and how long steps waited for a dispatcher or
 * worker.  A scrape must not read the history, so these are counters in
 * shared memory, updated as the transitions happen.
 *
 * Only committed transitions count: a transition is noted in backend memory
 * (with its subtransaction level, so that a rolled-back subtransaction takes
 * its notes with it) and added to the shared counters by a transaction
 * callback at commit.  A backend that crashes, or a transaction that aborts
 * or is prepared, adds nothing.  The shared counters start at zero when the
 * server starts and after a crash restart, which is what Prometheus expects
 * of a counter (rate() and increase() treat a drop as a reset).
 *
 * The workflow label is bounded: the first orchestrator.metrics_max_workflows
 * workflow names seen since the start get their own series; later ones, and
 * names longer than METRICS_NAME_LEN - 1 bytes, are counted under the
 * workflow label "other" (a name no workflow can have: the label is
 * reserved).  One LWLock guards the whole area; it is held for a few
 * additions per committing transaction and while a scrape copies the area.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "guc.h"
#include "metrics.h"
#include "otlp.h"

#define METRICS_NAME_LEN 128

/* Step kinds; the last one takes kinds unknown here. */
static const char *const kind_names[] = {"sql", "http", "external", "sleep", "wait", "workflow", "other"};
#define NKINDS lengthof(kind_names)

static const char *const counted_run_statuses[] = {"succeeded", "failed", "cancelled"};
#define NCOUNTED_RUN_STATUSES lengthof(counted_run_statuses)

static const char *const counted_step_statuses[] = {
	"succeeded", "retrying", "failed", "dead", "skipped", "cancelled", "compensated"
};
#define NCOUNTED_STEP_STATUSES lengthof(counted_step_statuses)

static const char *const outcome_names[] = {
	"success", "client_error", "throttled", "server_error", "timeout",
	"network_error", "too_large", "refused"
};
#define NOUTCOMES lengthof(outcome_names)

/* Upper bounds of the histogram buckets, in seconds (+Inf comes last). */
static const double duration_bounds[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800
};
static const double latency_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};
#define MAX_BUCKETS 16			/* bounds + 1 */

typedef struct Histogram
{
	uint64		buckets[MAX_BUCKETS];	/* not cumulative; the last is +Inf */
	uint64		count;
	double		sum;
} Histogram;

typedef struct MetricsWorkflow
{
	char		name[METRICS_NAME_LEN];
	uint64		runs[NCOUNTED_RUN_STATUSES];
	uint64		steps[NKINDS][NCOUNTED_STEP_STATUSES];
} MetricsWorkflow;

typedef struct MetricsShared
{
	LWLock	   *lock;
	int			nworkflows;		/* entries of wf[] in use, "other" excluded */
	int			max_workflows;
	uint64		http[NOUTCOMES];
	uint64		webhook[NOUTCOMES];
	Histogram	duration[NKINDS];
	Histogram	latency;
	MetricsWorkflow wf[FLEXIBLE_ARRAY_MEMBER];	/* max_workflows + 1: the last
												 * is "other" */
} MetricsShared;

typedef struct WorkflowEntry
{
	char		name[METRICS_NAME_LEN];	/* hash key */
	int			index;
} WorkflowEntry;

static MetricsShared *metrics = NULL;
static HTAB *workflow_index = NULL;

/* What a transaction adds when it commits. */
typedef enum DeltaKind
{
	D_RUN,
	D_STEP,
	D_STARTED,
	D_HTTP,
	D_WEBHOOK,
	D_SPAN						/* a span to export (otlp.c) */
} DeltaKind;

typedef struct Delta
{
	uint8		what;			/* DeltaKind */
	uint8		kind;			/* step kind */
	uint8		status;			/* run or step status, or outcome */
	int			level;			/* subtransaction nesting level */
	double		seconds;		/* duration or latency; < 0: none */
	OtlpSpan   *span;			/* D_SPAN */
	char		workflow[METRICS_NAME_LEN];	/* "" for none or too long */
} Delta;

typedef struct Pending
{
	int			n;
	int			size;
	Delta	   *deltas;
} Pending;

static Pending *pending = NULL;
static bool callbacks_registered = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PG_FUNCTION_INFO_V1(orchestrator_metrics_text);
PG_FUNCTION_INFO_V1(orchestrator_metrics_http_sql);

static Size
metrics_shmem_size(void)
{
	return add_size(offsetof(MetricsShared, wf),
					mul_size(orchestrator_metrics_max_workflows + 1, sizeof(MetricsWorkflow)));
}

static void
metrics_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(metrics_shmem_size()));
	RequestAddinShmemSpace(hash_estimate_size(orchestrator_metrics_max_workflows, sizeof(WorkflowEntry)));
	RequestNamedLWLockTranche("orchestrator metrics", 1);
}

static void
metrics_shmem_startup(void)
{
	bool		found;
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	metrics = ShmemInitStruct("orchestrator metrics", metrics_shmem_size(), &found);
	if (!found)
	{
		memset(metrics, 0, metrics_shmem_size());
		metrics->lock = &(GetNamedLWLockTranche("orchestrator metrics"))->lock;
		metrics->max_workflows = orchestrator_metrics_max_workflows;
		strlcpy(metrics->wf[metrics->max_workflows].name, "other", METRICS_NAME_LEN);
	}
	memset(&info, 0, sizeof(info));
	info.keysize = METRICS_NAME_LEN;
	info.entrysize = sizeof(WorkflowEntry);
	workflow_index = ShmemInitHash("orchestrator metrics workflows",
								   orchestrator_metrics_max_workflows,
								   orchestrator_metrics_max_workflows,
								   &info, HASH_ELEM | HASH_STRINGS);
	LWLockRelease(AddinShmemInitLock);
}

void
orchestrator_metrics_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
}

/*
 * workflow_slot
 *		The entry of wf[] of a workflow name, made when there is room, else
 *		the "other" entry.  The caller holds the lock exclusively.  Must not
 *		fail: it runs in a commit callback.
 */
static MetricsWorkflow *
workflow_slot(const char *name)
{
	WorkflowEntry *e;
	bool		found;

	if (name[0] == '\0' || metrics->nworkflows >= metrics->max_workflows)
	{
		if (name[0] != '\0')
		{
			e = hash_search(workflow_index, name, HASH_FIND, NULL);
			if (e != NULL)
				return &metrics->wf[e->index];
		}
		return &metrics->wf[metrics->max_workflows];
	}
	e = hash_search(workflow_index, name, HASH_ENTER_NULL, &found);
	if (e == NULL)
		return &metrics->wf[metrics->max_workflows];
	if (!found)
	{
		e->index = metrics->nworkflows++;
		strlcpy(metrics->wf[e->index].name, name, METRICS_NAME_LEN);
	}
	return &metrics->wf[e->index];
}

static void
observe(Histogram *h, const double *bounds, int nbounds, double seconds)
{
	int			i;

	for (i = 0; i < nbounds; i++)
		if (seconds <= bounds[i])
			break;
	h->buckets[i]++;
	h->count++;
	h->sum += seconds;
}

/* Add a committed transaction's deltas to the shared counters. */
static void
metrics_publish(Pending *p)
{
	LWLockAcquire(metrics->lock, LW_EXCLUSIVE);
	for (int i = 0; i < p->n; i++)
	{
		Delta	   *d = &p->deltas[i];

		switch ((DeltaKind) d->what)
		{
			case D_RUN:
				workflow_slot(d->workflow)->runs[d->status]++;
				break;
			case D_STEP:
				workflow_slot(d->workflow)->steps[d->kind][d->status]++;
				if (d->seconds >= 0)
					observe(&metrics->duration[d->kind], duration_bounds,
							lengthof(duration_bounds), d->seconds);
				break;
			case D_STARTED:
				observe(&metrics->latency, latency_bounds, lengthof(latency_bounds), d->seconds);
				break;
			case D_HTTP:
				metrics->http[d->status]++;
				break;
			case D_WEBHOOK:
				metrics->webhook[d->status]++;
				break;
			case D_SPAN:
				break;
		}
	}
	LWLockRelease(metrics->lock);

	for (int i = 0; i < p->n; i++)
		if (p->deltas[i].what == D_SPAN)
			orchestrator_otlp_push(p->deltas[i].span);
}

static void
metrics_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (pending != NULL && pending->n > 0 && metrics != NULL)
				metrics_publish(pending);
			pending = NULL;		/* its memory goes with the transaction */
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
			pending = NULL;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that rolls back takes its deltas with it; one that
 * commits hands them to its parent.  The deltas of the current
 * subtransaction are the last ones (levels never decrease towards the end).
 */
static void
metrics_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level;

	if (pending == NULL || pending->n == 0)
		return;
	level = GetCurrentTransactionNestLevel();
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (pending->n > 0 && pending->deltas[pending->n - 1].level >= level)
			pending->n--;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = pending->n - 1; i >= 0 && pending->deltas[i].level >= level; i--)
			pending->deltas[i].level = level - 1;
	}
}

/* A new delta of the current transaction. */
static Delta *
add_delta(DeltaKind what)
{
	Delta	   *d;

	if (!callbacks_registered)
	{
		RegisterXactCallback(metrics_xact_callback, NULL);
		RegisterSubXactCallback(metrics_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (pending == NULL)
	{
		pending = MemoryContextAllocZero(TopTransactionContext, sizeof(Pending));
		pending->size = 8;
		pending->deltas = MemoryContextAlloc(TopTransactionContext, sizeof(Delta) * pending->size);
	}
	else if (pending->n == pending->size)
	{
		pending->size *= 2;
		pending->deltas = repalloc(pending->deltas, sizeof(Delta) * pending->size);
	}
	d = &pending->deltas[pending->n++];
	memset(d, 0, offsetof(Delta, workflow) + 1);
	d->what = (uint8) what;
	d->level = GetCurrentTransactionNestLevel();
	d->seconds = -1;
	return d;
}

static int
index_of(const char *const *names, int n, const char *name, int otherwise)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return otherwise;
}

/*
 * orchestrator_metrics_counts
 *		Is an event of this type counted (and worth looking up the data
 *		orchestrator_metrics_event() needs)?
 */
bool
orchestrator_metrics_counts(const char *type)
{
	if (strncmp(type, "workflow.", 9) == 0)
		return index_of(counted_run_statuses, NCOUNTED_RUN_STATUSES, type + 9, -1) >= 0;
	if (strncmp(type, "step.", 5) == 0)
		return strcmp(type + 5, "started") == 0 ||
			index_of(counted_step_statuses, NCOUNTED_STEP_STATUSES, type + 5, -1) >= 0;
	return false;
}

static void
set_workflow(Delta *d, const char *workflow)
{
	if (workflow != NULL && strlen(workflow) < METRICS_NAME_LEN && strcmp(workflow, "other") != 0)
		strlcpy(d->workflow, workflow, METRICS_NAME_LEN);
	else
		d->workflow[0] = '\0';
}

/*
 * note_span
 *		The span of a run that ended or of a step attempt that ended, when
 *		spans are exported and the run's trace is sampled.
 */
static void
note_span(const MetricsEvent *e, bool run, const char *status)
{
	OtlpSpan   *span;
	Delta	   *d;

	if (!orchestrator_otlp_enabled())
		return;
	/* the caller's trace, not sampled: no spans */
	if (e->trace_parent != NULL && strlen(e->trace_parent) == 55 &&
		(e->trace_parent[54] == '0' || e->trace_parent[54] == '2' || e->trace_parent[54] == '4' ||
		 e->trace_parent[54] == '6' || e->trace_parent[54] == '8' || e->trace_parent[54] == 'a' ||
		 e->trace_parent[54] == 'c' || e->trace_parent[54] == 'e'))
		return;
	span = MemoryContextAllocZero(TopTransactionContext, sizeof(OtlpSpan));
	if (e->trace_id != NULL && strlen(e->trace_id) == 32)
		strlcpy(span->trace_id, e->trace_id, sizeof(span->trace_id));
	else
	{
		/* a run from before 0.4: its id is its trace id */
		int			j = 0;

		for (const char *c = e->run_id; *c && j < 32; c++)
			if (*c != '-')
				span->trace_id[j++] = *c;
	}
	strlcpy(span->run_id, e->run_id, sizeof(span->run_id));
	strlcpy(span->workflow, e->workflow ? e->workflow : "", sizeof(span->workflow));
	strlcpy(span->status, status, sizeof(span->status));
	if (run)
	{
		orchestrator_span_id(e->run_id, NULL, 0, span->span_id);
		if (e->trace_parent != NULL && strlen(e->trace_parent) == 55)
			strlcpy(span->parent_span_id, e->trace_parent + 36, 17);
		span->start = e->created_at;
	}
	else
	{
		strlcpy(span->step, e->step ? e->step : "", sizeof(span->step));
		strlcpy(span->kind, e->kind ? e->kind : "", sizeof(span->kind));
		span->attempt = e->attempt;
		orchestrator_span_id(e->run_id, e->step, e->attempt, span->span_id);
		orchestrator_span_id(e->run_id, NULL, 0, span->parent_span_id);
		span->start = e->started_at;
	}
	span->end = e->at;
	if (span->span_id[0] == '\0' || span->start == 0 || span->start > span->end)
	{
		pfree(span);
		return;
	}
	d = add_delta(D_SPAN);
	d->span = span;
}

/*
 * orchestrator_metrics_event
 *		Note a transition of the current transaction (see metrics.h):
 *		workflow.<final status> counts a run; step.<status> counts a step
 *		and, for the end of an attempt, its duration (from started_at);
 *		step.started of a step dispatched through a queue observes how long
 *		it was due (from ready_at).  Runs and attempts that end make spans.
 */
void
orchestrator_metrics_event(const MetricsEvent *e)
{
	const char *type = e->type;
	Delta	   *d;
	int			k;

	if (metrics == NULL)
		return;
	if (strncmp(type, "workflow.", 9) == 0)
	{
		int			s = index_of(counted_run_statuses, NCOUNTED_RUN_STATUSES, type + 9, -1);

		if (s < 0)
			return;
		d = add_delta(D_RUN);
		d->status = (uint8) s;
		set_workflow(d, e->workflow);
		note_span(e, true, counted_run_statuses[s]);
		return;
	}
	if (strncmp(type, "step.", 5) != 0)
		return;
	k = index_of(kind_names, NKINDS - 1, e->kind ? e->kind : "", NKINDS - 1);
	if (strcmp(type + 5, "started") == 0)
	{
		/* sleep and wait steps start when they become ready: no dispatch */
		if (e->ready_at == 0 || e->ready_at > e->at ||
			!(strcmp(kind_names[k], "sql") == 0 || strcmp(kind_names[k], "http") == 0 ||
			  strcmp(kind_names[k], "external") == 0))
			return;
		d = add_delta(D_STARTED);
		d->seconds = (double) (e->at - e->ready_at) / USECS_PER_SEC;
		return;
	}
	else
	{
		int			s = index_of(counted_step_statuses, NCOUNTED_STEP_STATUSES, type + 5, -1);

		if (s < 0)
			return;
		d = add_delta(D_STEP);
		d->status = (uint8) s;
		d->kind = (uint8) k;
		set_workflow(d, e->workflow);
		/* the end of an attempt: succeeded, retrying, failed, dead */
		if (s <= 3 && e->started_at != 0 && e->started_at <= e->at)
		{
			d->seconds = (double) (e->at - e->started_at) / USECS_PER_SEC;
			note_span(e, false, counted_step_statuses[s]);
		}
	}
}

static int
outcome_of(int status, const char *error_kind)
{
	if (status > 0)
	{
		if (status == 429)
			return 2;
		if (status >= 500)
			return 3;
		if (status >= 400)
			return 1;
		return 0;
	}
	if (error_kind == NULL)
		return 5;
	if (strcmp(error_kind, "timeout") == 0)
		return 4;
	if (strcmp(error_kind, "too_large") == 0)
		return 6;
	if (strcmp(error_kind, "refused") == 0 || strcmp(error_kind, "invalid") == 0)
		return 7;
	return 5;
}

void
orchestrator_metrics_http(bool webhook, int status, const char *error_kind)
{
	Delta	   *d;

	if (metrics == NULL)
		return;
	d = add_delta(webhook ? D_WEBHOOK : D_HTTP);
	d->status = (uint8) outcome_of(status, error_kind);
}

/*
 * orchestrator._metrics_http(webhook boolean, status integer, error_kind text)
 *		Count the recorded outcome of an HTTP request (75_http.sql,
 *		76_webhooks.sql) when the transaction commits.
 */
Datum
orchestrator_metrics_http_sql(PG_FUNCTION_ARGS)
{
	orchestrator_metrics_http(PG_ARGISNULL(0) ? false : PG_GETARG_BOOL(0),
							  PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
							  PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}

/* A label value: backslash, double quote and newline escaped. */
static void
append_label(StringInfo buf, const char *v)
{
	for (; *v; v++)
	{
		if (*v == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (*v == '"')
			appendStringInfoString(buf, "\\\"");
		else if (*v == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *v);
	}
}

static void
append_histogram(StringInfo buf, const char *name, const char *label, const char *value,
				 const Histogram *h, const double *bounds, int nbounds)
{
	uint64		cum = 0;
	char		prefix[64];

	if (label != NULL)
		snprintf(prefix, sizeof(prefix), "%s=\"%s\",", label, value);
	else
		prefix[0] = '\0';
	for (int i = 0; i <= nbounds; i++)
	{
		cum += h->buckets[i];
		if (i < nbounds)
			appendStringInfo(buf, "%s_bucket{%sle=\"%g\"} " UINT64_FORMAT "\n", name, prefix, bounds[i], cum);
		else
			appendStringInfo(buf, "%s_bucket{%sle=\"+Inf\"} " UINT64_FORMAT "\n", name, prefix, cum);
	}
	if (label != NULL)
		appendStringInfo(buf, "%s_sum{%s=\"%s\"} %.6f\n%s_count{%s=\"%s\"} " UINT64_FORMAT "\n",
						 name, label, value, h->sum, name, label, value, h->count);
	else
		appendStringInfo(buf, "%s_sum %.6f\n%s_count " UINT64_FORMAT "\n", name, h->sum, name, h->count);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(((const MetricsWorkflow *) a)->name, ((const MetricsWorkflow *) b)->name);
}

/*
 * orchestrator._metrics_text()
 *		The counters and histograms in the Prometheus text format, for
 *		metrics().  Workflows in name order, "other" last; step series that
 *		are still zero are left out.
 */
Datum
orchestrator_metrics_text(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	MetricsShared *copy;
	Size		size;
	int			n;
	uint64		spans_exported;
	uint64		spans_dropped;

	if (metrics == NULL)
		PG_RETURN_NULL();

	size = metrics_shmem_size();
	copy = palloc(size);
	LWLockAcquire(metrics->lock, LW_SHARED);
	memcpy(copy, metrics, size);
	LWLockRelease(metrics->lock);
	n = copy->nworkflows;
	qsort(copy->wf, n, sizeof(MetricsWorkflow), compare_names);
	/* the "other" entry goes after the named ones */
	if (n < copy->max_workflows)
		copy->wf[n] = copy->wf[copy->max_workflows];
	n++;

	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "# HELP orchestrator_runs_total Runs that reached a final status, per workflow and status, since the server started.\n"
						   "# TYPE orchestrator_runs_total counter\n");
	for (int w = 0; w < n; w++)
	{
		MetricsWorkflow *wf = &copy->wf[w];
		bool		any = false;

		for (int s = 0; s < (int) NCOUNTED_RUN_STATUSES; s++)
			any |= wf->runs[s] > 0;
		if (w == n - 1 && !any)
			continue;			/* "other" only once used */
		for (int s = 0; s < (int) NCOUNTED_RUN_STATUSES; s++)
		{
			appendStringInfoString(&buf, "orchestrator_runs_total{workflow=\"");
			append_label(&buf, wf->name);
			appendStringInfo(&buf, "\",status=\"%s\"} " UINT64_FORMAT "\n", counted_run_statuses[s], wf->runs[s]);
		}
	}
	appendStringInfoString(&buf,
						   "# HELP orchestrator_steps_total Steps that ended an attempt or were skipped, cancelled or compensated, per workflow, kind and status, since the server started.\n"
						   "# TYPE orchestrator_steps_total counter\n");
	for (int w = 0; w < n; w++)
	{
		MetricsWorkflow *wf = &copy->wf[w];

		for (int k = 0; k < (int) NKINDS; k++)
			for (int s = 0; s < (int) NCOUNTED_STEP_STATUSES; s++)
			{
				if (wf->steps[k][s] == 0)
					continue;
				appendStringInfoString(&buf, "orchestrator_steps_total{workflow=\"");
				append_label(&buf, wf->name);
				appendStringInfo(&buf, "\",kind=\"%s\",status=\"%s\"} " UINT64_FORMAT "\n",
								 kind_names[k], counted_step_statuses[s], wf->steps[k][s]);
			}
	}
	appendStringInfoString(&buf,
						   "# HELP orchestrator_http_attempts_total Requests of http steps, by outcome, since the server started.\n"
						   "# TYPE orchestrator_http_attempts_total counter\n");
	for (int o = 0; o < (int) NOUTCOMES; o++)
		appendStringInfo(&buf, "orchestrator_http_attempts_total{outcome=\"%s\"} " UINT64_FORMAT "\n",
						 outcome_names[o], copy->http[o]);
	appendStringInfoString(&buf,
						   "# HELP orchestrator_webhook_attempts_total Webhook delivery attempts, by outcome, since the server started.\n"
						   "# TYPE orchestrator_webhook_attempts_total counter\n");
	for (int o = 0; o < (int) NOUTCOMES; o++)
		appendStringInfo(&buf, "orchestrator_webhook_attempts_total{outcome=\"%s\"} " UINT64_FORMAT "\n",
						 outcome_names[o], copy->webhook[o]);
	appendStringInfoString(&buf,
						   "# HELP orchestrator_step_duration_seconds Duration of step attempts (start to success or failure), per kind.\n"
						   "# TYPE orchestrator_step_duration_seconds histogram\n");
	for (int k = 0; k < (int) NKINDS; k++)
		if (copy->duration[k].count > 0)
			append_histogram(&buf, "orchestrator_step_duration_seconds", "kind", kind_names[k],
							 &copy->duration[k], duration_bounds, lengthof(duration_bounds));
	appendStringInfoString(&buf,
						   "# HELP orchestrator_dispatch_latency_seconds Time from a step becoming due (made ready, or its retry time) to the start of its attempt by a dispatcher or worker.\n"
						   "# TYPE orchestrator_dispatch_latency_seconds histogram\n");
	append_histogram(&buf, "orchestrator_dispatch_latency_seconds", NULL, NULL,
					 &copy->latency, latency_bounds, lengthof(latency_bounds));
	orchestrator_otlp_counts(&spans_exported, &spans_dropped);
	appendStringInfo(&buf,
					 "# HELP orchestrator_otlp_spans_exported_total Spans sent to orchestrator.otlp_endpoint and accepted.\n"
					 "# TYPE orchestrator_otlp_spans_exported_total counter\n"
					 "orchestrator_otlp_spans_exported_total " UINT64_FORMAT "\n"
					 "# HELP orchestrator_otlp_spans_dropped_total Spans not exported: the queue was full or the collector failed.\n"
					 "# TYPE orchestrator_otlp_spans_dropped_total counter\n"
					 "orchestrator_otlp_spans_dropped_total " UINT64_FORMAT "\n",
					 spans_exported, spans_dropped);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
