\set SHOW_CONTEXT never
-- UUIDv7 ids made by the extension.
SELECT substr(orchestrator.uuid_v7()::text, 15, 1) AS version_nibble,
       substr(orchestrator.uuid_v7()::text, 20, 1) IN ('8', '9', 'a', 'b') AS rfc_variant;
-- Strictly increasing within a session, even within one millisecond.
SELECT bool_and(a < b) AS increasing, count(*) AS pairs
FROM (SELECT id AS a, lead(id) OVER (ORDER BY n) AS b
      FROM (SELECT n, orchestrator.uuid_v7() AS id FROM generate_series(1, 20000) n) g) p
WHERE b IS NOT NULL;
-- The time an id carries is the time it was made.
SELECT abs(extract(epoch FROM orchestrator.uuid_v7_time(orchestrator.uuid_v7()) - clock_timestamp())) < 1 AS time_roundtrip;
-- Boundaries: the smallest id of a millisecond.
SELECT orchestrator.uuid_v7_boundary('2026-01-01 00:00:00+00');
SELECT orchestrator.uuid_v7_time(orchestrator.uuid_v7_boundary('2026-01-01 12:34:56.789+00'));
SELECT orchestrator.uuid_v7_boundary(now()) <= orchestrator.uuid_v7()
   AND orchestrator.uuid_v7() < orchestrator.uuid_v7_boundary(now() + interval '1 day') AS within_bounds;
-- Bad input.
SELECT orchestrator.uuid_v7_boundary('1969-12-31 23:59:59+00');
SELECT orchestrator.uuid_v7_boundary('infinity');
SELECT orchestrator.uuid_v7_time('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
-- The random part of ids, trace ids and lease tokens come from a pool of
-- strong random bytes refilled as it runs out (random_pool.c): over many
-- refills no random part repeats.
SELECT count(DISTINCT substr(id::text, 20)) AS distinct_rand_b, count(*) AS ids
FROM (SELECT orchestrator.uuid_v7() AS id FROM generate_series(1, 10000)) g;
SELECT count(DISTINCT t) AS distinct_trace_ids, bool_and(t ~ '^[0-9a-f]{32}$' AND t <> repeat('0', 32)) AS well_formed
FROM (SELECT orchestrator._new_trace_id() AS t FROM generate_series(1, 10000)) g;
-- The engine writes run ids in events, notifications and messages as uuid's
-- own text form (engine_json.c formats them itself): 2,000 random ids, each
-- named in the message of a transition on a run that does not exist.
DO $$
DECLARE
	id uuid;
	mismatches integer := 0;
	named integer := 0;
BEGIN
	FOR i IN 1 .. 2000 LOOP
		id := CASE WHEN i = 1 THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
		           WHEN i = 2 THEN '00000000-0000-0000-0000-000000000000'::uuid
		           ELSE gen_random_uuid() END;
		BEGIN
			PERFORM orchestrator.cancel_workflow(id);
		EXCEPTION WHEN undefined_object THEN
			named := named + 1;
			IF SQLERRM <> format('workflow run %s does not exist', id) THEN
				mismatches := mismatches + 1;
			END IF;
		END;
	END LOOP;
	RAISE NOTICE 'run ids named: %, written unlike uuid_out: %', named, mismatches;
END
$$;
