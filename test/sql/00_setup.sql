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
-- Helper: amcheck every btree index of the runs', steps' and events'
-- partitions and of the queue, heapallindexed (an entry for every row);
-- returns how many were checked.
CREATE FUNCTION indexes_checked() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	CREATE EXTENSION amcheck;
	SELECT count(*) INTO n FROM (
		SELECT bt_index_check(i.indexrelid, true)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_am a ON a.oid = (SELECT relam FROM pg_class WHERE oid = i.indexrelid)
		WHERE c.relnamespace = 'orchestrator'::regnamespace AND a.amname = 'btree'
		  AND (c.relname ~ '^workflow_(runs|steps|events)_p' OR c.relname = 'work_queue')) x;
	DROP EXTENSION amcheck;
	RETURN n;
END $$;
