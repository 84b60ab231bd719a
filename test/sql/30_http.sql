-- HTTP steps and webhooks: the SQL surface and its validation errors.  (The
-- requests themselves are tested against a live sink in test/client.)
\set VERBOSITY default
\set SHOW_CONTEXT never
SHOW orchestrator.http_allowed_hosts;

-- Literal URLs must be http(s) URLs of allowed hosts.
SELECT orchestrator.define_workflow('http_ok', '{"steps": [
  {"name": "a", "kind": "http", "request": {"method": "POST", "url": "http://127.0.0.1:9/x",
   "headers": {"x-team": "a"}, "body": {"q": {"$path": "$.input.q"}}}, "timeout": "5 seconds"},
  {"name": "b", "kind": "http", "request": {"url": "http://[::1]:9/"}},
  {"name": "c", "kind": "http", "request": {"url": {"$path": "$.input.url"}}}]}');
SELECT orchestrator.define_workflow('http_bad', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "http://169.254.169.254/latest/meta-data"}}]}');
SELECT orchestrator.define_workflow('http_bad', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "http://localhost.evil.example/"}}]}');
SELECT orchestrator.define_workflow('http_bad', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "http://exa mple/"}}]}');
SELECT orchestrator.define_workflow('http_bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1",
  "compensate": {"kind": "http", "request": {"url": "https://example.com/undo"}}}]}');
SELECT count(*) AS nothing_written FROM orchestrator.definitions WHERE name = 'http_bad';

-- The URL checks use libcurl's parser: userinfo tricks do not hide the host.
SELECT u, orchestrator._http_check_url(u) AS refusal, orchestrator._http_url_host(u) AS host
FROM unnest(ARRAY['http://127.0.0.1/', 'HTTP://LOCALHOST:8080/a', 'https://[::1]/', 'http://127.0.0.1@example.com/',
                  'http://example.com#@127.0.0.1/', 'gopher://127.0.0.1/', 'file:///etc/passwd', 'http://']) u;

-- Retry-After: seconds or an HTTP date.
SELECT orchestrator._retry_after('3') AS secs, orchestrator._retry_after('nonsense') AS bad,
       orchestrator._retry_after(to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"')) > interval '59 minutes' AS date_ok;

-- Standard Webhooks signing: the example of the specification.
SELECT orchestrator._webhook_sign(decode('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),
       'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
       '{"test": 2432232314}') AS signature;

-- Webhooks: admin only, validated, secrets generated.
SELECT orchestrator.create_webhook('http://example.com/hook');
SELECT orchestrator.create_webhook('ftp://127.0.0.1/hook');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{}');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{"Bad Type"}');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{*}', 'not-a-secret');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{workflow.*, step.dead}') AS hook \gset
SELECT url, events, secret ~ '^whsec_[A-Za-z0-9+/]{32}$' AS generated, length(decode(substr(secret, 7), 'base64')) AS key_bytes
FROM orchestrator.webhooks;
SELECT orchestrator._webhook_matches('{workflow.*, step.dead}', t) AS matches, t
FROM unnest(ARRAY['workflow.failed', 'step.dead', 'step.started', 'workflowx']) t;

-- Every matching event writes an outbox row in its own transaction.
SELECT orchestrator.define_workflow('hooked', '{"steps": [{"name": "w", "kind": "wait", "signal": "go"}]}');
SELECT orchestrator.start_workflow('hooked') AS run \gset
SELECT orchestrator.cancel_workflow(:'run', 'test');
SELECT type, payload -> 'data' ->> 'workflow' AS workflow, payload ? 'timestamp' AS has_ts
FROM orchestrator.webhook_deliveries WHERE run_id = :'run' ORDER BY seq;

-- Roles: create/drop and the secrets are for orchestrator_admin only.
CREATE ROLE http_user LOGIN IN ROLE orchestrator_user;
CREATE ROLE http_admin LOGIN IN ROLE orchestrator_admin;
SET ROLE http_user;
SELECT orchestrator.create_webhook('http://127.0.0.1:9/mine');
SELECT secret FROM orchestrator.webhooks;
SELECT count(*) FROM orchestrator.webhook_deliveries;
SELECT count(*) FROM orchestrator.circuit_breakers;
RESET ROLE;
SET ROLE http_admin;
SELECT count(*) AS admin_sees_secrets FROM orchestrator.webhooks WHERE secret LIKE 'whsec_%';
SELECT orchestrator.drop_webhook(:'hook');
SELECT orchestrator.drop_webhook(:'hook');
RESET ROLE;
SELECT status, count(*) FROM orchestrator.webhook_outbox GROUP BY status ORDER BY status;
DROP ROLE http_user;
DROP ROLE http_admin;

-- A live attempt through a dispatcher: nothing listens on 127.0.0.1:1, so
-- each attempt is a retryable connection error, and the step is dead after
-- its last one.  Every attempt is a step.http event.
SELECT orchestrator.define_workflow('http_refused', '{"steps": [
  {"name": "call", "kind": "http", "request": {"url": "http://127.0.0.1:1/none"},
   "retry": {"max_attempts": 2, "backoff": "50 milliseconds", "jitter": 0}}]}');
SELECT orchestrator.start_workflow('http_refused') AS refused \gset
DO $$
BEGIN
	FOR i IN 1 .. 300 LOOP
		EXIT WHEN (SELECT status FROM orchestrator.workflow_runs WHERE name = 'http_refused') = 'failed';
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT type, step, data ->> 'attempt' AS attempt, data ->> 'error_kind' AS error_kind
FROM orchestrator.events(:'refused') WHERE type LIKE 'step.%' ORDER BY seq;
SELECT s.status, s.attempt, s.error ->> 'kind' AS kind, s.input ->> 'url' AS url
FROM orchestrator.workflow_steps s WHERE s.run_id = :'refused';
SELECT host, failures FROM orchestrator.http_circuits;
