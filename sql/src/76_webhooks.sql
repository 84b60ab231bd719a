-- Webhooks: subscriptions to run events, an outbox written in the same
-- transaction as each matching event, and deliveries sent by the dispatchers
-- with the HTTP machinery of http steps, signed per Standard Webhooks,
-- retried on orchestrator.webhook_retry_schedule, dead after the last try.

CREATE TABLE orchestrator.webhooks (
	id         uuid        PRIMARY KEY DEFAULT orchestrator.uuid_v7(),
	url        text        NOT NULL,
	events     text[]      NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by regrole     NOT NULL
);
COMMENT ON TABLE orchestrator.webhooks IS 'webhook subscriptions (their secrets are write-only: sealed in webhook_secrets)';

-- Signing secrets are write-only: sealed (AES-256-GCM, src/secrets.c) with
-- the key in the file orchestrator.secret_key_file, which is outside the
-- database and its dumps, and readable by no role but the extension's owner.
-- Only C opens them, to sign a delivery.
CREATE TABLE orchestrator.webhook_secrets (
	webhook_id    uuid        PRIMARY KEY REFERENCES orchestrator.webhooks (id) ON DELETE CASCADE,
	sealed_secret text        NOT NULL CHECK (sealed_secret LIKE 'v1:%'),
	created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE orchestrator.webhook_secrets IS
'the signing secret of each webhook, sealed with the key in orchestrator.secret_key_file';

CREATE TABLE orchestrator.webhook_outbox (
	id              uuid        PRIMARY KEY,
	webhook_id      uuid        NOT NULL,
	run_id          uuid        NOT NULL,
	seq             bigint      NOT NULL,
	type            text        NOT NULL,
	payload         jsonb       NOT NULL,
	status          text        NOT NULL DEFAULT 'pending',
	attempt         integer     NOT NULL DEFAULT 0,
	available_at    timestamptz NOT NULL,
	lease_token     uuid,
	worker          text,
	last_status     integer,
	last_error      text,
	last_attempt_at timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now(),
	delivered_at    timestamptz,
	CHECK (status IN ('pending', 'delivering', 'delivered', 'dead', 'cancelled'))
);
COMMENT ON TABLE orchestrator.webhook_outbox IS 'one row per event and matching webhook: the delivery and its state';
CREATE INDEX webhook_outbox_due ON orchestrator.webhook_outbox (available_at)
	WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_outbox_webhook ON orchestrator.webhook_outbox (webhook_id, id);

CREATE VIEW orchestrator.webhook_deliveries AS
	SELECT o.id, o.webhook_id, w.url, o.run_id, o.seq, o.type, o.status, o.attempt AS attempts,
		   CASE WHEN o.status IN ('pending', 'delivering') THEN o.available_at END AS next_attempt_at,
		   o.last_status, o.last_error, o.last_attempt_at, o.created_at, o.delivered_at, o.payload
	FROM orchestrator.webhook_outbox o
	LEFT JOIN orchestrator.webhooks w ON w.id = o.webhook_id;
COMMENT ON VIEW orchestrator.webhook_deliveries IS 'webhook deliveries: one row per event and subscription';

-- Does an event type match a subscription pattern ('*', 'step.*', exact)?
-- PL/pgSQL so that its plan is kept: called for every event and
-- subscription, and a SQL function with a subquery is parsed on every call.
CREATE FUNCTION orchestrator._webhook_matches(patterns text[], type text)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	RETURN EXISTS (SELECT 1 FROM unnest(patterns) p
				   WHERE p = '*' OR p = type OR (right(p, 2) = '.*' AND starts_with(type, left(p, -1))));
END
$$;

-- "whsec_" + base64 of 16 to 64 bytes, sealed (src/secrets.c).  The secret
-- is never echoed in an error.  With create_key, a missing key file is
-- created; without, it is an error (secrets sealed with a key that is not
-- here yet would never open again).
CREATE FUNCTION orchestrator._webhook_secret_seal(secret text, create_key boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_webhook_secret_seal'
LANGUAGE C VOLATILE STRICT;

-- The secret is write-only: a generated one is returned once, here, and
-- nothing reads a secret back.  An error inside does not log the statement
-- (log_min_error_statement), which may hold the secret.
CREATE FUNCTION orchestrator._api_create_webhook(url text, events text[] DEFAULT '{*}', secret text DEFAULT NULL,
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
	-- Event types are "<family>.<what>" of the families orchestrator emits;
	-- a pattern that can match none of them is a mistake, not a subscription.
	SELECT e INTO bad FROM unnest(events) e
		WHERE e IS NULL OR e !~ '^(\*|(workflow|step|signal|circuit)(\.[a-z_]+)*(\.\*)?)$' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'invalid event type pattern %', coalesce(quote_literal(bad), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Event types start with workflow., step., signal. or circuit.',
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

-- Replace a webhook's secret (a NULL one generates a secret, returned once).
-- Deliveries are signed with the new secret from their next attempt.  May
-- create a new key file: the way out when the old key is lost.
CREATE FUNCTION orchestrator._api_rotate_webhook_secret(id uuid, secret text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET log_min_error_statement = panic
AS $$
DECLARE
	generated text;
BEGIN
	PERFORM 1 FROM orchestrator.webhooks w WHERE w.id = _api_rotate_webhook_secret.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'webhook % does not exist', coalesce(id::text, 'NULL')
			USING ERRCODE = 'undefined_object';
	END IF;
	IF secret IS NULL THEN
		generated := 'whsec_' || encode(orchestrator._random_bytes(24), 'base64');
	END IF;
	INSERT INTO orchestrator.webhook_secrets AS s (webhook_id, sealed_secret)
		VALUES (_api_rotate_webhook_secret.id, orchestrator._webhook_secret_seal(coalesce(secret, generated), true))
		ON CONFLICT (webhook_id) DO UPDATE SET sealed_secret = excluded.sealed_secret, created_at = now();
	RETURN generated;
END
$$;

CREATE FUNCTION orchestrator._api_drop_webhook(id uuid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orchestrator.webhooks w WHERE w.id = _api_drop_webhook.id;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	UPDATE orchestrator.webhook_outbox o SET status = 'cancelled', lease_token = NULL
		WHERE o.webhook_id = _api_drop_webhook.id AND o.status IN ('pending', 'delivering');
	RETURN true;
END
$$;

-- Redrive dead deliveries (of one webhook, created at or after "since"):
-- pending again, due now, with the retry schedule from its start (attempt
-- 0; last_status and last_error tell what happened before).  Deliveries of
-- webhooks dropped since stay dead.
CREATE FUNCTION orchestrator._api_retry_webhook_deliveries(webhook_id uuid DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF webhook_id IS NOT NULL
	   AND NOT EXISTS (SELECT 1 FROM orchestrator.webhooks w WHERE w.id = _api_retry_webhook_deliveries.webhook_id) THEN
		RAISE EXCEPTION 'webhook % does not exist', webhook_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'See orchestrator.webhooks; pass NULL to redrive the dead deliveries of every webhook.';
	END IF;
	UPDATE orchestrator.webhook_outbox o
		SET status = 'pending', attempt = 0, available_at = now(), lease_token = NULL, worker = NULL
		WHERE o.status = 'dead'
		  AND (_api_retry_webhook_deliveries.webhook_id IS NULL OR o.webhook_id = _api_retry_webhook_deliveries.webhook_id)
		  AND (since IS NULL OR o.created_at >= since)
		  AND EXISTS (SELECT 1 FROM orchestrator.webhooks w WHERE w.id = o.webhook_id);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n > 0 THEN
		PERFORM orchestrator._wake_at_commit('http');
	END IF;
	RETURN n;
END
$$;
