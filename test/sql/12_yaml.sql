\set SHOW_CONTEXT never
-- define_workflow_yaml(): the spec written in YAML, read in C (libyaml) into
-- the same jsonb, validated and stored by define_workflow()'s own path.

-- Show SQLSTATE, message and detail of a failing statement.
CREATE FUNCTION try_detail(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || d, '');
END $$;
-- Wait until a step has a status (the dispatchers run sql steps).
CREATE OR REPLACE FUNCTION wait_for_step(run uuid, step_name text, want text, seconds integer DEFAULT 30) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. seconds * 20 LOOP
		SELECT status INTO s FROM orchestrator.run_steps r WHERE r.run_id = run AND r.step = step_name;
		IF s = want THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timeout: ' || s;
END $$;
GRANT EXECUTE ON FUNCTION try_detail(text), wait_for_step(uuid, text, text, integer) TO PUBLIC;

SET ROLE alice;
SELECT orchestrator.define_workflow_yaml('yaml_report', $y$
# a comment
steps:
  - name: load
    kind: sql
    sql: SELECT $1::jsonb AS n
    args:
      - $path: $.input.n
  - name: review
    kind: external
    queue: yaml_q
    depends_on: [load]
    retry: {max_attempts: 3, backoff: 2 seconds, multiplier: 1.5}
$y$) AS v1;
-- Stored as the JSON it means (numbers are numbers, lists are arrays).
SELECT jsonb_pretty(spec) FROM orchestrator.definitions WHERE name = 'yaml_report';
-- The same spec in JSON is the same version.
SELECT orchestrator.define_workflow('yaml_report', (SELECT spec FROM orchestrator.definitions WHERE name = 'yaml_report')) AS same_version_json;
-- And in YAML's flow style (JSON is YAML).
SELECT orchestrator.define_workflow_yaml('yaml_report', (SELECT spec::text FROM orchestrator.definitions WHERE name = 'yaml_report')) AS same_version_flow;
-- It runs.
SELECT orchestrator.start_workflow('yaml_report', '{"n": 7}') AS yrun \gset
SELECT wait_for_step(:'yrun', 'review', 'ready') AS review;
SELECT step, status, result FROM orchestrator.run_steps WHERE run_id = :'yrun' ORDER BY step;
RESET ROLE;

-- Scalars typed as the YAML 1.2 core schema types them; quoted scalars
-- stay strings; YAML 1.1's yes/on/1_000 are strings.
SELECT orchestrator._yaml_to_jsonb($y$
ints: [1, -2, +3, 007, 0o17, 0x1F, 0x7fffffffffffffff]
floats: [1.5, .5, -1., 1e3, 2.5E-1]
bools: [true, True, TRUE, false, False, FALSE]
nulls: [~, null, Null, NULL, ]
empty:
strings: ["12", '13', "true", 'null', yes, on, 1_000, 0b11, 12:30, .x, -]
tagged: [!!str 10, !!int "0x10", !!float "3", !!bool "true", !!null "", ! 12]
block: |
  two
  lines
folded: >
  one
  line
unicode: "\u00e9\U0001F600"
$y$) AS typed;
SELECT orchestrator._yaml_to_jsonb('') AS empty_text, orchestrator._yaml_to_jsonb('42') AS scalar_document,
	orchestrator._yaml_to_jsonb(E'%YAML 1.2\n---\na: 1\n...\n') AS explicit_document,
	orchestrator._yaml_to_jsonb(NULL) AS null_text;
-- Keys are strings as written.
SELECT orchestrator._yaml_to_jsonb(E'1: a\ntrue: b\nnull: c\n"x y": d') AS keys;

-- Every error: SQLSTATE, message and the line and column in the detail.
-- Syntax errors (libyaml's).
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb('a: [1, 2')$$) AS unclosed_flow;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: 1\nb:\n  - x\n c: 2')$$) AS bad_indent;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: "unterminated')$$) AS unterminated_quote;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: b: c')$$) AS nested_plain_mapping;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'\ta: 1')$$) AS tab_indent;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'%YAML 2.0\n--- 1')$$) AS yaml_2;
-- Not plain data.
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: &x 1\nb: *x')$$) AS anchor;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: *x')$$) AS alias;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: &x [1]')$$) AS anchor_on_sequence;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: &x {b: 1}')$$) AS anchor_on_mapping;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'&k a: 1')$$) AS anchor_on_key;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'*k : 1')$$) AS alias_as_key;
-- The billion laughs stop at the first anchor.
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]')$$) AS billion_laughs;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!python/object:os.system 1')$$) AS python_tag;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !local 1')$$) AS local_tag;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'%TAG !e! tag:example.com,2000:\n---\na: !e!x 1')$$) AS declared_tag;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!seq {b: 1}')$$) AS seq_tag_on_mapping;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!set {b: 1}')$$) AS set_tag;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'!!int 1: x')$$) AS tag_on_key;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!int x')$$) AS not_an_int;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!float x')$$) AS not_a_float;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!bool yes')$$) AS not_a_bool;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!null 0')$$) AS not_a_null;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: .inf')$$) AS infinity;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: -.Inf')$$) AS minus_infinity;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: .NaN')$$) AS nan;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: !!float .nan')$$) AS tagged_nan;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: 0x8000000000000000')$$) AS hex_too_big;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: "x\\0y"')$$) AS nul_in_string;
SELECT try($$SELECT orchestrator._yaml_to_jsonb(E'a: 1e999999')$$) AS number_beyond_numeric;
-- Nesting deeper than the server's stack allows (jsonb's own limit).
SELECT try($$SELECT orchestrator._yaml_to_jsonb(repeat('[', 100000))$$) AS deep_nesting;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'[1]: x')$$) AS sequence_key;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'? {a: 1}\n: x')$$) AS mapping_key;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'steps:\n  - name: a\n    kind: sql\n    name: b')$$) AS duplicate_key;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'1: x\n"1": y')$$) AS duplicate_after_typing;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'a: 1\n---\nb: 2')$$) AS two_documents;
SELECT try_detail($$SELECT orchestrator._yaml_to_jsonb(E'--- 1\n--- 2')$$) AS two_scalar_documents;

-- Through define_workflow_yaml: the YAML errors, and define_workflow()'s own
-- validation errors unchanged; nothing is written.
SET ROLE alice;
SELECT count(*) AS definitions_before FROM orchestrator.definitions \gset
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps:\n  - name: a\n  kind: sql')$$) AS syntax;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps: &s []')$$) AS anchor;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', '')$$) AS empty_spec;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', NULL)$$) AS null_spec;
SELECT try_detail($$SELECT orchestrator.define_workflow('yaml_bad', NULL)$$) AS null_spec_json;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml(NULL, E'steps: [{name: a, kind: sql, sql: SELECT 1}]')$$) AS null_name;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('bad name!', E'steps: [{name: a, kind: sql, sql: SELECT 1}]')$$) AS bad_name;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps:\n  - name: a\n    kind: teleport')$$) AS unknown_kind;
SELECT try_detail($$SELECT orchestrator.define_workflow('yaml_bad', '{"steps": [{"name": "a", "kind": "teleport"}]}')$$) AS unknown_kind_json;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps:\n  - name: a\n    kind: sql\n    sql: SELECT 1\n    timeout: 3')$$) AS number_where_text;
SELECT try_detail($$SELECT orchestrator.define_workflow('yaml_bad', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "timeout": 3}]}')$$) AS number_where_text_json;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps:\n  - name: a\n    kind: sql\n    sql: SELEC 1')$$) AS bad_sql;
SELECT try_detail($$SELECT orchestrator.define_workflow_yaml('yaml_bad', E'steps:\n  - {name: a, kind: sql, sql: SELECT 1, depends_on: [b]}')$$) AS unknown_dependency;
SELECT count(*) = :definitions_before AS nothing_written FROM orchestrator.definitions;
SELECT count(*) AS yaml_bad_exists FROM orchestrator.workflows WHERE name = 'yaml_bad';
RESET ROLE;

-- Hostile roles: bob cannot add a version to alice's workflow in YAML
-- either; mallory (not an orchestrator user) cannot call it; nobody but
-- the extension calls the reader itself.
SET ROLE bob;
SELECT try($$SELECT orchestrator.define_workflow_yaml('yaml_report', E'steps: [{name: x, kind: sql, sql: SELECT 1}]')$$) AS takeover;
SELECT try($$SELECT orchestrator._yaml_to_jsonb('a: 1')$$) AS reader_direct;
SELECT try($$SELECT orchestrator._api_define_workflow_yaml('bobs', E'steps: [{name: x, kind: sql, sql: SELECT 1}]')$$) AS implementation_direct;
RESET ROLE;
SET ROLE mallory;
SELECT try($$SELECT orchestrator.define_workflow_yaml('mallorys', E'steps: [{name: x, kind: sql, sql: SELECT 1}]')$$) AS not_a_user;
RESET ROLE;
SELECT count(*) AS versions_of_yaml_report FROM orchestrator.definitions WHERE name = 'yaml_report';
SELECT count(*) AS others FROM orchestrator.workflows WHERE name IN ('bobs', 'mallorys');
SET ROLE alice;
SELECT orchestrator.cancel_workflow(:'yrun') AS cancelled;
RESET ROLE;
