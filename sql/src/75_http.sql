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

-- Does the step's host:port let a request through now?  Returns NULL when it
-- does (and marks a probe when the cool-down is over), else the time to look
-- again.  Never waits for a lock (src/breaker.c, as the HTTP claim asks).
CREATE FUNCTION orchestrator._http_circuit_admit(owner regrole, host text, probe_lease interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orchestrator_http_circuit_admit'
LANGUAGE C VOLATILE;

-- Seconds or an HTTP date in a Retry-After header, as a delay of at most a
-- day (NULL: none, or it does not parse), as the dispatchers read it
-- (src/http_record.c).
CREATE FUNCTION orchestrator._retry_after(value text)
RETURNS interval
AS 'MODULE_PATHNAME', 'orchestrator_retry_after'
LANGUAGE C STABLE STRICT;

-- Record one finished attempt of an http step as the dispatchers do
-- (src/http_record.c): a success, a retry or a failure.  Returns the
-- breaker's key and whether the attempt counts as a failure of the host
-- (NULL host: no effect on the circuit breaker, or a stale response that was
-- dropped).  The dispatchers record batches of responses in C, with the
-- circuit breakers (src/breaker.c) and webhook deliveries (src/webhook.c).
CREATE FUNCTION orchestrator._http_step_record(run_id uuid, step text, token uuid, status integer,
	headers jsonb, body text, body_kind text, error_kind text, error text, elapsed_ms float8,
	OUT owner regrole, OUT host text, OUT failed boolean)
LANGUAGE C
AS 'MODULE_PATHNAME', 'orchestrator_http_step_record';
