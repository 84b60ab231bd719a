\set SHOW_CONTEXT never
-- complete_steps(): several completions in one call.
SELECT orchestrator.define_workflow('batch_ext', $$
{"steps": [
  {"name": "a", "kind": "external", "queue": "batch_q"},
  {"name": "b", "kind": "external", "queue": "batch_q", "depends_on": ["a"], "input": {"from": "a"}}
]}
$$);
SELECT array_agg(orchestrator.start_workflow('batch_ext', jsonb_build_object('n', i)) ORDER BY i) AS runs
FROM generate_series(1, 4) i \gset
CREATE TEMP TABLE claimed AS SELECT * FROM orchestrator.claim_steps('batch_q', 'batcher', 10);
SELECT count(*) AS claimed, count(DISTINCT run_id) AS runs FROM claimed;

-- One lease is stale (another token): that item is refused, the others go.
SELECT run_id AS stale_run, lease_token AS stale_token FROM claimed ORDER BY run_id LIMIT 1 \gset
SELECT count(*) FILTER (WHERE completed) AS completed, count(*) FILTER (WHERE NOT completed) AS refused
FROM orchestrator.complete_steps(
	(SELECT array_agg(run_id ORDER BY run_id) FROM claimed),
	(SELECT array_agg(step ORDER BY run_id) FROM claimed),
	(SELECT array_agg(CASE WHEN run_id = (SELECT run_id FROM claimed ORDER BY run_id LIMIT 1) THEN gen_random_uuid() ELSE lease_token END ORDER BY run_id) FROM claimed),
	(SELECT array_agg(CASE WHEN run_id = (SELECT run_id FROM claimed ORDER BY run_id DESC LIMIT 1) THEN NULL ELSE jsonb_build_object('ok', step) END ORDER BY run_id) FROM claimed));
SELECT s.step, s.status, count(*) FROM orchestrator.workflow_steps s
WHERE s.run_id = ANY (:'runs'::uuid[]) GROUP BY 1, 2 ORDER BY 1, 2;
-- the next steps were made ready with their input and announced
SELECT DISTINCT input FROM orchestrator.workflow_steps WHERE run_id = ANY (:'runs'::uuid[]) AND step = 'b' AND status = 'ready';
-- a NULL result is the JSON null, as in complete_step()
SELECT result FROM orchestrator.workflow_steps WHERE run_id = (SELECT run_id FROM claimed ORDER BY run_id DESC LIMIT 1) AND step = 'a';

-- The rest, in one call, in an order other than the runs' (locks follow
-- the run ids anyway).
TRUNCATE claimed;
INSERT INTO claimed SELECT * FROM orchestrator.claim_steps('batch_q', 'batcher', 10);
SELECT step, count(*) FROM claimed GROUP BY step ORDER BY step;
SELECT count(*) FILTER (WHERE completed) AS completed
FROM orchestrator.complete_steps(
	(SELECT array_agg(run_id ORDER BY run_id DESC, step) FROM claimed),
	(SELECT array_agg(step ORDER BY run_id DESC, step) FROM claimed),
	(SELECT array_agg(lease_token ORDER BY run_id DESC, step) FROM claimed),
	(SELECT array_agg('{}'::jsonb) FROM claimed));
-- The refused one with its right token, then the last step.
SELECT c.step, c.completed FROM orchestrator.complete_steps(ARRAY[:'stale_run']::uuid[], '{a}', ARRAY[:'stale_token']::uuid[], '{null}') c
WHERE c.run_id = :'stale_run';
TRUNCATE claimed;
INSERT INTO claimed SELECT * FROM orchestrator.claim_steps('batch_q', 'batcher', 10);
SELECT count(*) FILTER (WHERE completed) AS completed
FROM orchestrator.complete_steps(
	(SELECT array_agg(run_id) FROM claimed), (SELECT array_agg(step) FROM claimed),
	(SELECT array_agg(lease_token) FROM claimed), (SELECT array_agg('{"last": true}'::jsonb) FROM claimed));
SELECT status, count(*) FROM orchestrator.runs WHERE id = ANY (:'runs'::uuid[]) GROUP BY 1;
SELECT count(*) AS empty_batch FROM orchestrator.complete_steps('{}', '{}', '{}', '{}');

-- Bad input: a specific error, nothing written.
SELECT try($$SELECT * FROM orchestrator.complete_steps(NULL, '{}', '{}', '{}')$$);
SELECT try($$SELECT * FROM orchestrator.complete_steps('{}', '{a}', '{}', '{}')$$);
SELECT try($$SELECT * FROM orchestrator.complete_steps(ARRAY[NULL::uuid], '{a}', ARRAY[gen_random_uuid()], '{null}')$$);
SELECT try($$SELECT * FROM orchestrator.complete_steps(ARRAY[[gen_random_uuid()]], '{{a}}', ARRAY[[gen_random_uuid()]], '{{null}}')$$);
-- The documented polling form, when the poll claimed nothing: array_agg()
-- gives four NULLs, which is nothing to complete (not an error).
WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('nothing_here', 'w', 50))
SELECT count(*) AS completed_of_empty_poll FROM orchestrator.complete_steps(
  (SELECT array_agg(run_id) FROM c), (SELECT array_agg(step) FROM c),
  (SELECT array_agg(lease_token) FROM c), (SELECT array_agg('{}'::jsonb) FROM c));
SELECT count(*) AS completed_of_empty_arrays FROM orchestrator.complete_steps('{}', '{}', '{}', '{}');
