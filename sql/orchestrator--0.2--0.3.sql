-- orchestrator 0.2 -> 0.3: ownership and rights.
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.3'" to load this file. \quit

-- webhook secrets
-- Signing secrets become write-only: sealed (AES-256-GCM, src/secrets.c)
-- with the key in orchestrator.secret_key_file (created now if missing), in
-- webhook_secrets, which no role but the owner reads; only C opens them, to
-- sign.  create_webhook returns a generated secret once (it was read back
-- from webhooks before); rotate_webhook_secret replaces one.
CREATE FUNCTION orchestrator._webhook_secret_seal(secret text, create_key boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_secret_seal'
LANGUAGE C VOLATILE STRICT;

CREATE TABLE orchestrator.webhook_secrets (
	webhook_id    uuid        PRIMARY KEY REFERENCES orchestrator.webhooks (id) ON DELETE CASCADE,
	sealed_secret text        NOT NULL CHECK (sealed_secret LIKE 'v1:%'),
	created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orchestrator.webhook_secrets IS
'the signing secret of each webhook, sealed with the key in orchestrator.secret_key_file';
SELECT pg_catalog.pg_extension_config_dump('orchestrator.webhook_secrets', '');
REVOKE ALL ON orchestrator.webhook_secrets FROM PUBLIC;

INSERT INTO orchestrator.webhook_secrets (webhook_id, sealed_secret, created_at)
	SELECT w.id, orchestrator._webhook_secret_seal(w.secret, true), w.created_at
	FROM orchestrator.webhooks w;
ALTER TABLE orchestrator.webhooks DROP COLUMN secret;
-- Rewrite the table so that the plain text is not left in its files (dead
-- row versions and the dropped column's values).  WAL written before, and
-- backups taken before, still hold it.
CLUSTER orchestrator.webhooks USING webhooks_pkey;
ALTER TABLE orchestrator.webhooks SET WITHOUT CLUSTER;
COMMENT ON TABLE orchestrator.webhooks IS 'webhook subscriptions (their secrets are write-only: sealed in webhook_secrets)';

DROP FUNCTION orchestrator._webhook_sign(bytea, text, bigint, text);
CREATE FUNCTION orchestrator._webhook_sign(sealed_secret text, msg_id text, ts bigint, body text)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_sign'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

DROP FUNCTION orchestrator.create_webhook(text, text[], text);
CREATE FUNCTION orchestrator.create_webhook(url text, events text[] DEFAULT '{*}', secret text DEFAULT NULL,
	OUT id uuid, OUT generated_secret text)
RETURNS record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	bad    text;
	sealed text;
BEGIN
	IF url IS NULL THEN
		RAISE EXCEPTION 'url must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM orchestrator._http_require_url(url, 'the webhook');
	IF events IS NULL OR cardinality(events) = 0 THEN
		RAISE EXCEPTION 'events must list at least one event type' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use ''{*}'' for every event, or types such as ''{workflow.failed, step.*}''.';
	END IF;
	SELECT e INTO bad FROM unnest(events) e
		WHERE e IS NULL OR e !~ '^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid event type pattern %', coalesce(quote_literal(bad), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use "*", an event type such as "workflow.failed", or a prefix such as "step.*".';
	END IF;
	IF secret IS NULL THEN
		generated_secret := 'whsec_' || encode(orchestrator._random_bytes(24), 'base64');
	END IF;
	-- A new key file only while no secret here needs the one that is missing
	-- (a restore without it): rotate_webhook_secret() decides to drop that key.
	sealed := orchestrator._webhook_secret_seal(coalesce(secret, generated_secret),
		NOT EXISTS (SELECT 1 FROM orchestrator.webhook_secrets));
	INSERT INTO orchestrator.webhooks AS w (url, events, created_by)
		VALUES (url, events, orchestrator._caller())
		RETURNING w.id INTO id;
	INSERT INTO orchestrator.webhook_secrets (webhook_id, sealed_secret) VALUES (id, sealed);
END
$$;
COMMENT ON FUNCTION orchestrator.create_webhook(text, text[], text) IS
'subscribe a URL to run events (patterns such as ''*'', ''workflow.failed'', ''step.*''); a NULL secret generates one, returned once';

CREATE FUNCTION orchestrator.rotate_webhook_secret(id uuid, secret text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	generated text;
BEGIN
	PERFORM 1 FROM orchestrator.webhooks w WHERE w.id = rotate_webhook_secret.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook % does not exist', coalesce(id::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF secret IS NULL THEN
		generated := 'whsec_' || encode(orchestrator._random_bytes(24), 'base64');
	END IF;
	INSERT INTO orchestrator.webhook_secrets AS s (webhook_id, sealed_secret)
		VALUES (rotate_webhook_secret.id, orchestrator._webhook_secret_seal(coalesce(secret, generated), true))
		ON CONFLICT (webhook_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, created_at = now();
	RETURN generated;
END
$$;
COMMENT ON FUNCTION orchestrator.rotate_webhook_secret(uuid, text) IS
'replace the signing secret of a webhook; a NULL secret generates one, returned once';

CREATE OR REPLACE FUNCTION orchestrator._webhook_claim(max_items integer, worker text, recover boolean,
	OUT kind text, OUT run_id uuid, OUT step text, OUT id uuid, OUT token uuid, OUT method text,
	OUT url text, OUT headers text[], OUT body text, OUT timeout_ms integer, OUT sign_key bytea)
RETURNS SETOF record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o   record;
	w   orchestrator.webhooks;
	why text;
	tmo interval := current_setting('orchestrator.default_step_timeout')::interval;
BEGIN
	IF recover THEN
		UPDATE orchestrator.webhook_outbox x SET available_at = now()
			WHERE x.status = 'delivering' AND x.available_at > now()
			  AND x.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s
										 WHERE s.pid IS NOT NULL));
	END IF;
	FOR o IN SELECT x.id, x.webhook_id, x.run_id, x.status, x.payload
			 FROM orchestrator.webhook_outbox x
			 WHERE x.status IN ('pending', 'delivering') AND x.available_at <= now()
			 ORDER BY x.available_at
			 LIMIT max_items
			 FOR UPDATE SKIP LOCKED LOOP
		IF o.status = 'delivering' THEN
			PERFORM orchestrator._webhook_failed(o.id, NULL, 'lease expired (the dispatcher stopped)', NULL);
			CONTINUE;
		END IF;
		SELECT * INTO w FROM orchestrator.webhooks x WHERE x.id = o.webhook_id;
		IF NOT FOUND THEN
			UPDATE orchestrator.webhook_outbox x SET status = 'cancelled' WHERE x.id = o.id;
			CONTINUE;
		END IF;
		why := orchestrator._http_check_url(w.url);
		IF why IS NOT NULL THEN
			UPDATE orchestrator.webhook_outbox x SET status = 'dead', last_error = why, attempt = x.attempt + 1,
				last_attempt_at = now() WHERE x.id = o.id;
			CONTINUE;
		END IF;
		UPDATE orchestrator.webhook_outbox x
			SET status = 'delivering', attempt = x.attempt + 1, lease_token = gen_random_uuid(),
				worker = _webhook_claim.worker, available_at = now() + tmo + interval '30 seconds',
				last_attempt_at = now()
			WHERE x.id = o.id
			RETURNING x.lease_token INTO token;
		kind := 'webhook';
		run_id := o.run_id;
		step := NULL;
		id := o.id;
		method := 'POST';
		url := w.url;
		headers := '{}';
		body := o.payload::text;
		timeout_ms := greatest(1, least(extract(epoch FROM tmo) * 1000, 2147483647))::integer;
		sign_key := (SELECT convert_to(s.sealed_secret, 'UTF8') FROM orchestrator.webhook_secrets s
					 WHERE s.webhook_id = w.id);
		RETURN NEXT;
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION
	orchestrator._webhook_secret_seal(text, boolean),
	orchestrator._webhook_sign(text, text, bigint, text),
	orchestrator.create_webhook(text, text[], text),
	orchestrator.rotate_webhook_secret(uuid, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	orchestrator.create_webhook(text, text[], text),
	orchestrator.rotate_webhook_secret(uuid, text)
TO orchestrator_admin;
