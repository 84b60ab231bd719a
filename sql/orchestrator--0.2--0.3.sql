-- orchestrator 0.2 -> 0.3: ownership and rights.
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.3'" to load this file. \quit

-- http egress policy
-- orchestrator.http_allowed_hosts: ports, CIDR ranges, special addresses
-- refused at connect time (src/egress.c); refusals before sending carry
-- their kind; request headers Host, Content-Length and Transfer-Encoding
-- refused.  The same functions as sql/src/75_http.sql.

CREATE FUNCTION orchestrator._http_check_connect(url text, address inet)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_http_check_connect'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION orchestrator._http_check_connect(text, inet) FROM PUBLIC;

CREATE OR REPLACE FUNCTION orchestrator._http_require_url(url text, what text)
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

CREATE OR REPLACE FUNCTION orchestrator._http_check_spec(wf text, steps orchestrator.definition_steps[])
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

CREATE OR REPLACE FUNCTION orchestrator._http_claim(max_items integer, worker text, recover boolean,
	OUT kind text, OUT run_id uuid, OUT step text, OUT id uuid, OUT token uuid, OUT method text,
	OUT url text, OUT headers text[], OUT body text, OUT timeout_ms integer, OUT sign_key bytea)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q      record;
	r      orchestrator.workflow_runs;
	req    jsonb;
	hdrs   jsonb;
	why    text;
	host   text;
	wait   timestamptz;
	tmo    interval;
	margin interval := interval '30 seconds';
	n      integer;
	taken  integer := 0;
	guard  boolean;
	keys   text[];
BEGIN
	IF recover THEN
		UPDATE orchestrator.work_queue w SET available_at = now()
			WHERE w.queue = '@http' AND w.lease_token IS NOT NULL AND w.available_at > now()
			  AND w.worker LIKE 'http:%'
			  AND w.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s
										 WHERE s.pid IS NOT NULL));
	END IF;

	-- Breakers are looked at only while one is not closed (usually never).
	guard := EXISTS (SELECT 1 FROM orchestrator.http_circuits c WHERE c.state <> 'closed');

	-- A lease left by a dispatcher that died or lost track is a lost
	-- attempt (see _claim).
	FOR q IN SELECT * FROM orchestrator._claim('@http', max_items) LOOP
		SELECT * INTO r FROM orchestrator.workflow_runs w WHERE w.id = q.run_id;
		SELECT s.input, ds.timeout INTO req, tmo
			FROM orchestrator.workflow_steps s
			JOIN orchestrator.definition_steps ds ON ds.name = r.name AND ds.version = r.version AND ds.step = s.step
			WHERE s.run_id = q.run_id AND s.step = q.step;
		tmo := coalesce(tmo, current_setting('orchestrator.default_step_timeout')::interval);

		hdrs := coalesce(nullif(req -> 'headers', 'null'), '{}');
		why := CASE WHEN jsonb_typeof(req -> 'url') IS DISTINCT FROM 'string'
					THEN format('invalid: the rendered url is %s, not a string', coalesce(req -> 'url', 'null'))
					WHEN jsonb_typeof(hdrs) <> 'object'
					THEN format('invalid: the rendered headers are %s, not an object', left(hdrs::text, 200))
					ELSE orchestrator._http_check_url(req ->> 'url') END;
		IF why IS NULL AND guard THEN
			host := orchestrator._http_url_host(req ->> 'url');
			wait := orchestrator._http_circuit_admit(host, tmo + margin);
			IF wait IS NOT NULL THEN
				-- the host's circuit is open: wait without counting an attempt
				UPDATE orchestrator.work_queue w SET available_at = wait, worker = 'circuit:' || host
					WHERE w.run_id = q.run_id AND w.step = q.step;
				CONTINUE;
			END IF;
		END IF;

		n := orchestrator._step_started(r, q.step, worker);
		IF why IS NOT NULL THEN
			-- never sent: not retryable
			PERFORM orchestrator._attempt_failed(q.run_id, q.step, jsonb_build_object(
				'message', substr(why, strpos(why, ':') + 2), 'kind', left(why, strpos(why, ':') - 1),
				'url', req -> 'url'), false);
			CONTINUE;
		END IF;

		token := gen_random_uuid();
		UPDATE orchestrator.work_queue w
			SET lease_token = token, lease = tmo + margin, worker = _http_claim.worker,
				available_at = now() + tmo + margin
			WHERE w.run_id = q.run_id AND w.step = q.step;
		kind := 'step';
		run_id := q.run_id;
		step := q.step;
		id := NULL;
		method := coalesce(req ->> 'method', 'GET');
		url := req ->> 'url';
		IF hdrs = '{}' THEN
			headers := '{}';
			keys := '{}';
		ELSE
			headers := ARRAY(SELECT h.key || ': ' || coalesce(h.value #>> '{}', '') FROM jsonb_each(hdrs) h);
			keys := ARRAY(SELECT lower(k) FROM jsonb_object_keys(hdrs) k);
		END IF;
		-- the same key on every attempt, so receivers can de-duplicate
		IF NOT 'idempotency-key' = ANY (keys) THEN
			headers := headers || ('Idempotency-Key: ' || q.run_id || '/' || q.step);
		END IF;
		-- W3C trace context: the trace is the run, the span this attempt
		IF NOT 'traceparent' = ANY (keys) THEN
			headers := headers || ('traceparent: 00-' || replace(q.run_id::text, '-', '') || '-'
								   || left(md5(q.step || '/' || n), 16) || '-01');
		END IF;
		body := CASE WHEN req ? 'body' AND method NOT IN ('GET', 'HEAD') THEN (req -> 'body')::text END;
		timeout_ms := greatest(1, least(extract(epoch FROM tmo) * 1000, 2147483647))::integer;
		sign_key := NULL;
		RETURN NEXT;
		taken := taken + 1;
	END LOOP;

	IF taken < max_items THEN
		RETURN QUERY SELECT * FROM orchestrator._webhook_claim(max_items - taken, worker, recover);
	END IF;
END
$$;
