/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Configuration parameters (orchestrator.*) of the orchestrator extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_GUC_H
#define ORCHESTRATOR_GUC_H

/* Compile-time upper bound on dispatchers; sizes shared memory. */
#define ORCHESTRATOR_MAX_WORKERS	64

extern char *orchestrator_database;
extern int	orchestrator_workers;
extern int	orchestrator_batch_size;
extern int	orchestrator_batch_window;
extern int	orchestrator_poll_interval;
extern int	orchestrator_default_lease;
extern int	orchestrator_default_step_timeout;
extern int	orchestrator_max_step_timeout;
extern int	orchestrator_relay_queue_size;
extern int	orchestrator_notify_queue_max_usage;
extern int	orchestrator_notify_interval;
extern int	orchestrator_notify_channels;
extern int	orchestrator_definition_cache_size;
extern int	orchestrator_plan_cache_size;
extern int	orchestrator_max_input_size;
extern int	orchestrator_max_result_size;
extern int	orchestrator_max_signal_size;
extern int	orchestrator_max_events_per_run;
extern int	orchestrator_max_owner_active_runs;
extern int	orchestrator_max_active_runs;
extern int	orchestrator_max_pending_webhooks;
extern int	orchestrator_max_sessions_per_owner;
extern int	orchestrator_shutdown_grace;
extern int	orchestrator_step_timeout_grace;
extern int	orchestrator_engine_timeout;
extern int	orchestrator_health_max_ready_age;
extern char *orchestrator_http_allowed_hosts;
extern int	orchestrator_http_max_concurrency;
extern int	orchestrator_http_max_host_connections;
extern int	orchestrator_http_max_response_size;
extern int	orchestrator_http_breaker_threshold;
extern int	orchestrator_http_breaker_cooldown;
extern char *orchestrator_webhook_retry_schedule;

/* Values of orchestrator.notify_channels: where run events are announced. */
#define NOTIFY_CHANNELS_PUBLIC	0	/* the database's channel "orchestrator" */
#define NOTIFY_CHANNELS_PRIVATE 1	/* each role's own (events_channel()) */
#define NOTIFY_CHANNELS_BOTH	2

/* Values of orchestrator.archive_mode. */
#define ORCHESTRATOR_ARCHIVE_DROP	0
#define ORCHESTRATOR_ARCHIVE_DETACH	1

extern int	orchestrator_retention;
extern int	orchestrator_archive_mode;
extern int	orchestrator_partitions_ahead;
extern int	orchestrator_partition_fillfactor;
extern bool orchestrator_restoring;

/* Key that seals secrets at rest (secrets.c). */
extern char *orchestrator_secret_key_file;

/* Counters of metrics() (metrics.c) and span export (otlp.c). */
extern int	orchestrator_metrics_max_workflows;
extern char *orchestrator_otlp_endpoint;
extern int	orchestrator_otlp_queue_size;

extern void orchestrator_define_gucs(void);

#endif							/* ORCHESTRATOR_GUC_H */
