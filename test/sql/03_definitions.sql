\set SHOW_CONTEXT never
-- define_workflow: versions, identical redefinition, validation.
SELECT orchestrator.define_workflow('greet', '{"steps": [{"name": "hello", "kind": "external", "queue": "q_greet"}]}');
SELECT orchestrator.define_workflow('greet', '{"steps": [{"name": "hello", "kind": "external", "queue": "q_greet"}]}') AS same_version;
SELECT orchestrator.define_workflow('greet', '{"steps": [{"name": "hi", "kind": "external", "queue": "q_greet"}]}') AS new_version;
SELECT name, version, created_by FROM orchestrator.definitions WHERE name = 'greet' ORDER BY version;
SELECT step, kind, depends_on, dependents, max_attempts, backoff, multiplier, max_backoff, jitter, timeout
FROM orchestrator.definition_steps WHERE name = 'greet' ORDER BY version;

-- Every kind, dependencies in any order, templates, retry, timeout, when.
SELECT orchestrator.define_workflow('all_kinds', $$
{"description": "one of each",
 "steps": [
  {"name": "ext", "kind": "external", "queue": "q_all", "input": {"q": {"$path": "$.input.query"}},
   "timeout": "10 seconds", "retry": {"max_attempts": 5, "backoff": "1 second", "multiplier": 2, "max_backoff": "1 minute", "jitter": 0.2}},
  {"name": "store", "kind": "sql", "depends_on": ["ext"], "sql": "SELECT $1::jsonb AS doc", "args": [{"$path": "$.steps.ext.result"}]},
  {"name": "nap", "kind": "sleep", "duration": "5 seconds", "depends_on": ["approve"]},
  {"name": "approve", "kind": "wait", "signal": "approved", "timeout": "1 hour", "depends_on": ["store"],
   "when": "$.steps.ext.result.ok == true"},
  {"name": "until", "kind": "sleep", "until": "2030-01-01T00:00:00Z", "depends_on": ["ext"],
   "compensate": {"kind": "sql", "sql": "SELECT 1"}}
 ],
 "result": {"doc": {"$path": "$.steps.store.result.doc"}}}
$$);
SELECT step, position, kind, depends_on, dependents, condition FROM orchestrator.definition_steps
WHERE name = 'all_kinds' ORDER BY position;

-- Bad definitions: each is refused with a detail naming the problem, and
-- nothing is written.
SELECT orchestrator.define_workflow('bad name!', '{"steps": []}');
SELECT orchestrator.define_workflow(NULL, '{"steps": []}');
SELECT orchestrator.define_workflow('bad', NULL);
SELECT orchestrator.define_workflow('bad', '[1, 2]');
SELECT orchestrator.define_workflow('bad', '{"stepz": []}');
SELECT orchestrator.define_workflow('bad', '{"steps": []}');
SELECT orchestrator.define_workflow('bad', '{"steps": [42]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"kind": "sql", "sql": "SELECT 1"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a b", "kind": "sql", "sql": "SELECT 1"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1"}, {"name": "a", "kind": "sql", "sql": "SELECT 2"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "lambda"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "sqll": "x"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "depends_on": ["zz"]}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "depends_on": ["a"]}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "depends_on": "b"}]}');
SELECT orchestrator.define_workflow('bad', $${"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT 1", "depends_on": ["c"]},
  {"name": "b", "kind": "sql", "sql": "SELECT 1", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 1", "depends_on": ["b"]},
  {"name": "d", "kind": "sql", "sql": "SELECT 1"}]}$$);
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELEC 1"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1; SELECT 2"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": ""}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT $1", "args": {"x": 1}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "when": "$.input.x ==="}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT $1", "args": [{"$path": "$.input.x", "extra": 1}]}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT $1", "args": [{"$path": "$$$"}]}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"max_attempts": 0}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"max_attempts": 2.5}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"backoff": "soon"}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"multiplier": 50}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"jitter": 2}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "retry": {"tries": 2}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "timeout": "-5 seconds"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "timeout": 10}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "timeout": "400 days"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "external"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "external", "queue": "@sql"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sleep"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sleep", "duration": "1 second", "until": "2030-01-01"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sleep", "until": "someday"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sleep", "duration": "1 second", "retry": {"max_attempts": 2}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "wait"}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "ftp://example.com/x"}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "http", "request": {"method": "BREW", "url": "http://127.0.0.1/"}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "http", "request": {"url": "http://example.com/"}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "compensate": {"kind": "sleep"}}]}');
SELECT orchestrator.define_workflow('bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "compensate": {"kind": "sql"}}]}');
SELECT orchestrator.define_workflow('bad', jsonb_build_object('steps', (SELECT jsonb_agg(jsonb_build_object('name', 's' || n, 'kind', 'sql', 'sql', 'SELECT 1')) FROM generate_series(1, 1001) n)));
SELECT orchestrator.define_workflow('bad', jsonb_build_object('description', repeat('x', 1100000), 'steps', '[{"name": "a", "kind": "sql", "sql": "SELECT 1"}]'::jsonb));
SELECT count(*) AS nothing_written FROM orchestrator.definitions WHERE name = 'bad';
