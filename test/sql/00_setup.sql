-- Load the extension (and pgTAP for the tests that use it).
CREATE EXTENSION orchestrator;
CREATE EXTENSION pgtap;
SELECT extversion FROM pg_extension WHERE extname = 'orchestrator';
SELECT rolname FROM pg_roles WHERE rolname LIKE 'orchestrator%' ORDER BY 1;
-- Helper for the tests: wait until a run has finished (the dispatchers run
-- sql steps and timers in the background).
CREATE FUNCTION wait_for_run(id uuid, seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. seconds * 20 LOOP
		SELECT status INTO s FROM orchestrator.runs WHERE runs.id = wait_for_run.id;
		IF s NOT IN ('queued', 'pending', 'running', 'compensating') THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
		PERFORM pg_stat_clear_snapshot();
	END LOOP;
	RETURN 'timeout: ' || s;
END $$;
-- Helper: run a statement and show its SQLSTATE and message, with ids
-- masked (they differ on every run).
CREATE FUNCTION try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END $$;
GRANT EXECUTE ON FUNCTION try(text), wait_for_run(uuid, integer) TO PUBLIC;
