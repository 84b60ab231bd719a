-- The role on whose behalf an API function runs (see src/caller.c).
CREATE FUNCTION orchestrator._caller()
RETURNS name
AS 'MODULE_PATHNAME', 'orchestrator_caller'
LANGUAGE C STABLE PARALLEL RESTRICTED;
