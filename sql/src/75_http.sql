-- HTTP steps: claimed by the dispatchers with a lease, sent with libcurl
-- outside any transaction (src/http.c), recorded in batches.  A per-host
-- circuit breaker keeps steps from hammering a host that keeps failing.

-- URL checks, done by libcurl's own URL parser (src/http_util.c).
-- NULL when the URL may be used, else 'invalid: ...' or 'refused: ...'.
CREATE FUNCTION orchestrator._http_check_url(url text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_check_url_sql'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- What a dispatcher decides for a URL whose host resolved to address (the
-- URL check, then the connect-time check): NULL when it would connect, else
-- 'invalid: ...' or 'refused: ...'.  For tests.
CREATE FUNCTION orchestrator._http_check_connect(url text, address inet)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_check_connect'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- "host:port" of an http(s) URL (the circuit breaker key), NULL when invalid.
CREATE FUNCTION orchestrator._http_url_host(url text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_url_host'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION orchestrator._random_bytes(n integer)
RETURNS bytea
AS 'MODULE_PATHNAME', 'orchestrator_random_bytes'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- The Standard Webhooks signature 'v1,<base64 HMAC-SHA256(key, id.ts.body)>'
-- with a webhook's sealed secret (webhook_secrets), opened in C only.
CREATE FUNCTION orchestrator._webhook_sign(sealed_secret text, msg_id text, ts bigint, body text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_sign'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- Raise a clear error for a URL that cannot be used: 22023 when it is not
-- an http(s) URL, 42501 when its host and port are not allowed.
CREATE FUNCTION orchestrator._http_require_url(url text, what text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	why     text := orchestrator._http_check_url(url);
	allowed text := current_setting('orchestrator.http_allowed_hosts');
BEGIN
	IF why IS NULL THEN
		RETURN;
	ELSIF left(why, 8) = 'refused:' THEN
		RAISE EXCEPTION '% may not connect to %', what, url
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = upper(substr(why, 10, 1)) || substr(why, 11) || '.',
				  HINT = CASE WHEN btrim(allowed) = ''
							  THEN 'orchestrator.http_allowed_hosts is empty, so no host is allowed; a superuser can list hosts, addresses and ports in it (postgresql.conf, then reload).'
							  ELSE format('orchestrator.http_allowed_hosts is "%s"; a superuser can add entries such as "api.example.com", "api.example.com:8443" or "10.0.0.0/8:*" (postgresql.conf, then reload).',
										  allowed) END;
	ELSE
		RAISE EXCEPTION '% has an invalid URL %', what, url
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = upper(substr(why, 10, 1)) || substr(why, 11) || '.',
				  HINT = 'Use an absolute http:// or https:// URL.';
	END IF;
END
$$;

-- define_workflow: literal URLs of http steps (and http compensations) must
-- be valid and allowed, and header names HTTP tokens other than Host,
-- Content-Length and Transfer-Encoding (curl derives those from the URL and
-- the body; a user's own could reach another virtual host than the checked
-- one, or smuggle requests).  Templated URLs and headers are checked when
-- they are sent (src/http.c).
CREATE FUNCTION orchestrator._http_check_spec(wf text, steps orchestrator.definition_steps[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s   orchestrator.definition_steps;
	req jsonb;
	k   text;
BEGIN
	FOREACH s IN ARRAY steps LOOP
		FOREACH req IN ARRAY ARRAY[CASE WHEN s.kind = 'http' THEN s.spec -> 'request' END,
								   CASE WHEN s.spec -> 'compensate' ->> 'kind' = 'http'
										THEN s.spec -> 'compensate' -> 'request' END] LOOP
			IF jsonb_typeof(req -> 'headers') = 'object' AND NOT req -> 'headers' ? '$path' THEN
				FOR k IN SELECT jsonb_object_keys(req -> 'headers') LOOP
					IF k !~ '^[-!#$%&''*+.^_`|~0-9A-Za-z]+$' THEN
						PERFORM orchestrator._spec_error(wf,
							format('step "%s": request header name %s is not an HTTP token', s.step, to_jsonb(k)),
							'Header names are made of letters, digits and !#$%&''*+-.^_`|~ only.');
					ELSIF lower(k) IN ('host', 'content-length', 'transfer-encoding') THEN
						PERFORM orchestrator._spec_error(wf,
							format('step "%s": request header "%s" may not be set', s.step, k),
							'Host, Content-Length and Transfer-Encoding are derived from the URL and the body; remove the header (to reach another host, change the URL).');
					END IF;
				END LOOP;
			END IF;
			IF jsonb_typeof(req -> 'url') = 'string' THEN
				PERFORM orchestrator._http_require_url(req ->> 'url',
					format('step "%s" of workflow "%s"', s.step, wf));
			END IF;
		END LOOP;
	END LOOP;
END
$$;

-- Circuit breakers, one row per workflow owner and host:port that has
-- failed.  closed: requests flow, failures counts consecutive failures;
-- open: requests wait until retry_at; half_open: one probe request is in
-- flight until retry_at.  Per owner, so that one role's failing requests
-- (or a role provoking failures on purpose) never hold back another's.
CREATE TABLE orchestrator.http_circuits (
	owner      regrole     NOT NULL,
	host       text        NOT NULL,
	state      text        NOT NULL DEFAULT 'closed',
	failures   integer     NOT NULL DEFAULT 0,
	opened_at  timestamptz,
	retry_at   timestamptz,
	last_error jsonb,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (owner, host),
	CHECK (state IN ('closed', 'open', 'half_open'))
);
COMMENT ON TABLE orchestrator.http_circuits IS 'circuit breakers of http steps per workflow owner and host:port';

-- Each role sees the breakers of its own workflows; admins all.
CREATE VIEW orchestrator.circuit_breakers WITH (security_barrier) AS
	SELECT c.owner, c.host, c.state, c.failures, c.opened_at,
		   CASE WHEN c.state <> 'closed' THEN c.retry_at END AS retry_at,
		   c.last_error, c.updated_at
	FROM orchestrator.http_circuits c
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(c.owner);
COMMENT ON VIEW orchestrator.circuit_breakers IS
'circuit breaker state per workflow owner and host:port (hosts that never failed are closed and not listed)';

-- The worker tag of a queue row waiting for a breaker to close.
CREATE FUNCTION orchestrator._http_circuit_tag(owner regrole, host text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'circuit:' || owner::oid || ':' || host $$;

-- Does the step's host:port let a request through now?  Returns NULL when it
-- does (and marks a probe when the cool-down is over), else the time to look
-- again.  Never waits for a lock: claimers must not block.
CREATE FUNCTION orchestrator._http_circuit_admit(owner regrole, host text, probe_lease interval)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c orchestrator.http_circuits;
BEGIN
	SELECT * INTO c FROM orchestrator.http_circuits h WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host;
	IF NOT FOUND OR c.state = 'closed' THEN
		RETURN NULL;
	END IF;
	IF c.retry_at > now() THEN
		-- open: wait for the cool-down; half open: for the probe (look again soon)
		RETURN CASE WHEN c.state = 'open' THEN c.retry_at
					ELSE least(c.retry_at, now() + interval '1 second') END;
	END IF;
	-- The cool-down is over (or a probe was lost): this request is the probe.
	PERFORM 1 FROM orchestrator.http_circuits h
		WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host
		  AND h.state <> 'closed' AND h.retry_at <= now()
		FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		RETURN now() + interval '1 second';
	END IF;
	UPDATE orchestrator.http_circuits h SET state = 'half_open', retry_at = now() + probe_lease, updated_at = now()
		WHERE h.owner = _http_circuit_admit.owner AND h.host = _http_circuit_admit.host;
	RETURN NULL;
END
$$;

-- When the dispatcher should next look for HTTP work (retries, breaker
-- waits, webhook deliveries); NULL when none is scheduled.
CREATE FUNCTION orchestrator._http_next_wake()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT min(t) FROM (
		SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@http'
		UNION ALL
		SELECT min(o.available_at) FROM orchestrator.webhook_outbox o WHERE o.status IN ('pending', 'delivering')
	) due(t)
$$;

-- Seconds or an HTTP date in a Retry-After header, as a delay (NULL: none).
CREATE FUNCTION orchestrator._retry_after(value text)
RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF value IS NULL THEN
		RETURN NULL;
	ELSIF value ~ '^\s*[0-9]{1,9}\s*$' THEN
		RETURN least(make_interval(secs => btrim(value)::integer), interval '1 day');
	END IF;
	RETURN least(greatest(value::timestamptz - now(), interval '0'), interval '1 day');
EXCEPTION WHEN others THEN
	RETURN NULL;
END
$$;

-- Record one finished attempt of an http step (src/http_record.c): a
-- success, a retry or a failure.  Returns the breaker's key and whether the
-- attempt counts as a failure of the host (NULL host: no effect on the
-- circuit breaker, or a stale response that was dropped).
CREATE FUNCTION orchestrator._http_step_record(run_id uuid, step text, token uuid, status integer,
	headers jsonb, body text, body_kind text, error_kind text, error text, elapsed_ms float8,
	OUT owner regrole, OUT host text, OUT failed boolean)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_http_step_record';

-- Apply the outcomes of a batch to the circuit breakers, host by host (in
-- host order, after all runs of the batch are locked, so recorders cannot
-- deadlock).  Open and close are events of the run whose request decided.
CREATE FUNCTION orchestrator._http_breakers(owners regrole[], hosts text[], failed boolean[], run_ids uuid[], steps text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	threshold integer := current_setting('orchestrator.http_breaker_threshold')::integer;
	cooldown  interval := current_setting('orchestrator.http_breaker_cooldown')::interval;
	o regrole;
	h text;
	i integer;
	c orchestrator.http_circuits;
BEGIN
	FOR o, h IN SELECT DISTINCT x.o, x.h FROM unnest(owners, hosts) x(o, h) WHERE x.h IS NOT NULL ORDER BY 1, 2 LOOP
		FOR i IN SELECT k FROM generate_subscripts(hosts, 1) k WHERE hosts[k] = h AND owners[k] = o ORDER BY k LOOP
			IF NOT failed[i] THEN
				-- the common case (closed, no failures) reads and writes nothing more
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h;
				CONTINUE WHEN NOT FOUND OR (c.state = 'closed' AND c.failures = 0);
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h FOR UPDATE;
				UPDATE orchestrator.http_circuits x SET state = 'closed', failures = 0, retry_at = NULL, updated_at = now()
					WHERE x.owner = o AND x.host = h;
				IF c.state <> 'closed' THEN
					PERFORM orchestrator._emit(run_ids[i], 'circuit.closed', steps[i],
						jsonb_build_object('host', h, 'failures', c.failures, 'opened_at', c.opened_at));
					-- steps that waited for this host may go now
					UPDATE orchestrator.work_queue w SET available_at = now(), worker = NULL
						WHERE w.queue = '@http' AND w.lease_token IS NULL AND w.worker = orchestrator._http_circuit_tag(o, h);
					PERFORM orchestrator._wake_at_commit('http');
				END IF;
			ELSIF threshold > 0 THEN
				INSERT INTO orchestrator.http_circuits AS x (owner, host) VALUES (o, h) ON CONFLICT (owner, host) DO NOTHING;
				SELECT * INTO c FROM orchestrator.http_circuits x WHERE x.owner = o AND x.host = h FOR UPDATE;
				IF c.state = 'half_open' OR (c.state = 'closed' AND c.failures + 1 >= threshold) THEN
					UPDATE orchestrator.http_circuits x
						SET state = 'open', failures = c.failures + 1, opened_at = now(),
							retry_at = now() + cooldown, updated_at = now()
						WHERE x.owner = o AND x.host = h;
					PERFORM orchestrator._emit(run_ids[i], 'circuit.opened', steps[i],
						jsonb_build_object('host', h, 'failures', c.failures + 1, 'retry_at', now() + cooldown));
				ELSE
					UPDATE orchestrator.http_circuits x SET failures = c.failures + 1, updated_at = now()
						WHERE x.owner = o AND x.host = h;
				END IF;
			END IF;
		END LOOP;
	END LOOP;
END
$$;

-- Record a batch of finished HTTP requests (steps and webhook deliveries) in
-- one transaction.  The batch is tried in one subtransaction; only when that
-- fails is it redone item by item, each guarded by its own subtransaction (an
-- error recording one fails that step, not retried, and leaves the others).
-- One subtransaction per item always would overflow the backend's subxid
-- cache with large batches, which slows every snapshot in the server.
CREATE FUNCTION orchestrator._http_record(kinds text[], run_ids uuid[], steps text[], ids uuid[],
	tokens uuid[], statuses integer[], headers text[], bodies text[], body_kinds text[],
	error_kinds text[], errors text[], elapsed float8[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	BEGIN
		PERFORM orchestrator._http_record_items(false, kinds, run_ids, steps, ids, tokens, statuses,
			headers, bodies, body_kinds, error_kinds, errors, elapsed);
	EXCEPTION WHEN others THEN
		PERFORM orchestrator._http_record_items(true, kinds, run_ids, steps, ids, tokens, statuses,
			headers, bodies, body_kinds, error_kinds, errors, elapsed);
	END;
	RETURN coalesce(cardinality(kinds), 0);
END
$$;

CREATE FUNCTION orchestrator._http_record_items(guarded boolean, kinds text[], run_ids uuid[], steps text[], ids uuid[],
	tokens uuid[], statuses integer[], headers text[], bodies text[], body_kinds text[],
	error_kinds text[], errors text[], elapsed float8[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o      regrole;
	h      text;
	f      boolean;
	owners regrole[] := '{}';
	hosts  text[] := '{}';
	failed boolean[] := '{}';
	b_runs uuid[] := '{}';
	b_steps text[] := '{}';
	msg    text;
	state  text;
BEGIN
	FOR i IN 1 .. coalesce(cardinality(kinds), 0) LOOP
		IF kinds[i] = 'webhook' THEN
			IF NOT guarded THEN
				PERFORM orchestrator._webhook_record(ids[i], tokens[i], statuses[i], headers[i]::jsonb,
					error_kinds[i], errors[i], elapsed[i]);
			ELSE
				BEGIN
					PERFORM orchestrator._webhook_record(ids[i], tokens[i], statuses[i], headers[i]::jsonb,
						error_kinds[i], errors[i], elapsed[i]);
				EXCEPTION WHEN others THEN
					GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
					-- its lease expires and the delivery is tried again
					RAISE WARNING 'orchestrator: recording webhook delivery % failed: %', ids[i], msg;
				END;
			END IF;
			CONTINUE;
		END IF;
		IF NOT guarded THEN
			SELECT x.owner, x.host, x.failed INTO o, h, f FROM orchestrator._http_step_record(run_ids[i], steps[i], tokens[i], statuses[i],
				headers[i]::jsonb, bodies[i], body_kinds[i], error_kinds[i], errors[i], elapsed[i]) x;
		ELSE
			BEGIN
				SELECT x.owner, x.host, x.failed INTO o, h, f FROM orchestrator._http_step_record(run_ids[i], steps[i], tokens[i], statuses[i],
					headers[i]::jsonb, bodies[i], body_kinds[i], error_kinds[i], errors[i], elapsed[i]) x;
			EXCEPTION WHEN others THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
				RAISE WARNING 'orchestrator: recording the response of step "%" of run % failed: %', steps[i], run_ids[i], msg;
				h := NULL;
				BEGIN
					IF EXISTS (SELECT 1 FROM orchestrator.work_queue q
							   WHERE q.run_id = run_ids[i] AND q.step = steps[i] AND q.lease_token = tokens[i]) THEN
						PERFORM orchestrator._attempt_failed(run_ids[i], steps[i],
							jsonb_build_object('message', msg, 'sqlstate', state, 'internal', true), false);
					END IF;
				EXCEPTION WHEN others THEN
					NULL;			-- its lease expires and the attempt is retried
				END;
			END;
		END IF;
		IF h IS NOT NULL THEN
			owners := owners || o;
			hosts := hosts || h;
			failed := failed || f;
			b_runs := b_runs || run_ids[i];
			b_steps := b_steps || steps[i];
		END IF;
	END LOOP;
	IF cardinality(hosts) > 0 THEN
		IF NOT guarded THEN
			PERFORM orchestrator._http_breakers(owners, hosts, failed, b_runs, b_steps);
		ELSE
			BEGIN
				PERFORM orchestrator._http_breakers(owners, hosts, failed, b_runs, b_steps);
			EXCEPTION WHEN others THEN
				GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
				RAISE WARNING 'orchestrator: updating circuit breakers failed: %', msg;
			END;
		END IF;
	END IF;
END
$$;
