-- What start_workflow() and every event look up of workflows and webhook
-- subscriptions (a workflow's latest version and owner; whether any
-- subscription exists) is cached by each process (src/lookup_cache.c).  A
-- statement that changes one of these tables invalidates the caches of all
-- processes at its commit.
CREATE FUNCTION orchestrator._lookup_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'orchestrator_lookup_changed'
LANGUAGE C;

CREATE TRIGGER lookup_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orchestrator.definitions
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator._lookup_changed();
CREATE TRIGGER lookup_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orchestrator.workflows
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator._lookup_changed();
CREATE TRIGGER lookup_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orchestrator.webhooks
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator._lookup_changed();
