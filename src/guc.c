/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Configuration parameters (orchestrator.*) of the orchestrator extension.
 *
 * The worker settings are read by the C code; the retention, partition and
 * HTTP settings are read by the SQL functions with current_setting().
 * Settings that are a time or a size are integers with a unit (GUC_UNIT_MS,
 * GUC_UNIT_S, GUC_UNIT_KB), so PostgreSQL parses, bounds and shows them; a
 * time's text ("5min", "90d", "300ms") is also a valid interval, which is how
 * the SQL functions read it.  Only webhook_retry_schedule, a list, is text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/datetime.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "egress.h"
#include "guc.h"

char	   *orchestrator_database = NULL;
int			orchestrator_workers = 2;
int			orchestrator_batch_size = 64;
int			orchestrator_batch_window = 5;
int			orchestrator_poll_interval = 1000;
int			orchestrator_default_lease = 5 * 60 * 1000;
int			orchestrator_default_step_timeout = 60 * 1000;
int			orchestrator_max_step_timeout = 3600 * 1000;
int			orchestrator_relay_queue_size = 16384;
int			orchestrator_notify_queue_max_usage = 50;
int			orchestrator_notify_interval = 2;
int			orchestrator_notify_channels = NOTIFY_CHANNELS_PUBLIC;
int			orchestrator_definition_cache_size = 16 * 1024;
int			orchestrator_plan_cache_size = 16 * 1024;
int			orchestrator_max_input_size = 1024;
int			orchestrator_max_result_size = 1024;
int			orchestrator_max_signal_size = 1024;
int			orchestrator_max_events_per_run = 10000;
int			orchestrator_max_owner_active_runs = 0;
int			orchestrator_max_active_runs = 0;
int			orchestrator_max_pending_webhooks = 0;
int			orchestrator_max_sessions_per_owner = 0;
int			orchestrator_shutdown_grace = 5000;
int			orchestrator_step_timeout_grace = 5000;
int			orchestrator_engine_timeout = 60 * 1000;
int			orchestrator_health_max_ready_age = 60;
char	   *orchestrator_http_allowed_hosts = NULL;
int			orchestrator_http_max_concurrency = 100;
int			orchestrator_http_max_host_connections = 0;
int			orchestrator_http_max_response_size = 1024;
int			orchestrator_http_breaker_threshold = 5;
int			orchestrator_http_breaker_cooldown = 30 * 1000;
char	   *orchestrator_webhook_retry_schedule = NULL;
int			orchestrator_retention = 90 * 24 * 3600;
int			orchestrator_archive_mode = ORCHESTRATOR_ARCHIVE_DROP;
int			orchestrator_partitions_ahead = 7;
int			orchestrator_partition_fillfactor = 75;
bool		orchestrator_restoring = false;
char	   *orchestrator_secret_key_file = NULL;
int			orchestrator_metrics_max_workflows = 100;
char	   *orchestrator_otlp_endpoint = NULL;
int			orchestrator_otlp_queue_size = 8192;

/* Values of orchestrator.notify_channels. */
static const struct config_enum_entry notify_channels_options[] = {
	{"public", NOTIFY_CHANNELS_PUBLIC, false},
	{"private", NOTIFY_CHANNELS_PRIVATE, false},
	{"both", NOTIFY_CHANNELS_BOTH, false},
	{NULL, 0, false}
};

/* Values of orchestrator.archive_mode; maintain() reads the name. */
static const struct config_enum_entry archive_mode_options[] = {
	{"drop", ORCHESTRATOR_ARCHIVE_DROP, false},
	{"detach", ORCHESTRATOR_ARCHIVE_DETACH, false},
	{NULL, 0, false}
};

/*
 * parse_positive_interval
 *		Parse an interval literal without throwing; true when it is valid and
 *		greater than zero (an item of orchestrator.webhook_retry_schedule).
 *
 * GUC check hooks must not raise errors, so this follows interval_in() with
 * the datetime routines that report failure by return code.
 */
static bool
parse_positive_interval(const char *str)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			dterr;
	struct pg_itm_in itm_in;
	Interval	span;
	char	   *copy;

	if (str == NULL)
		return false;

	dterr = ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE,
							   &dtype, &itm_in);
	if (dterr == DTERR_BAD_FORMAT)
	{
		/* Try the ISO 8601 form (P1DT2H) as interval_in() does. */
		copy = pstrdup(str);
		dterr = DecodeISO8601Interval(copy, &dtype, &itm_in);
		pfree(copy);
	}
	if (dterr != 0 || dtype != DTK_DELTA)
		return false;
	if (itmin2interval(&itm_in, &span) != 0)
		return false;

	/* Greater than zero: at least one part positive, none negative. */
	if (span.month < 0 || span.day < 0 || span.time < 0)
		return false;
	return span.month > 0 || span.day > 0 || span.time > 0;
}

/*
 * check_retry_schedule
 *		GUC check hook for orchestrator.webhook_retry_schedule: a
 *		comma-separated list of positive intervals.
 */
static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	char	   *item;
	char	   *saveptr = NULL;
	int			n = 0;

	if (*newval == NULL)
		return false;
	copy = pstrdup(*newval);
	for (item = strtok_r(copy, ",", &saveptr); item != NULL;
		 item = strtok_r(NULL, ",", &saveptr))
	{
		if (!parse_positive_interval(item))
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errdetail("\"%s\" is not a positive interval.", item);
			pfree(copy);
			return false;
		}
		n++;
	}
	pfree(copy);
	if (n == 0 || n > 50)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("The value must list 1 to 50 intervals, such as '5 seconds, 5 minutes, 30 minutes'.");
		return false;
	}
	return true;
}

/*
 * check_secret_key_file
 *		GUC check hook for orchestrator.secret_key_file: a path is required
 *		(the key is never kept in the database).
 */
static bool
check_secret_key_file(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0')
		return true;

	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The key file path must not be empty.");
	return false;
}

/*
 * orchestrator_define_gucs
 *		Define the orchestrator.* settings and reserve the prefix, so a typo
 *		in postgresql.conf is reported instead of silently ignored.
 */
void
orchestrator_define_gucs(void)
{
	DefineCustomStringVariable("orchestrator.database",
							   "Database in which the orchestrator dispatchers run.",
							   "The extension must be created in this database.",
							   &orchestrator_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.workers",
							"Number of dispatcher background workers.",
							"0 disables the dispatchers: no sql, http or timer step runs.",
							&orchestrator_workers,
							2,
							0, ORCHESTRATOR_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.batch_size",
							"Maximum number of steps a dispatcher handles in one transaction.",
							NULL,
							&orchestrator_batch_size,
							64,
							1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.batch_window",
							"How long a dispatcher's batch of sql steps goes on taking work committed meanwhile.",
							"Within this time from the start of its transaction, a dispatcher claims again before it commits when new sql steps were made ready; 0 claims once per transaction.",
							&orchestrator_batch_window,
							5,
							0, 10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.poll_interval",
							"Longest time a dispatcher sleeps when no timer is due.",
							"Work made ready by a committed transaction wakes the dispatchers at once; this is the fallback.",
							&orchestrator_poll_interval,
							1000,
							1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.default_lease",
							"Default lease of a claimed external step.",
							"claim_steps() uses it when its lease argument is NULL.",
							&orchestrator_default_lease,
							5 * 60 * 1000,
							1000, 24 * 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.default_step_timeout",
							"Default timeout of one attempt of a sql or http step.",
							"Steps with a \"timeout\" of their own use that; external, sleep and wait steps without one have none.",
							&orchestrator_default_step_timeout,
							60 * 1000,
							1, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_step_timeout",
							"Longest time one attempt of a step may take.",
							"A longer \"timeout\" is refused when a workflow is defined, and no attempt runs longer, whatever its statement does.",
							&orchestrator_max_step_timeout,
							3600 * 1000,
							1000, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.relay_queue_size",
							"Notifications the relay's ring in shared memory holds.",
							"Committed notifications wait there for the relay worker; when it is full, more are dropped and counted (clients catch up with orchestrator.events()).",
							&orchestrator_relay_queue_size,
							16384,
							256, 1024 * 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.notify_queue_max_usage",
							"Percentage of the server's notification queue above which the orchestrator stops sending notifications.",
							"The relay keeps them in its ring and retries with a growing pause; a transaction that notifies directly (no relay) drops its notifications.  Either way no start, step or dispatcher batch fails because the queue is full; clients catch up with orchestrator.events().",
							&orchestrator_notify_queue_max_usage,
							50,
							1, 99,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.notify_interval",
							"Shortest time between two batches of notifications the relay sends.",
							"Notifications committed meanwhile are gathered into the next batch: one transaction of the relay, and one wake-up of each listening session, per interval under load.  The first notification after a quiet spell is sent at once.  0: send as soon as woken.",
							&orchestrator_notify_interval,
							2,
							0, 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("orchestrator.notify_channels",
							 "Where the events of runs are announced.",
							 "public: on the channel \"orchestrator\", which every role that can connect may LISTEN to; private: on the channel of the role that started the run and of its workflow's owner (orchestrator.events_channel()), which nobody else can name; both: on all of them.",
							 &orchestrator_notify_channels,
							 NOTIFY_CHANNELS_PUBLIC,
							 notify_channels_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.definition_cache_size",
							"Memory each process may use to keep step definitions.",
							"Least recently used definitions are dropped to stay under it; those the current unit of work uses are kept (a definition that does not fit then is read again next time).  0: no cache.",
							&orchestrator_definition_cache_size,
							16 * 1024,
							0, INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.plan_cache_size",
							"Memory each dispatcher may use to keep the prepared plans of sql steps.",
							"Least recently used plans are dropped to stay under it (at most 64 plans); a plan that does not fit alone is not kept.  0: no cache.",
							&orchestrator_plan_cache_size,
							16 * 1024,
							0, INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_input_size",
							"Default largest input of a run, per owner (orchestrator.owner_limits max_input_bytes overrides it).",
							"Larger inputs are refused with SQLSTATE 54000.  0: no limit.",
							&orchestrator_max_input_size,
							1024,
							0, INT_MAX / 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_result_size",
							"Default largest result of a step, per owner (orchestrator.owner_limits max_result_bytes overrides it).",
							"A larger result is refused with SQLSTATE 54000 (complete_step), or fails the attempt (sql steps).  0: no limit.",
							&orchestrator_max_result_size,
							1024,
							0, INT_MAX / 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_signal_size",
							"Default largest signal payload, per owner (orchestrator.owner_limits max_signal_bytes overrides it).",
							"Larger payloads are refused with SQLSTATE 54000.  0: no limit.",
							&orchestrator_max_signal_size,
							1024,
							0, INT_MAX / 1024,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_events_per_run",
							"Default most events a run may have before signals and workers' progress reports to it are refused, per owner (orchestrator.owner_limits max_events_per_run overrides it).",
							"0: no limit.",
							&orchestrator_max_events_per_run,
							10000,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_active_runs_per_owner",
							"Default most pending or running runs of workflows one role owns (orchestrator.owner_limits max_active_runs overrides it).",
							"More starts are refused with SQLSTATE 54000.  0: no limit (no count is made).",
							&orchestrator_max_owner_active_runs,
							0,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_active_runs",
							"Most runs active at once (pending, running or compensating), of all workflows and roles; more wait queued.",
							"Runs over it are created with status queued and admitted as runs end (admission.c).  0: no limit.",
							&orchestrator_max_active_runs,
							0,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_pending_webhooks",
							"Default most pending webhook deliveries of the runs of workflows one role owns (orchestrator.owner_limits max_pending_webhooks overrides it).",
							"Starts and signals are refused with SQLSTATE 54000 beyond it.  0: no limit (no count is made).",
							&orchestrator_max_pending_webhooks,
							0,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.max_sessions_per_owner",
							"Default most live session keys of one role (orchestrator.owner_limits max_sessions overrides it).",
							"A write of a new key beyond it is refused with SQLSTATE 54000; writes of live keys are not.  0: no limit (no count is made).",
							&orchestrator_max_sessions_per_owner,
							0,
							0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.shutdown_grace",
							"How long a stopping dispatcher goes on serving its HTTP requests in flight.",
							"Requests that finish within it are recorded; the others are sent again (with the same Idempotency-Key) after the restart.  0: stop at once.",
							&orchestrator_shutdown_grace,
							5000,
							0, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.step_timeout_grace",
							"Time a sql step may go on after its timeout before its dispatcher process is ended.",
							"A statement that catches its cancel or does not check for it is stopped this long after its timeout; the attempt counts as failed and a new dispatcher starts.",
							&orchestrator_step_timeout_grace,
							5000,
							100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.engine_timeout",
							"Longest time a dispatcher spends on its own work for one sql step or one timer pass.",
							"Recording a result, evaluating \"when\" conditions and templates; past it that work fails with SQLSTATE 57014 (for a sql step: a failed attempt).",
							&orchestrator_engine_timeout,
							60 * 1000,
							100, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.health_max_ready_age",
							"Age of the oldest ready work of the dispatchers beyond which health() reports not ready.",
							NULL,
							&orchestrator_health_max_ready_age,
							60,
							1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.retention",
							"How long finished runs are kept, counted from their completion.",
							"orchestrator.maintain() removes runs that finished longer ago, with their steps and events.",
							&orchestrator_retention,
							90 * 24 * 3600,
							1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("orchestrator.archive_mode",
							 "What orchestrator.maintain() does with a partition whose runs have all expired.",
							 "drop deletes it; detach moves it to schema orchestrator_archive.",
							 &orchestrator_archive_mode,
							 ORCHESTRATOR_ARCHIVE_DROP,
							 archive_mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.partitions_ahead",
							"Number of daily history partitions kept ahead of today.",
							NULL,
							&orchestrator_partitions_ahead,
							7,
							1, 366,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.partition_fillfactor",
							"Fillfactor of the partitions of workflow_runs and workflow_steps created from now on.",
							"Below 75 leaves room on each page for the updates a claim makes to many adjacent runs and steps at once (HOT updates, no index entries), at the cost of that room in the finished history.",
							&orchestrator_partition_fillfactor,
							75,
							10, 100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("orchestrator.restoring",
							 "No effect; kept so that scripts setting it keep working.",
							 "Restores needed it before 0.3; a plain pg_restore works now.",
							 &orchestrator_restoring,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * PGC_SUSET, not PGC_SIGHUP: the dispatchers read it from the server's
	 * configuration like a reload setting, and only a superuser may change
	 * it; a superuser's SET changes only the checks made in that session
	 * (define_workflow, create_webhook), never what a dispatcher sends.
	 */
	DefineCustomStringVariable("orchestrator.http_allowed_hosts",
							   "Hosts, addresses and ports that http steps and webhooks may connect to (empty: none).",
							   "Comma-separated host names, \"*.domain\", \"*\", IP addresses or CIDR ranges, each with an optional \":port\" or \":*\"; without a port only the scheme's default port. Loopback, link-local, metadata and other special addresses need an IP or CIDR entry.",
							   &orchestrator_http_allowed_hosts,
							   "",
							   PGC_SUSET,
							   0,
							   orchestrator_egress_check_hook,
							   orchestrator_egress_assign_hook,
							   NULL);

	DefineCustomIntVariable("orchestrator.http_max_concurrency",
							"Most HTTP requests one dispatcher keeps in flight.",
							"Also the most connections a dispatcher opens.",
							&orchestrator_http_max_concurrency,
							100,
							1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.http_max_host_connections",
							"Most connections one dispatcher opens to one host (0: no limit of its own).",
							"Requests beyond it wait in the dispatcher for a free connection; the wait counts toward their timeout.",
							&orchestrator_http_max_host_connections,
							0,
							0, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.http_max_response_size",
							"Largest HTTP response body kept; a larger one fails the attempt.",
							NULL,
							&orchestrator_http_max_response_size,
							1024,
							1, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.http_breaker_threshold",
							"Consecutive failures of a host that open its circuit breaker (0: never).",
							NULL,
							&orchestrator_http_breaker_threshold,
							5,
							0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.http_breaker_cooldown",
							"How long an open circuit breaker waits before one probe request.",
							NULL,
							&orchestrator_http_breaker_cooldown,
							30 * 1000,
							1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("orchestrator.webhook_retry_schedule",
							   "Delays before the second, third, ... attempt of a webhook delivery.",
							   "A delivery is dead after one attempt more than the schedule lists.",
							   &orchestrator_webhook_retry_schedule,
							   "5 seconds, 5 minutes, 30 minutes, 2 hours, 5 hours, 10 hours, 10 hours",
							   PGC_SIGHUP,
							   0,
							   check_retry_schedule, NULL, NULL);

	DefineCustomStringVariable("orchestrator.secret_key_file",
							   "File holding the key that seals webhook secrets at rest.",
							   "A relative path is relative to the data directory.  The file is created (mode 0600) when the first secret is sealed; back it up with the cluster.",
							   &orchestrator_secret_key_file,
							   "orchestrator_secret.key",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   check_secret_key_file, NULL, NULL);

	DefineCustomIntVariable("orchestrator.metrics_max_workflows",
							"Workflows that get their own series in the counters of metrics().",
							"The first workflow names seen since the server started get their own workflow label; later ones are counted under \"other\".",
							&orchestrator_metrics_max_workflows,
							100,
							1, 100000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("orchestrator.otlp_endpoint",
							   "Base URL of an OpenTelemetry collector (OTLP/HTTP, JSON) that receives the spans of runs and steps.",
							   "Spans are posted to <endpoint>/v1/traces.  Empty: no export.",
							   &orchestrator_otlp_endpoint,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("orchestrator.otlp_queue_size",
							"Spans the export queue in shared memory holds.",
							"Committed spans wait there for the exporter; when it is full, more are dropped and counted.",
							&orchestrator_otlp_queue_size,
							8192,
							64, 1024 * 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("orchestrator");
}
