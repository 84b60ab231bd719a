-- Privileges of HTTP steps and webhooks (after 90_grants.sql, which revokes
-- everything from PUBLIC).  Webhooks, their secrets and deliveries are for
-- orchestrator_admin; each user sees the circuit breakers of its own workflows.

GRANT EXECUTE ON FUNCTION
	orchestrator.create_webhook(text, text[], text),
	orchestrator.drop_webhook(uuid)
TO orchestrator_admin;
GRANT SELECT ON orchestrator.webhooks, orchestrator.webhook_deliveries TO orchestrator_admin;
GRANT SELECT ON orchestrator.circuit_breakers TO orchestrator_user;
