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

-- The egress policy.  The setting is empty (nothing allowed) unless the
-- server's configuration says otherwise, and only superusers change it; a
-- session's value governs the checks made in that session.
SELECT boot_val = '' AS empty_by_default, context FROM pg_settings WHERE name = 'orchestrator.http_allowed_hosts';
CREATE FUNCTION egress(setting text, url text, address inet DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('orchestrator.http_allowed_hosts', setting, true);
	RETURN coalesce(CASE WHEN address IS NULL THEN orchestrator._http_check_url(url)
					ELSE orchestrator._http_check_connect(url, address) END, 'ok');
END $$;

-- The URL check: names against name entries, IP addresses against IP and
-- CIDR entries; without a port an entry allows the scheme's default port
-- only; "*" never allows special addresses.
SELECT setting, url, egress(setting, url) AS decision FROM (VALUES
  ('', 'http://127.0.0.1/'),
  ('', 'http://example.com/'),
  ('example.com', 'http://example.com/'),
  ('example.com', 'https://example.com/'),
  ('example.com', 'http://example.com:8080/'),
  ('example.com', 'http://example.com:443/'),
  ('example.com:8080', 'http://example.com:8080/'),
  ('example.com:8080', 'http://example.com/'),
  ('example.com:*', 'https://example.com:1234/'),
  ('EXAMPLE.com.', 'http://Example.COM./'),
  ('*.example.com', 'http://a.b.example.com/'),
  ('*.example.com', 'http://example.com/'),
  ('*.example.com', 'http://badexample.com/'),
  ('*.example.com', 'http://example.com.evil.net/'),
  ('*', 'http://anything.example/'),
  ('*', 'http://anything.example:8080/'),
  ('*:*', 'http://anything.example:8080/'),
  ('*', 'http://93.184.216.34/'),
  ('*', 'http://127.0.0.1/'),
  ('*:*', 'http://127.0.0.1:8080/'),
  ('*', 'http://169.254.169.254/'),
  ('*', 'http://100.100.100.200/'),
  ('*', 'http://[fd00:ec2::254]/'),
  ('*', 'http://[::1]/'),
  ('*', 'http://[::ffff:127.0.0.1]/'),
  ('*', 'http://0.0.0.0/'),
  ('*', 'http://[::]/'),
  ('*', 'http://224.0.0.1/'),
  ('*', 'http://[ff02::1]/'),
  ('*', 'http://[fe80::1]/'),
  ('*', 'http://2130706433/'),
  ('*', 'http://0x7f.1/'),
  ('localhost', 'http://localhost/'),
  ('127.0.0.1', 'http://127.0.0.1/'),
  ('127.0.0.1', 'http://127.0.0.1:8080/'),
  ('127.0.0.1', 'http://localhost/'),
  ('127.0.0.1:8080', 'http://127.0.0.1:8080/'),
  ('127.0.0.0/8:*', 'http://127.1.2.3:5/'),
  ('127.0.0.0/8:*', 'http://localhost:5/'),
  ('127.0.0.0/8:*', 'http://128.0.0.1/'),
  ('10.0.0.0/8', 'http://10.1.2.3/'),
  ('10.0.0.0/8', 'http://10.1.2.3:8080/'),
  ('10.0.0.0/8', 'http://internal.corp/'),
  ('10.0.0.0/8', 'http://internal.corp:8080/'),
  ('10.0.0.0/8', 'http://11.0.0.1/'),
  ('fd00::/8', 'http://[fd12::1]/'),
  ('fd00::/8', 'http://[fe80::1]/'),
  ('[fd00::/8]:*', 'https://[fd12::1]:8443/'),
  ('[::1]:8080', 'http://[::1]:8080/'),
  ('[::1]:8080', 'http://[::1]/'),
  ('::1', 'http://[::1]/'),
  ('::ffff:127.0.0.1', 'http://127.0.0.1/'),
  ('127.0.0.1', 'http://[::ffff:127.0.0.1]/'),
  ('169.254.169.254', 'http://169.254.169.254/'),
  (' a.example ,, b.example:81 ', 'http://b.example:81/')
) t(setting, url);

-- The connect-time check, for the address a host resolved to: special
-- addresses need an IP or CIDR entry (a name entry or "*" is not enough,
-- whatever DNS says); a name no name entry allows must resolve into a CIDR
-- range entry.
SELECT setting, url, address, egress(setting, url, address) AS decision FROM (VALUES
  ('localhost', 'http://localhost/', inet '127.0.0.1'),
  ('localhost', 'http://localhost/', '::1'),
  ('localhost, 127.0.0.1', 'http://localhost/', '127.0.0.1'),
  ('localhost:8080, 127.0.0.1', 'http://localhost:8080/', '127.0.0.1'),
  ('localhost:8080, 127.0.0.1:8080', 'http://localhost:8080/', '127.0.0.1'),
  ('*', 'http://metadata.example/', '169.254.169.254'),
  ('*', 'http://metadata.example/', 'fd00:ec2::254'),
  ('*', 'http://metadata.example/', '100.100.100.200'),
  ('*:*', 'http://rebind.example:8080/', '127.0.0.1'),
  ('*', 'http://rebind.example/', '::ffff:127.0.0.1'),
  ('*', 'http://rebind.example/', '::ffff:169.254.169.254'),
  ('*', 'http://zero.example/', '0.0.0.0'),
  ('*', 'http://zero.example/', '::'),
  ('*', 'http://multicast.example/', '239.1.2.3'),
  ('*', 'http://link.example/', 'fe80::1'),
  ('*', 'http://public.example/', '93.184.216.34'),
  ('*', 'http://10.1.2.3/', '10.1.2.3'),
  ('api.example.com', 'http://api.example.com/', '10.1.2.3'),
  ('10.0.0.0/8', 'http://internal.corp/', '10.1.2.3'),
  ('10.0.0.0/8', 'http://internal.corp/', '93.184.216.34'),
  ('10.0.0.0/8', 'http://internal.corp/', '127.0.0.1'),
  ('[fd00::/8]:*', 'http://v6.corp:8443/', 'fd12::1'),
  ('[fd00::/8]:*', 'http://v6.corp:8443/', 'fe80::1'),
  ('[::1/128]:*', 'http://localhost:5000/', '::1'),
  ('[::1/128]:*', 'http://localhost:5000/', '127.0.0.1'),
  ('127.0.0.0/8:*', 'http://localhost:5000/', '127.0.0.1'),
  ('169.254.169.254', 'http://metadata.example/', '169.254.169.254'),
  ('0.0.0.0/0:*', 'http://anything.example:1/', '127.0.0.1')
) t(setting, url, address);

-- Invalid values are refused by the check hook, with the entry at fault.
SET orchestrator.http_allowed_hosts = '10.0.0.1/8';
SET orchestrator.http_allowed_hosts = 'a.example, 10.0.0.0/33';
SET orchestrator.http_allowed_hosts = 'fd00::/129';
SET orchestrator.http_allowed_hosts = 'example.com:0';
SET orchestrator.http_allowed_hosts = 'example.com:65536';
SET orchestrator.http_allowed_hosts = 'example.com:http';
SET orchestrator.http_allowed_hosts = '[127.0.0.1]:80';
SET orchestrator.http_allowed_hosts = '[::1';
SET orchestrator.http_allowed_hosts = '[::1]8080';
SET orchestrator.http_allowed_hosts = 'https://example.com';
SET orchestrator.http_allowed_hosts = 'foo.*.com';
SET orchestrator.http_allowed_hosts = '*example.com';
SET orchestrator.http_allowed_hosts = '999.1.1.1';
SET orchestrator.http_allowed_hosts = 'exa$mple.com';
SET orchestrator.http_allowed_hosts = 'a..example';
SET orchestrator.http_allowed_hosts = 'a.example b.example';
SHOW orchestrator.http_allowed_hosts;

-- Request headers: Host, Content-Length and Transfer-Encoding are curl's,
-- and names must be HTTP tokens; refused at definition (nothing written)
-- and, for templated headers, when sending (the step fails, not retried).
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "http",
  "request": {"url": "http://127.0.0.1:9/", "headers": {"Host": "internal.example"}}}]}');
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "http",
  "request": {"method": "POST", "url": "http://127.0.0.1:9/", "headers": {"x-ok": "1", "transfer-encoding": "chunked"}, "body": {}}}]}');
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1",
  "compensate": {"kind": "http", "request": {"url": "http://127.0.0.1:9/", "headers": {"CONTENT-LENGTH": "0"}}}}]}');
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "http",
  "request": {"url": "http://127.0.0.1:9/", "headers": {"x team": "a"}}}]}');
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "http",
  "request": {"url": "http://127.0.0.1:9/", "headers": {"Host:x": "a"}}}]}');
SELECT count(*) AS nothing_written FROM orchestrator.definitions WHERE name = 'http_hdr';
SELECT orchestrator.define_workflow('http_hdr', '{"steps": [{"name": "a", "kind": "http",
  "request": {"url": "http://127.0.0.1:9/", "headers": {"$path": "$.input.h"}}}]}');
SELECT orchestrator.start_workflow('http_hdr', '{"h": {"Host": "internal.example"}}') AS hdr_host \gset
SELECT orchestrator.start_workflow('http_hdr', '{"h": {"x-a": "1", "Transfer-Encoding": "chunked"}}') AS hdr_te \gset
SELECT orchestrator.start_workflow('http_hdr', '{"h": {"bad name": "1"}}') AS hdr_name \gset
SELECT orchestrator.start_workflow('http_hdr', '{"h": "Host: internal.example"}') AS hdr_text \gset
SELECT wait_for_run(:'hdr_host') AS host, wait_for_run(:'hdr_te') AS te,
       wait_for_run(:'hdr_name') AS name, wait_for_run(:'hdr_text') AS text;
SELECT r.input ->> 'h' AS headers, s.status, s.attempt, s.error ->> 'kind' AS kind, s.error ->> 'message' AS message
FROM orchestrator.workflow_steps s JOIN orchestrator.workflow_runs r ON r.id = s.run_id
WHERE s.run_id IN (:'hdr_host', :'hdr_te', :'hdr_name', :'hdr_text') ORDER BY r.input ->> 'h';

-- Retry-After: seconds or an HTTP date.
SELECT orchestrator._retry_after('3') AS secs, orchestrator._retry_after('nonsense') AS bad,
       orchestrator._retry_after(to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"')) > interval '59 minutes' AS date_ok;

-- Standard Webhooks signing: the example of the specification, signed with
-- the sealed secret (the signing function never takes a plain one).
SELECT orchestrator._webhook_sign(orchestrator._webhook_secret_seal('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', true),
       'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330,
       '{"test": 2432232314}') AS signature;
-- A sealed secret is "v1:<key id>:<base64>", different every time (random
-- nonce); one that was altered or is not sealed does not sign.
SELECT s ~ '^v1:[0-9a-f]{8}:[A-Za-z0-9+/]+=*$' AS sealed_form, s <> orchestrator._webhook_secret_seal('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', true) AS random_nonce
FROM orchestrator._webhook_secret_seal('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', true) s;
\set VERBOSITY terse
SELECT orchestrator._webhook_sign(overlay(s placing (CASE WHEN substr(s, 20, 1) = 'A' THEN 'B' ELSE 'A' END) from 20 for 1),
       'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}')
FROM orchestrator._webhook_secret_seal('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', true) s;
SELECT orchestrator._webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{}');
\set VERBOSITY default

-- Webhooks: admin only, validated, secrets generated and returned once.
SELECT orchestrator.create_webhook('http://example.com/hook');
SELECT orchestrator.create_webhook('ftp://127.0.0.1/hook');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{}');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{"Bad Type"}');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{*}', 'not-a-secret');
SELECT orchestrator.create_webhook('http://127.0.0.1:9/hook', '{*}', 'whsec_' || encode('short', 'base64'));
SELECT id AS hook, generated_secret AS hook_secret
FROM orchestrator.create_webhook('http://127.0.0.1:9/hook', '{workflow.*, step.dead}') \gset
SET test.hook_secret = :'hook_secret';
SELECT :'hook_secret' ~ '^whsec_[A-Za-z0-9+/]{32}$' AS generated, length(decode(substr(:'hook_secret', 7), 'base64')) AS key_bytes;
SELECT url, events FROM orchestrator.webhooks;
-- Stored sealed: neither the secret, nor its key, nor their base64 or hex.
SELECT count(*) AS sealed, bool_and(s.sealed_secret ~ '^v1:[0-9a-f]{8}:') AS form,
       bool_and(strpos(s.sealed_secret, substr(:'hook_secret', 7)) = 0
                AND strpos(s.sealed_secret, encode(convert_to(:'hook_secret', 'UTF8'), 'base64')) = 0
                AND strpos(s.sealed_secret, encode(decode(substr(:'hook_secret', 7), 'base64'), 'hex')) = 0
                AND strpos(s.sealed_secret, encode(convert_to(:'hook_secret', 'UTF8'), 'hex')) = 0) AS not_plain
FROM orchestrator.webhook_secrets s WHERE s.webhook_id = :'hook';
-- A secret of one's own: nothing is returned; it signs like the plain key.
SELECT id AS own, generated_secret IS NULL AS nothing_returned
FROM orchestrator.create_webhook('http://127.0.0.1:9/own', '{step.dead}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') \gset
SELECT :'nothing_returned' AS nothing_returned,
       orchestrator._webhook_sign(s.sealed_secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}') AS signature
FROM orchestrator.webhook_secrets s WHERE s.webhook_id = :'own';
-- Rotation: a new generated secret, returned once; or one's own.
SELECT sealed_secret AS before FROM orchestrator.webhook_secrets WHERE webhook_id = :'own' \gset
SELECT orchestrator.rotate_webhook_secret(:'own') ~ '^whsec_[A-Za-z0-9+/]{32}$' AS rotated;
SELECT sealed_secret <> :'before' AS changed FROM orchestrator.webhook_secrets WHERE webhook_id = :'own';
SELECT orchestrator.rotate_webhook_secret(:'own', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') IS NULL AS nothing_returned;
SELECT orchestrator._webhook_sign(s.sealed_secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}') AS signature
FROM orchestrator.webhook_secrets s WHERE s.webhook_id = :'own';
SELECT orchestrator.rotate_webhook_secret(:'own', 'whsec_x');
SELECT orchestrator.rotate_webhook_secret('00000000-0000-0000-0000-000000000000');
SELECT orchestrator.drop_webhook(:'own');
SELECT count(*) AS secret_dropped_too FROM orchestrator.webhook_secrets WHERE webhook_id = :'own';
SELECT orchestrator._webhook_matches('{workflow.*, step.dead}', t) AS matches, t
FROM unnest(ARRAY['workflow.failed', 'step.dead', 'step.started', 'workflowx']) t;

-- Every matching event writes an outbox row in its own transaction.
SELECT orchestrator.define_workflow('hooked', '{"steps": [{"name": "w", "kind": "wait", "signal": "go"}]}');
SELECT orchestrator.start_workflow('hooked') AS run \gset
SELECT orchestrator.cancel_workflow(:'run', 'test');
SELECT type, payload -> 'data' ->> 'workflow' AS workflow, payload ? 'timestamp' AS has_ts
FROM orchestrator.webhook_deliveries WHERE run_id = :'run' ORDER BY seq;

-- Roles: create/rotate/drop are for orchestrator_admin only, and no role
-- reads a secret back, not even an admin: not in a table or view, sealed or
-- plain, and no function of theirs returns one.
CREATE ROLE http_user LOGIN IN ROLE orchestrator_user;
CREATE ROLE http_admin LOGIN IN ROLE orchestrator_admin;
SET ROLE http_user;
SET orchestrator.http_allowed_hosts = '*';
SELECT orchestrator.create_webhook('http://127.0.0.1:9/mine');
SELECT orchestrator.rotate_webhook_secret(:'hook');
SELECT count(*) FROM orchestrator.webhooks;
SELECT count(*) FROM orchestrator.webhook_deliveries;
SELECT count(*) FROM orchestrator.circuit_breakers;
RESET ROLE;
SET ROLE http_admin;
SELECT secret FROM orchestrator.webhooks;
SELECT count(*) FROM orchestrator.webhook_secrets;
SELECT orchestrator._webhook_sign('v1:00000000:AAAA', 'm', 1, 'b');
SELECT orchestrator._webhook_secret_seal('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', true);
SELECT count(*) AS webhooks FROM orchestrator.webhooks;
-- every relation of the extension an admin may read, every row as text
DO $$
DECLARE
	rel    regclass;
	n      bigint;
	seen   text[] := '{}';
	found  text[] := '{}';
	secret text := current_setting('test.hook_secret');
BEGIN
	FOR rel IN SELECT c.oid FROM pg_class c
			   WHERE c.relnamespace::regnamespace::text IN ('orchestrator', 'orchestrator_archive')
				 AND c.relkind IN ('r', 'v', 'm', 'p') AND has_table_privilege(c.oid, 'SELECT') LOOP
		EXECUTE format('SELECT count(*) FROM %s x WHERE strpos(x::text, $1) > 0 OR strpos(x::text, $2) > 0', rel)
			INTO n USING substr(secret, 7), encode(decode(substr(secret, 7), 'base64'), 'hex');
		seen := seen || rel::text;
		IF n > 0 THEN
			found := found || rel::text;
		END IF;
	END LOOP;
	RAISE NOTICE 'read more than 5 relations: %, webhooks among them: %; relations holding the secret: %',
		cardinality(seen) > 5, 'orchestrator.webhooks' = ANY (seen), found;
END $$;
-- the webhook functions an admin may call: only the generated secret is
-- ever returned, by the call that made it
SELECT p.oid::regprocedure AS callable
FROM pg_proc p WHERE p.pronamespace = 'orchestrator'::regnamespace
  AND has_function_privilege(p.oid, 'EXECUTE') AND p.proname LIKE '%webhook%' ORDER BY 1;
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
-- An event pattern that can match no event type orchestrator emits is refused.
SELECT try($$SELECT orchestrator.create_webhook('http://127.0.0.1:1/x', '{bogus}')$$) AS unknown_family;
SELECT try($$SELECT orchestrator.create_webhook('http://127.0.0.1:1/x', '{workflow.*, bogus.failed}')$$) AS one_unknown;
