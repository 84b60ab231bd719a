-- Health and metrics for operators: health() as JSON for a probe or a
-- human, metrics() in the Prometheus text exposition format for
-- postgres_exporter (custom query) or a scrape proxy.

-- Per queue: ready now, scheduled later (retries, timers), running under a
-- lease, and the age of the oldest ready item.
CREATE FUNCTION orchestrator._queue_stats(
	OUT queue text, OUT ready bigint, OUT scheduled bigint, OUT running bigint,
	OUT oldest_ready_age_seconds double precision)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT q.queue,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()),
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at > now()),
		   count(*) FILTER (WHERE q.lease_token IS NOT NULL),
		   coalesce(extract(epoch FROM now() - min(q.available_at)
				FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()))::double precision, 0)
	FROM orchestrator.work_queue q
	GROUP BY q.queue
$$;

-- health(): "live" when a dispatcher is running; "ready" when the
-- dispatchers keep up: none of their work (queues @sql, @timer, @http) has
-- been ready for longer than orchestrator.health_max_ready_age (a step a
-- dispatcher is running right now is not waiting), no dispatcher has
-- failed its last 3 turns or more, and work is not ready with no dispatcher
-- running.  Every problem is listed in "problems"; "status" is 'ok' without any.
CREATE FUNCTION orchestrator._api_health()
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
	configured integer := current_setting('orchestrator.workers')::integer;
	max_age    interval := current_setting('orchestrator.health_max_ready_age')::interval;
	alive      integer;
	last_turn  timestamptz;
	failing    integer;
	dispatchers jsonb;
	queues     jsonb;
	depth      bigint;
	oldest     double precision;
	own_ready  bigint;
	own_oldest double precision;
	ahead      integer := orchestrator._partitions_ahead();
	active     bigint;
	queued     bigint;
	breakers   jsonb;
	problems   text[] := '{}';
	not_ready  boolean := false;
	f          record;
	relay      record;
	usage      double precision := orchestrator._notify_queue_usage();
	holders    jsonb;
	notify     jsonb;
	caches     jsonb;
BEGIN
	SELECT count(*), max(w.last_active), count(*) FILTER (WHERE w.consecutive_failures >= 3),
		   coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('slot', w.slot, 'pid', w.pid,
				'started_at', w.started_at, 'last_active', w.last_active, 'steps_processed', w.steps_processed,
				'consecutive_failures', w.consecutive_failures, 'last_error', w.last_error,
				'last_error_at', w.last_error_at, 'run_id', w.run_id, 'step', w.step, 'step_since', w.step_since))
				ORDER BY w.slot), '[]')
	INTO alive, last_turn, failing, dispatchers
	FROM orchestrator._worker_status() w
	WHERE w.pid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.pid);
	SELECT coalesce(jsonb_agg(jsonb_build_object('queue', s.queue, 'ready', s.ready, 'scheduled', s.scheduled,
					'running', s.running, 'oldest_ready_age_seconds', round(s.oldest_ready_age_seconds::numeric, 3))
				ORDER BY s.queue), '[]'),
		   coalesce(sum(s.ready), 0), coalesce(max(s.oldest_ready_age_seconds), 0)
	INTO queues, depth, oldest
	FROM orchestrator._queue_stats() s;
	-- The dispatchers' own work that waits: ready, not leased, and not the
	-- step a dispatcher is running.
	WITH busy AS MATERIALIZED (
		SELECT b.run_id, b.step FROM orchestrator._worker_status() b WHERE b.run_id IS NOT NULL)
	SELECT count(*), coalesce(extract(epoch FROM now() - min(q.available_at))::double precision, 0)
	INTO own_ready, own_oldest
	FROM orchestrator.work_queue q
	WHERE left(q.queue, 1) = '@' AND q.lease_token IS NULL AND q.available_at <= now()
	  AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.run_id = q.run_id AND b.step = q.step);
	-- queued runs (admission, 54_flow_control.sql) are not finished but not active
	SELECT count(*) INTO queued FROM orchestrator.admission_queue;
	SELECT count(*) - queued INTO active FROM orchestrator.workflow_runs r WHERE r.finished_at IS NULL;
	SELECT coalesce(jsonb_agg(jsonb_build_object('owner', c.owner, 'host', c.host, 'state', c.state, 'failures', c.failures,
				'opened_at', c.opened_at, 'retry_at', c.retry_at) ORDER BY c.host, c.owner::text), '[]')
	INTO breakers
	FROM orchestrator.http_circuits c WHERE c.state <> 'closed';

	IF alive < configured THEN
		problems := problems || format('%s of %s dispatchers running', alive, configured);
	END IF;
	-- The usual reason for none: they serve another database, or one that
	-- does not exist (then they exit at once and are started again).
	IF current_setting('orchestrator.database') <> current_database() THEN
		problems := problems || CASE
			WHEN NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = current_setting('orchestrator.database'))
			THEN format('orchestrator.database is "%s", which does not exist: the dispatchers cannot start; set it to "%s"',
						current_setting('orchestrator.database'), current_database())
			ELSE format('orchestrator.database is "%s": no dispatcher serves this database ("%s")',
						current_setting('orchestrator.database'), current_database()) END;
		not_ready := true;
	END IF;
	IF alive = 0 AND own_ready > 0 THEN
		problems := problems || format('no dispatcher is running and %s sql, timer or http items are ready', own_ready);
		not_ready := true;
	END IF;
	IF own_ready > 0 AND own_oldest > extract(epoch FROM max_age) THEN
		problems := problems || format('dispatcher work has been ready for %s s, longer than orchestrator.health_max_ready_age (%s)',
			round(own_oldest::numeric, 1), max_age);
		not_ready := true;
	END IF;
	FOR f IN SELECT x ->> 'slot' AS slot, x ->> 'consecutive_failures' AS n, x ->> 'last_error' AS error
			 FROM jsonb_array_elements(dispatchers) x
			 WHERE (x ->> 'consecutive_failures')::integer >= 3 LOOP
		problems := problems || format('dispatcher %s failed its last %s turns: %s', f.slot, f.n, f.error);
		not_ready := true;
	END LOOP;
	IF ahead < 1 THEN
		problems := problems || 'no partition for tomorrow: run orchestrator.maintain()';
	END IF;
	-- The server's notification queue: how full, the relay's counts, and when
	-- notifications wait, the sessions furthest behind in reading it (the one
	-- at the queue's tail holds it back: a listener in a long transaction).
	-- Each dispatcher's per-process caches (bounded in bytes, see
	-- orchestrator.definition_cache_size and orchestrator.plan_cache_size).
	SELECT coalesce(jsonb_agg(jsonb_build_object('slot', c.slot, 'pid', c.pid, 'cache', c.cache,
				'entries', c.entries, 'bytes', c.bytes, 'limit_bytes', c.limit_bytes, 'hits', c.hits,
				'misses', c.misses, 'evictions', c.evictions) ORDER BY c.slot, c.cache), '[]')
	INTO caches
	FROM orchestrator._cache_status() c;
	SELECT * INTO relay FROM orchestrator._relay_status();
	WITH l AS MATERIALIZED (SELECT * FROM orchestrator._notify_listeners())
	SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('pid', l.pid, 'database', d.datname,
				'usename', a.usename, 'application_name', a.application_name, 'client_addr', a.client_addr,
				'state', a.state, 'xact_start', a.xact_start, 'behind_bytes', l.behind_bytes))
				ORDER BY l.behind_bytes DESC, l.pid), '[]')
	INTO holders
	FROM l
	LEFT JOIN pg_database d ON d.oid = l.database
	LEFT JOIN pg_stat_activity a ON a.pid = l.pid
	WHERE l.behind_bytes > 0 AND l.behind_bytes >= (SELECT max(m.behind_bytes) FROM l m) / 2;
	notify := jsonb_strip_nulls(jsonb_build_object(
		'queue_usage', round(usage::numeric, 6),
		'server_queue_usage', round(pg_notification_queue_usage()::numeric, 6),
		'max_usage', current_setting('orchestrator.notify_queue_max_usage')::integer / 100.0,
		'relay_pid', relay.pid, 'relay_queued', relay.queued, 'sent', relay.sent, 'dropped', relay.dropped,
		'direct', relay.direct, 'deferrals', relay.deferrals, 'deferred_since', relay.deferred_since,
		'unheard', relay.unheard,
		'listeners_behind', CASE WHEN relay.deferred_since IS NOT NULL
			OR usage * 100 >= current_setting('orchestrator.notify_queue_max_usage')::integer / 2.0
			THEN holders END));
	IF usage * 100 >= current_setting('orchestrator.notify_queue_max_usage')::integer THEN
		problems := problems || format('the notification queue is %s%% full (orchestrator.notify_queue_max_usage is %s%%): notifications wait or are dropped%s',
			round((usage * 100)::numeric, 1), current_setting('orchestrator.notify_queue_max_usage'),
			coalesce(format('; held back by pid %s (%s, %s since %s)', holders -> 0 ->> 'pid',
				coalesce(holders -> 0 ->> 'usename', 'unknown user'), coalesce(holders -> 0 ->> 'state', 'unknown state'),
				coalesce(holders -> 0 ->> 'xact_start', '?')), ''));
	ELSIF relay.deferred_since IS NOT NULL THEN
		problems := problems || format('the relay has been waiting for room in the notification queue since %s', relay.deferred_since);
	END IF;
	RETURN jsonb_build_object(
		'status', CASE WHEN cardinality(problems) = 0 THEN 'ok' ELSE 'degraded' END,
		'live', alive > 0,
		'ready', NOT not_ready,
		'problems', to_jsonb(problems),
		'workers', jsonb_build_object('configured', configured, 'alive', alive, 'failing', failing,
			'last_active', last_turn),
		'dispatchers', dispatchers,
		'active_runs', active,
		'queued_runs', queued,
		'queue_depth', depth,
		'oldest_ready_age_seconds', round(oldest::numeric, 3),
		'dispatcher_ready', own_ready,
		'dispatcher_oldest_ready_age_seconds', round(own_oldest::numeric, 3),
		'queues', queues,
		'partitions_ahead', ahead,
		-- Open and half-open per-host breakers of http steps and webhooks.
		'open_circuit_breakers', breakers,
		'notifications', notify,
		'caches', caches);
END
$$;

-- Counters and histograms of committed transitions, kept in shared memory
-- (src/metrics.c), in the Prometheus text format.
CREATE FUNCTION orchestrator._metrics_text()
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_metrics_text'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- Count the outcome of an HTTP request of a step (webhook false) or of a
-- webhook delivery when the transaction commits: its status (NULL when
-- none came) or its error kind.
CREATE FUNCTION orchestrator._metrics_http(webhook boolean, status integer, error_kind text)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_metrics_http_sql'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- A Prometheus label value: backslash, double quote and newline escaped.
CREATE FUNCTION orchestrator._prom_label(v text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT replace(replace(replace(coalesce(v, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n') $$;

CREATE FUNCTION orchestrator._api_metrics()
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
	out text := '';
	h   jsonb := orchestrator._api_health();
	q   record;
	w   record;
	r   record;
BEGIN
	out := out || E'# HELP orchestrator_up 1 when health() reports no problem.\n# TYPE orchestrator_up gauge\n'
		|| format(E'orchestrator_up %s\n', CASE h ->> 'status' WHEN 'ok' THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_live 1 when a dispatcher is running (health() "live").\n# TYPE orchestrator_live gauge\n'
		|| format(E'orchestrator_live %s\n', CASE WHEN (h ->> 'live')::boolean THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_ready 1 when the dispatchers keep up with their work (health() "ready").\n# TYPE orchestrator_ready gauge\n'
		|| format(E'orchestrator_ready %s\n', CASE WHEN (h ->> 'ready')::boolean THEN 1 ELSE 0 END);
	out := out || E'# HELP orchestrator_workers_configured Dispatchers configured (orchestrator.workers).\n# TYPE orchestrator_workers_configured gauge\n'
		|| format(E'orchestrator_workers_configured %s\n', h -> 'workers' ->> 'configured');
	out := out || E'# HELP orchestrator_workers_alive Dispatchers running.\n# TYPE orchestrator_workers_alive gauge\n'
		|| format(E'orchestrator_workers_alive %s\n', h -> 'workers' ->> 'alive');
	out := out || E'# HELP orchestrator_worker_steps_total Steps handled by a dispatcher since it started.\n# TYPE orchestrator_worker_steps_total counter\n';
	FOR w IN SELECT s.slot, s.steps_processed FROM orchestrator._worker_status() s ORDER BY s.slot LOOP
		out := out || format(E'orchestrator_worker_steps_total{slot="%s"} %s\n', w.slot, w.steps_processed);
	END LOOP;
	out := out || E'# HELP orchestrator_worker_consecutive_failures Failed turns of a dispatcher since its last good one.\n# TYPE orchestrator_worker_consecutive_failures gauge\n';
	FOR w IN SELECT s.slot, s.consecutive_failures FROM orchestrator._worker_status() s ORDER BY s.slot LOOP
		out := out || format(E'orchestrator_worker_consecutive_failures{slot="%s"} %s\n', w.slot, w.consecutive_failures);
	END LOOP;
	out := out || E'# HELP orchestrator_active_runs Runs active (pending, running, compensating).\n# TYPE orchestrator_active_runs gauge\n'
		|| format(E'orchestrator_active_runs %s\n', h ->> 'active_runs');
	out := out || E'# HELP orchestrator_queued_runs Runs waiting for an admission slot (status queued).\n# TYPE orchestrator_queued_runs gauge\n'
		|| format(E'orchestrator_queued_runs %s\n', h ->> 'queued_runs');
	out := out || E'# HELP orchestrator_queue_ready Steps ready to be claimed, per queue.\n# TYPE orchestrator_queue_ready gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_ready{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.ready);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_scheduled Steps waiting for a retry or timer, per queue.\n# TYPE orchestrator_queue_scheduled gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_scheduled{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.scheduled);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_running Steps claimed under a lease, per queue.\n# TYPE orchestrator_queue_running gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_running{queue="%s"} %s\n', orchestrator._prom_label(q.queue), q.running);
	END LOOP;
	out := out || E'# HELP orchestrator_queue_oldest_ready_age_seconds Age of the oldest ready step, per queue.\n# TYPE orchestrator_queue_oldest_ready_age_seconds gauge\n';
	FOR q IN SELECT * FROM orchestrator._queue_stats() s ORDER BY s.queue LOOP
		out := out || format(E'orchestrator_queue_oldest_ready_age_seconds{queue="%s"} %s\n',
			orchestrator._prom_label(q.queue), round(q.oldest_ready_age_seconds::numeric, 3));
	END LOOP;
	out := out || E'# HELP orchestrator_runs_finished_5m Runs finished in the last 5 minutes, per workflow and status.\n# TYPE orchestrator_runs_finished_5m gauge\n';
	FOR r IN SELECT x.name, x.status, count(*) AS n FROM orchestrator.workflow_runs x
			 WHERE x.finished_at >= now() - interval '5 minutes'
			 GROUP BY x.name, x.status ORDER BY x.name, x.status LOOP
		out := out || format(E'orchestrator_runs_finished_5m{workflow="%s",status="%s"} %s\n',
			orchestrator._prom_label(r.name), orchestrator._prom_label(r.status), r.n);
	END LOOP;
	out := out || E'# HELP orchestrator_http_circuit_open 1 for a workflow owner and host whose circuit breaker is open or half open.\n# TYPE orchestrator_http_circuit_open gauge\n';
	FOR r IN SELECT c.owner::text AS owner, c.host, c.state FROM orchestrator.http_circuits c
			 WHERE c.state <> 'closed' ORDER BY c.host, 1 LOOP
		out := out || format(E'orchestrator_http_circuit_open{owner="%s",host="%s",state="%s"} 1\n',
			orchestrator._prom_label(r.owner), orchestrator._prom_label(r.host), r.state);
	END LOOP;
	out := out || E'# HELP orchestrator_webhook_deliveries_pending Webhook deliveries not yet delivered or dead.\n# TYPE orchestrator_webhook_deliveries_pending gauge\n'
		|| format(E'orchestrator_webhook_deliveries_pending %s\n',
			(SELECT count(*) FROM orchestrator.webhook_outbox o WHERE o.status IN ('pending', 'delivering')));
	out := out || E'# HELP orchestrator_cache_entries Entries in a dispatcher\'s per-process cache.\n# TYPE orchestrator_cache_entries gauge\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_entries{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.entries);
	END LOOP;
	out := out || E'# HELP orchestrator_cache_bytes Memory of a dispatcher\'s per-process cache.\n# TYPE orchestrator_cache_bytes gauge\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_bytes{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.bytes);
	END LOOP;
	out := out || E'# HELP orchestrator_cache_limit_bytes Bound of a dispatcher\'s per-process cache (0: bounded by count only).\n# TYPE orchestrator_cache_limit_bytes gauge\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_limit_bytes{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.limit_bytes);
	END LOOP;
	out := out || E'# HELP orchestrator_cache_hits_total Lookups a dispatcher\'s cache answered.\n# TYPE orchestrator_cache_hits_total counter\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_hits_total{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.hits);
	END LOOP;
	out := out || E'# HELP orchestrator_cache_misses_total Lookups a dispatcher\'s cache did not answer.\n# TYPE orchestrator_cache_misses_total counter\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_misses_total{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.misses);
	END LOOP;
	out := out || E'# HELP orchestrator_cache_evictions_total Entries a dispatcher\'s cache dropped to stay within its bound.\n# TYPE orchestrator_cache_evictions_total counter\n';
	FOR r IN SELECT * FROM orchestrator._cache_status() c ORDER BY c.slot, c.cache LOOP
		out := out || format(E'orchestrator_cache_evictions_total{slot="%s",cache="%s"} %s\n', r.slot, r.cache, r.evictions);
	END LOOP;
	out := out || E'# HELP orchestrator_notify_queue_usage Fraction of the server\'s notification queue in use, up to the listener furthest behind.\n# TYPE orchestrator_notify_queue_usage gauge\n'
		|| format(E'orchestrator_notify_queue_usage %s\n', h -> 'notifications' ->> 'queue_usage');
	out := out || E'# HELP orchestrator_notifications_dropped_total Notifications dropped: relay ring full, queue too full, or NOTIFY failed.\n# TYPE orchestrator_notifications_dropped_total counter\n'
		|| format(E'orchestrator_notifications_dropped_total %s\n', h -> 'notifications' ->> 'dropped');
	out := out || E'# HELP orchestrator_relay_deferrals_total Pauses of the relay because the notification queue was too full.\n# TYPE orchestrator_relay_deferrals_total counter\n'
		|| format(E'orchestrator_relay_deferrals_total %s\n', h -> 'notifications' ->> 'deferrals');
	out := out || E'# HELP orchestrator_relay_queued Notifications waiting in the relay\'s ring.\n# TYPE orchestrator_relay_queued gauge\n'
		|| format(E'orchestrator_relay_queued %s\n', h -> 'notifications' ->> 'relay_queued');
	out := out || E'# HELP orchestrator_partitions_ahead Days after today with history partitions.\n# TYPE orchestrator_partitions_ahead gauge\n'
		|| format(E'orchestrator_partitions_ahead %s\n', h ->> 'partitions_ahead');
	RETURN out || coalesce(orchestrator._metrics_text(), '');
END
$$;
