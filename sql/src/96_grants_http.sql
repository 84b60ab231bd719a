-- Privileges of HTTP steps and webhooks (after 90_grants.sql, which revokes
-- everything from PUBLIC).  Webhooks and their deliveries are for
-- orchestrator_admin; their secrets (webhook_secrets) for no role: they are
-- write-only.  Each user sees the circuit breakers of its own workflows.

GRANT EXECUTE ON FUNCTION
	orchestrator.create_webhook(text, text[], text),
	orchestrator.rotate_webhook_secret(uuid, text),
	orchestrator.drop_webhook(uuid),
	orchestrator.retry_webhook_deliveries(uuid, timestamptz)
TO orchestrator_admin;
GRANT SELECT ON orchestrator.webhooks, orchestrator.webhook_deliveries TO orchestrator_admin;
GRANT SELECT ON orchestrator.circuit_breakers TO orchestrator_user;
