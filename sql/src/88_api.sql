-- The public API: one entry point per function, bound to the gate in
-- src/caller.c.  The gate records the caller (current_user at the call),
-- refuses calls from security-restricted operations, and runs
-- orchestrator._api_<name>() with the same arguments: the implementation,
-- SECURITY DEFINER, which acts for that caller.  No implementation is
-- granted to anyone; an entry point is the only way in.

CREATE FUNCTION orchestrator.define_workflow(name text, spec jsonb)
RETURNS integer
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.define_workflow(text, jsonb) IS
'validate and store a new version of a workflow definition; an identical spec returns the existing version';

CREATE FUNCTION orchestrator.define_workflow_yaml(name text, spec text)
RETURNS integer
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.define_workflow_yaml(text, text) IS
'define_workflow() of a spec written in YAML (one document of plain data); syntax errors name the line and column';

CREATE FUNCTION orchestrator.grant_workflow(name text, role regrole, privilege text DEFAULT 'start')
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.grant_workflow(text, regrole, text) IS
'let a role start runs of a workflow (privilege start) or work its external steps (work); by its owner or an admin';

CREATE FUNCTION orchestrator.revoke_workflow(name text, role regrole, privilege text DEFAULT 'start')
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.revoke_workflow(text, regrole, text) IS
'take back a privilege granted with grant_workflow; false when it was not granted';

CREATE FUNCTION orchestrator.start_workflow(name text, input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.start_workflow(text, jsonb, jsonb) IS
'start a run of the latest (or the given) version of a workflow; returns the run id';

CREATE FUNCTION orchestrator.schedule_workflow(job_name text, schedule text, workflow text,
											   input jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.schedule_workflow(text, text, text, jsonb, jsonb) IS
'start a workflow on a cron schedule (pg_cron), as the calling role; the same job name again replaces the schedule; returns the pg_cron job id';

CREATE FUNCTION orchestrator.unschedule_workflow(job_name text)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.unschedule_workflow(text) IS
'remove a schedule of the calling role; false when it has none of that name';

CREATE FUNCTION orchestrator.start_workflow_trigger()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.start_workflow_trigger() IS
'trigger function: FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger(''<workflow>'') starts a run per row (input: the new row, the old one on DELETE) as the role whose statement fired it';

CREATE FUNCTION orchestrator.get_workflow(run_id uuid)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.get_workflow(uuid) IS
'a run and its steps as one JSON document';

CREATE FUNCTION orchestrator.workflow_result(run_id uuid)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.workflow_result(uuid) IS
'the result of a succeeded run, else NULL';

CREATE FUNCTION orchestrator.cancel_workflow(run_id uuid, reason text DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.cancel_workflow(uuid, text) IS
'cancel a pending or running run; false when it had already finished';

CREATE FUNCTION orchestrator.retry_run(run_id uuid, steps text[] DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.retry_run(uuid, text[]) IS
'resume a failed or cancelled run: its failed and cancelled steps run again, succeeded steps keep their results; false when the run is not failed or cancelled';

CREATE FUNCTION orchestrator.signal_workflow(run_id uuid, signal text, payload jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.signal_workflow(uuid, text, jsonb) IS
'send a named signal to a run: completes its wait steps on that signal, now or when they start; false when the run has finished';

CREATE FUNCTION orchestrator.events(run_id uuid, after_seq bigint DEFAULT 0)
RETURNS TABLE (seq bigint, at timestamptz, type text, step text, data jsonb)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.events(uuid, bigint) IS
'a run''s events after sequence number after_seq, in order: how a client catches up after a disconnect';

CREATE FUNCTION orchestrator.claim_steps(queue text, worker text, max_steps integer DEFAULT 1,
										 lease interval DEFAULT NULL)
RETURNS TABLE (run_id uuid, step text, attempt integer, lease_token uuid, input jsonb,
			   workflow text, deadline timestamptz, traceparent text)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.claim_steps(text, text, integer, interval) IS
'claim up to max_steps ready steps of a queue (highest priority, then oldest) with a lease; deadline is when the lease or the run''s deadline expires; traceparent is the W3C trace context of the attempt';

CREATE FUNCTION orchestrator.set_queue_limit(queue text, max_running integer)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.set_queue_limit(text, integer) IS
'claim_steps() hands out at most max_running leased steps of the queue at once (NULL: no limit; 0: none)';

CREATE FUNCTION orchestrator.heartbeat_step(run_id uuid, step text, lease_token uuid,
											lease interval DEFAULT NULL, progress jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.heartbeat_step(uuid, text, uuid, interval, jsonb) IS
'extend a claimed step''s lease (by its length, or by a new one); keep progress on the step (event step.progress); false when the lease is lost or the run has finished: stop working';

CREATE FUNCTION orchestrator.complete_step(run_id uuid, step text, lease_token uuid, result jsonb)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.complete_step(uuid, text, uuid, jsonb) IS
'record the result of a claimed step; false (and nothing changed) when the lease is stale';

CREATE FUNCTION orchestrator.complete_steps(run_ids uuid[], steps text[], lease_tokens uuid[], results jsonb[])
RETURNS TABLE (run_id uuid, step text, completed boolean)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.complete_steps(uuid[], text[], uuid[], jsonb[]) IS
'complete_step() for each position of the arrays, in one call; completed is false where the lease was stale';

CREATE FUNCTION orchestrator.fail_step(run_id uuid, step text, lease_token uuid, error jsonb,
									   retryable boolean DEFAULT true)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.fail_step(uuid, text, uuid, jsonb, boolean) IS
'report a failed attempt of a claimed step: retried with backoff while attempts remain and retryable, else the step is dead (or failed) and the run fails';

CREATE FUNCTION orchestrator.rebuild_stats(from_day date DEFAULT NULL)
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.rebuild_stats(date) IS
'forget the daily roll-ups from a day on (all when NULL); maintain() aggregates those days again';

CREATE FUNCTION orchestrator.maintain(max_runs integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.maintain(integer) IS
'create partitions ahead, retire runs that finished longer than orchestrator.retention ago (whole days detached or dropped, the rest row by row, oldest completion first), purge up to max_runs expired sessions; returns a report';

CREATE FUNCTION orchestrator.schedule_maintenance(schedule text DEFAULT '*/10 * * * *')
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.schedule_maintenance(text) IS
'schedule orchestrator.maintain() with pg_cron; returns the pg_cron job id';

CREATE FUNCTION orchestrator.unschedule_maintenance()
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.unschedule_maintenance() IS
'remove the pg_cron job of schedule_maintenance(); false when there was none';

CREATE FUNCTION orchestrator.health()
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.health() IS
'workers alive, queue depth and oldest ready age per queue, active runs, partitions ahead, open circuit breakers';

CREATE FUNCTION orchestrator.metrics()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.metrics() IS
'health and queue metrics in the Prometheus text exposition format (version 0.0.4)';

CREATE FUNCTION orchestrator.create_webhook(url text, events text[] DEFAULT '{*}', secret text DEFAULT NULL,
	OUT id uuid, OUT generated_secret text)
RETURNS record
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.create_webhook(text, text[], text) IS
'subscribe a URL to run events (patterns such as ''*'', ''workflow.failed'', ''step.*''); a NULL secret generates one, returned once';

CREATE FUNCTION orchestrator.rotate_webhook_secret(id uuid, secret text DEFAULT NULL)
RETURNS text
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.rotate_webhook_secret(uuid, text) IS
'replace the signing secret of a webhook; a NULL secret generates one, returned once';

CREATE FUNCTION orchestrator.drop_webhook(id uuid)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.drop_webhook(uuid) IS
'remove a webhook subscription; its pending deliveries are cancelled';

CREATE FUNCTION orchestrator.retry_webhook_deliveries(webhook_id uuid DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.retry_webhook_deliveries(uuid, timestamptz) IS
'queue dead webhook deliveries again (of one webhook, created at or after since); returns how many';

CREATE FUNCTION orchestrator.session_create(key text, value jsonb, ttl interval DEFAULT NULL)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_create(text, jsonb, interval) IS
'create a session of the caller, expiring after ttl (never when NULL); false when the key exists and has not expired';

CREATE FUNCTION orchestrator.session_set(key text, value jsonb, ttl interval DEFAULT NULL,
	expected_version bigint DEFAULT NULL, lock_token uuid DEFAULT NULL)
RETURNS bigint
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_set(text, jsonb, interval, bigint, uuid) IS
'create or replace a session of the caller; returns the new version (1 for a new key); 40001 when expected_version is stale (0: must not exist), 55P03 when locked under another token';

CREATE FUNCTION orchestrator.session_get(key text)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_get(text) IS
'the value of a session of the caller; NULL when absent or expired';

CREATE FUNCTION orchestrator.session_read(key text)
RETURNS TABLE (value jsonb, version bigint, expires_at timestamptz, locked boolean)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_read(text) IS
'a session of the caller with its version, expiry and lock state; no row when absent or expired';

CREATE FUNCTION orchestrator.session_touch(key text, ttl interval)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_touch(text, interval) IS
'let a session expire ttl from now (never when NULL); false when absent or expired';

CREATE FUNCTION orchestrator.session_delete(key text)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_delete(text) IS
'delete a session of the caller; false when absent or expired; 55P03 while it is locked';

CREATE FUNCTION orchestrator.session_list(prefix text DEFAULT '', max_keys integer DEFAULT 100)
RETURNS TABLE (key text, version bigint, expires_at timestamptz)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_list(text, integer) IS
'the caller''s live sessions whose key starts with prefix, in byte order of the keys, at most max_keys';

CREATE FUNCTION orchestrator.session_lock(key text, lock_token uuid, ttl interval)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_lock(text, uuid, interval) IS
'lock a session under a token until ttl from now (again with the same token: extend); false when another token holds it or the session is absent';

CREATE FUNCTION orchestrator.session_unlock(key text, lock_token uuid)
RETURNS boolean
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_unlock(text, uuid) IS
'release a session lock held under this token; false when it is not (any more)';

CREATE FUNCTION orchestrator.session_channel()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.session_channel() IS
'the channel to LISTEN to for changes of the caller''s sessions (private to the caller; changes when the server restarts)';

CREATE FUNCTION orchestrator.events_channel()
RETURNS text
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.events_channel() IS
'the channel to LISTEN to for the events of the runs the caller started or whose workflow it owns (private to the caller; changes when the server restarts); with orchestrator.notify_channels private or both';

CREATE FUNCTION orchestrator.set_owner_limits(role regrole, limits jsonb)
RETURNS jsonb
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.set_owner_limits(regrole, jsonb) IS
'set hard limits of a role (max_input_bytes, max_result_bytes, max_signal_bytes, max_events_per_run, max_active_runs, max_pending_webhooks, max_sessions; null: the default, 0: none); admins only; returns the limits as they apply';

CREATE FUNCTION orchestrator.get_owner_limits(role regrole DEFAULT NULL)
RETURNS TABLE (name text, value bigint, source text)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.get_owner_limits(regrole) IS
'the hard limits that apply to a role (default: the caller) and where each comes from (role, or the setting); 0: no limit';

CREATE FUNCTION orchestrator.set_tenant_limits(tenant text, max_active_runs integer)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.set_tenant_limits(text, integer) IS
'admission: at most max_active_runs active runs started with option tenant = tenant, more wait queued (NULL or 0: no limit); admins only';

CREATE FUNCTION orchestrator.get_tenant_limits(tenant text DEFAULT NULL)
RETURNS TABLE (name text, max_active_runs integer, active integer, queued bigint)
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'orchestrator_api';
COMMENT ON FUNCTION orchestrator.get_tenant_limits(text) IS
'the tenants with an admission limit (or the one named): the limit, runs active and queued; admins only';
