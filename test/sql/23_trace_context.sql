\set SHOW_CONTEXT never
-- W3C trace context: start_workflow option "traceparent", the run's trace
-- id, claim_steps()'s traceparent column.
SELECT orchestrator.define_workflow('traced', '{"steps": [{"name": "work", "kind": "external", "queue": "q_traced"}]}') AS v;

-- Bad values: 22023 with detail and hint, and nothing written.
SELECT count(*) AS runs_before FROM orchestrator.workflow_runs WHERE name = 'traced';
SELECT orchestrator.start_workflow('traced', '{}', '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}');
\echo :LAST_ERROR_SQLSTATE
SELECT t AS traceparent, try(format('SELECT orchestrator.start_workflow(%L, %L, %L)', 'traced', '{}',
		jsonb_build_object('traceparent', t, 'idempotency_key', 'k-' || md5(t::text)))) AS result
FROM unnest(ARRAY[
	'"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"',	-- uppercase
	'"00-00000000000000000000000000000000-00f067aa0ba902b7-01"',	-- zero trace id
	'"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"',	-- zero span id
	'"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"',	-- version ff
	'"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"',	-- version 00 with more
	'"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"',	-- short trace id
	'""', '42', 'null']::jsonb[]) t;
SELECT count(*) AS runs_after, (SELECT count(*) FROM orchestrator.idempotency_keys WHERE name = 'traced') AS keys
FROM orchestrator.workflow_runs WHERE name = 'traced';

-- A run continues the caller's trace; a later version's extra fields are
-- ignored; without the option a run gets a trace of its own.
SELECT orchestrator.start_workflow('traced', '{}', '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}') AS r1 \gset
SELECT orchestrator.start_workflow('traced', '{}', '{"traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-future"}') AS r2 \gset
SELECT orchestrator.start_workflow('traced') AS r3 \gset
SELECT orchestrator.start_workflow('traced') AS r4 \gset
SELECT r.id = :'r1' AS r1, r.trace_id, r.trace_parent FROM orchestrator.workflow_runs r
WHERE r.id IN (:'r1', :'r2') ORDER BY r.created_at;
SELECT count(DISTINCT trace_id) AS distinct_ids, bool_and(trace_id ~ '^[0-9a-f]{32}$') AS hex,
	   bool_and(trace_parent IS NULL) AS no_parent
FROM orchestrator.workflow_runs WHERE id IN (:'r3', :'r4');
-- What follows the fields of a later version never reaches a header.
SELECT orchestrator.start_workflow('traced', '{}', jsonb_build_object('traceparent',
	E'cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-\r\nx-evil: 1')) AS r5 \gset
SELECT trace_parent FROM orchestrator.workflow_runs WHERE id = :'r5';
SELECT orchestrator.get_workflow(:'r1') ->> 'trace_id' AS get_workflow_trace_id,
	   (SELECT trace_id FROM orchestrator.runs WHERE id = :'r1') AS view_trace_id;

-- claim_steps(): the attempt's span in the run's trace, with the caller's
-- flags (sampled or not).
SELECT c.run_id = :'r1' AS r1, split_part(c.traceparent, '-', 1) AS version,
	   split_part(c.traceparent, '-', 2) AS trace_id,
	   split_part(c.traceparent, '-', 3) = orchestrator._span_id(c.run_id, 'work', 1) AS span,
	   split_part(c.traceparent, '-', 4) AS flags
FROM orchestrator.claim_steps('q_traced', 'tracer', 10) c
WHERE c.run_id IN (:'r1', :'r2') ORDER BY c.run_id = :'r1' DESC;
SELECT (SELECT array_agg(n ORDER BY o) FROM unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS x(n, m, o) WHERE m = 't') AS columns
FROM pg_proc p WHERE p.oid = 'orchestrator.claim_steps(text, text, integer, interval)'::regprocedure;

-- An orchestrator_user cannot inflate the counters, read them, or make ids
-- through the internal functions; it may give its own runs a trace.
SET ROLE alice;
SELECT try('SELECT orchestrator._metrics_http(false, 200, NULL)') AS count_http,
	   try('SELECT orchestrator._metrics_text()') AS read_counters,
	   try('SELECT orchestrator._new_trace_id()') AS new_trace_id,
	   try('SELECT orchestrator.metrics()') AS metrics;
SELECT orchestrator.define_workflow('alice_traced', '{"steps": [{"name": "w", "kind": "external", "queue": "q_alice_traced"}]}') AS v;
SELECT orchestrator.get_workflow(orchestrator.start_workflow('alice_traced', '{}',
	'{"traceparent": "00-11111111111111111111111111111111-2222222222222222-01"}')) ->> 'trace_id' AS alice_trace;
SELECT split_part(traceparent, '-', 2) AS claimed_trace FROM orchestrator.claim_steps('q_alice_traced', 'alice-worker');
RESET ROLE;
