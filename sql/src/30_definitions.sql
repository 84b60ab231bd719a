-- Workflow definitions: validation and versioning.
--
-- Every check raises invalid_parameter_value (22023) with the definition name
-- in errmsg, the offending step and field in errdetail, and what to do in
-- errhint; define_workflow writes nothing unless the whole spec is valid.

-- Raise a spec error.  Internal.
CREATE FUNCTION orchestrator._spec_error(wf text, detail text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	-- Details are sentences: capitalised, with a final period.
	RAISE EXCEPTION 'invalid workflow definition "%"', wf
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = upper(left(detail, 1)) || substr(detail, 2) || '.',
			  HINT = coalesce(hint, 'See docs/sql-reference.md for the definition format.');
END
$$;

-- A JSON value must be a string holding a valid, positive interval.
CREATE FUNCTION orchestrator._spec_interval(wf text, what text, value jsonb, allow_zero boolean DEFAULT false)
RETURNS interval
LANGUAGE plpgsql
AS $$
DECLARE
	result interval;
BEGIN
	IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
		RETURN NULL;
	END IF;
	IF jsonb_typeof(value) <> 'string' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be an interval string such as "10 seconds", not %s', what, value));
	END IF;
	BEGIN
		result := (value #>> '{}')::interval;
	EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
		PERFORM orchestrator._spec_error(wf, format('%s is not a valid interval: %s', what, value));
	END;
	IF result < interval '0' OR (result = interval '0' AND NOT allow_zero) THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be positive, not %s', what, value));
	END IF;
	IF result > interval '366 days' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be at most 366 days, not %s', what, value));
	END IF;
	RETURN result;
END
$$;

-- The timeout of an attempt that holds a dispatcher or a worker (sql, http,
-- external, compensations): at most orchestrator.max_step_timeout.  sleep
-- and wait steps hold nothing while they wait; their timeout is not bounded.
CREATE FUNCTION orchestrator._spec_timeout(wf text, what text, value jsonb)
RETURNS interval
LANGUAGE plpgsql
AS $$
DECLARE
	result interval := orchestrator._spec_interval(wf, what, value);
	max    interval := current_setting('orchestrator.max_step_timeout')::interval;
BEGIN
	IF result > max THEN
		PERFORM orchestrator._spec_error(wf, format('%s is %s, longer than orchestrator.max_step_timeout (%s)', what, value, max),
			'Split the work into shorter steps, or ask a superuser to raise orchestrator.max_step_timeout.');
	END IF;
	RETURN result;
END
$$;

-- A JSON path must parse.
CREATE FUNCTION orchestrator._spec_jsonpath(wf text, what text, value jsonb)
RETURNS jsonpath
LANGUAGE plpgsql
AS $$
BEGIN
	IF jsonb_typeof(value) <> 'string' THEN
		PERFORM orchestrator._spec_error(wf, format('%s must be a SQL/JSON path string, not %s', what, value));
	END IF;
	RETURN (value #>> '{}')::jsonpath;
EXCEPTION WHEN syntax_error OR invalid_text_representation OR invalid_parameter_value THEN
	PERFORM orchestrator._spec_error(wf, format('%s is not a valid SQL/JSON path: %s (%s)', what, value, SQLERRM),
		'Write paths over the run context, for example "$.input.query" or "$.steps.fetch.result.status == 200".');
	RETURN NULL;
END
$$;

-- Check every {"$path": ...} template inside a value.
CREATE FUNCTION orchestrator._spec_templates(wf text, what text, value jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	CASE jsonb_typeof(value)
	WHEN 'object' THEN
		IF value ? '$path' THEN
			IF (SELECT count(*) FROM jsonb_object_keys(value)) <> 1 THEN
				PERFORM orchestrator._spec_error(wf, format('%s: a template object must hold only "$path", not %s', what, value));
			END IF;
			PERFORM orchestrator._spec_jsonpath(wf, what || '.$path', value -> '$path');
		ELSE
			FOR k, v IN SELECT * FROM jsonb_each(value) LOOP
				PERFORM orchestrator._spec_templates(wf, what || '.' || k, v);
			END LOOP;
		END IF;
	WHEN 'array' THEN
		FOR v IN SELECT * FROM jsonb_array_elements(value) LOOP
			PERFORM orchestrator._spec_templates(wf, what || '[]', v);
		END LOOP;
	ELSE
		NULL;
	END CASE;
END
$$;

-- Only the listed keys may appear in an object (catches typos).
CREATE FUNCTION orchestrator._spec_keys(wf text, what text, value jsonb, allowed text[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	bad text;
BEGIN
	SELECT k INTO bad FROM jsonb_object_keys(value) AS k WHERE k <> ALL (allowed) ORDER BY k LIMIT 1;
	IF bad IS NOT NULL THEN
		PERFORM orchestrator._spec_error(wf, format('%s has unknown field "%s"', what, bad),
			format('Allowed fields: %s.', array_to_string(allowed, ', ')));
	END IF;
END
$$;

-- A step's "rate_limit": {"key": name, "per_second": n > 0, "burst": integer >= 1}.
CREATE FUNCTION orchestrator._spec_rate_limit(wf text, what text, v jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	hint text := 'For example "rate_limit": {"key": "payments-api", "per_second": 5, "burst": 10}: a bucket of 10 tokens that refills 5 a second, shared by the steps of your workflows that name "payments-api".';
BEGIN
	IF jsonb_typeof(v) IS DISTINCT FROM 'object' THEN
		PERFORM orchestrator._spec_error(wf, format('%s: "rate_limit" must be an object with "key", "per_second" and "burst"', what), hint);
	END IF;
	PERFORM orchestrator._spec_keys(wf, what || '.rate_limit', v, ARRAY['key', 'per_second', 'burst']);
	IF jsonb_typeof(v -> 'key') IS DISTINCT FROM 'string' OR length(v ->> 'key') NOT BETWEEN 1 AND 128 THEN
		PERFORM orchestrator._spec_error(wf, format('%s: rate_limit.key must be a non-empty string of at most 128 characters, not %s', what, coalesce(v -> 'key', 'null')), hint);
	END IF;
	IF jsonb_typeof(v -> 'per_second') IS DISTINCT FROM 'number' OR (v ->> 'per_second')::numeric <= 0
	   OR (v ->> 'per_second')::numeric > 1000000 THEN
		PERFORM orchestrator._spec_error(wf, format('%s: rate_limit.per_second must be a number greater than 0 (at most 1000000), not %s', what, coalesce(v -> 'per_second', 'null')), hint);
	END IF;
	IF jsonb_typeof(v -> 'burst') IS DISTINCT FROM 'number' OR (v ->> 'burst')::numeric < 1
	   OR (v ->> 'burst')::numeric > 1000000 OR (v ->> 'burst')::numeric <> trunc((v ->> 'burst')::numeric) THEN
		PERFORM orchestrator._spec_error(wf, format('%s: rate_limit.burst must be an integer from 1 to 1000000, not %s', what, coalesce(v -> 'burst', 'null')), hint);
	END IF;
END
$$;

-- Validate the kind-specific part of a step (or of a compensate action).
CREATE FUNCTION orchestrator._spec_action(wf text, what text, s jsonb, kind text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	req jsonb;
	url jsonb;
	n   integer;
	v   jsonb;
BEGIN
	IF s ? 'rate_limit' THEN
		PERFORM orchestrator._spec_rate_limit(wf, what, s -> 'rate_limit');
	END IF;
	CASE kind
	WHEN 'sql' THEN
		IF jsonb_typeof(s -> 'sql') IS DISTINCT FROM 'string' OR btrim(s ->> 'sql') = '' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" must be a non-empty string', what));
		END IF;
		BEGIN
			n := orchestrator._sql_statement_count(s ->> 'sql');
		EXCEPTION WHEN syntax_error THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" does not parse: %s', what, SQLERRM));
		END;
		IF n <> 1 THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "sql" must hold exactly one statement, not %s', what, n),
				'Split the work into several sql steps, or wrap it in a function.');
		END IF;
		IF s ? 'args' THEN
			IF jsonb_typeof(s -> 'args') <> 'array' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "args" must be an array', what));
			END IF;
			IF jsonb_array_length(s -> 'args') > 100 THEN
				PERFORM orchestrator._spec_error(wf, format('%s: at most 100 args', what));
			END IF;
			PERFORM orchestrator._spec_templates(wf, what || '.args', s -> 'args');
		END IF;
	WHEN 'http' THEN
		req := s -> 'request';
		IF jsonb_typeof(req) IS DISTINCT FROM 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "request" must be an object with at least "url"', what));
		END IF;
		PERFORM orchestrator._spec_keys(wf, what || '.request', req, ARRAY['method', 'url', 'headers', 'body']);
		IF coalesce(req ->> 'method', 'GET') NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: unsupported HTTP method %s', what, req -> 'method'),
				'Use GET, POST, PUT, PATCH, DELETE or HEAD.');
		END IF;
		url := req -> 'url';
		IF jsonb_typeof(url) = 'string' THEN
			IF url #>> '{}' !~* '^https?://[^/\s]+' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: url must be an http:// or https:// URL, not %s', what, url));
			END IF;
		ELSIF NOT (jsonb_typeof(url) = 'object' AND url ? '$path') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "request.url" must be a string or a {"$path": ...} template', what));
		END IF;
		IF req ? 'headers' THEN
			IF jsonb_typeof(req -> 'headers') <> 'object' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "request.headers" must be an object', what));
			END IF;
			FOR v IN SELECT value FROM jsonb_each(req -> 'headers') LOOP
				IF jsonb_typeof(v) <> 'string' AND NOT (jsonb_typeof(v) = 'object' AND v ? '$path') THEN
					PERFORM orchestrator._spec_error(wf, format('%s: header values must be strings or templates, not %s', what, v));
				END IF;
			END LOOP;
		END IF;
		PERFORM orchestrator._spec_templates(wf, what || '.request', req);
	WHEN 'external' THEN
		IF jsonb_typeof(s -> 'queue') IS DISTINCT FROM 'string'
		   OR (s ->> 'queue') !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "queue" must be a name of letters, digits, "_", ".", ":" or "-" (at most 63), not %s', what, coalesce(s -> 'queue', 'null')));
		END IF;
		IF s ? 'input' THEN
			PERFORM orchestrator._spec_templates(wf, what || '.input', s -> 'input');
		END IF;
	END CASE;
END
$$;

-- Validate a whole spec; returns the parsed steps in spec order.
CREATE FUNCTION orchestrator._validate_spec(wf text, spec jsonb)
RETURNS SETOF orchestrator.definition_steps
LANGUAGE plpgsql
AS $$
DECLARE
	s        jsonb;
	pos      integer := 0;
	sname    text;
	kind     text;
	what     text;
	names    text[] := '{}';
	deps     text[];
	d        text;
	r        jsonb;
	row      orchestrator.definition_steps;
	rows     orchestrator.definition_steps[] := '{}';
	remaining text[];
	progress boolean;
	n        integer;
	common   text[] := ARRAY['name', 'kind', 'depends_on', 'when', 'retry', 'timeout', 'compensate', 'on_error', 'description',
						   'for_each', 'max_parallel'];
BEGIN
	IF wf IS NULL OR wf !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
		RAISE EXCEPTION 'invalid workflow name %', coalesce(quote_literal(wf), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A workflow name is 1 to 128 letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_".';
	END IF;
	IF spec IS NULL OR jsonb_typeof(spec) <> 'object' THEN
		PERFORM orchestrator._spec_error(wf, 'the spec must be a JSON object with a "steps" array');
	END IF;
	IF octet_length(spec::text) > 1048576 THEN
		PERFORM orchestrator._spec_error(wf, format('the spec is %s bytes; at most 1 MB is allowed', octet_length(spec::text)));
	END IF;
	PERFORM orchestrator._spec_keys(wf, 'the spec', spec, ARRAY['steps', 'result', 'description', 'max_active_runs']);
	IF spec ? 'max_active_runs' AND (jsonb_typeof(spec -> 'max_active_runs') <> 'number'
			OR (spec ->> 'max_active_runs')::numeric NOT BETWEEN 1 AND 1000000
			OR (spec ->> 'max_active_runs')::numeric <> trunc((spec ->> 'max_active_runs')::numeric)) THEN
		PERFORM orchestrator._spec_error(wf, format('"max_active_runs" must be an integer from 1 to 1000000, not %s', spec -> 'max_active_runs'),
			'At most that many runs of the workflow (all versions) are active at once; more wait with status queued.  Leave it out for no limit.');
	END IF;
	IF jsonb_typeof(spec -> 'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(spec -> 'steps') = 0 THEN
		PERFORM orchestrator._spec_error(wf, '"steps" must be a non-empty array');
	END IF;
	IF jsonb_array_length(spec -> 'steps') > 1000 THEN
		PERFORM orchestrator._spec_error(wf, format('%s steps; at most 1000 are allowed', jsonb_array_length(spec -> 'steps')));
	END IF;
	IF spec ? 'result' THEN
		PERFORM orchestrator._spec_templates(wf, 'result', spec -> 'result');
	END IF;

	-- Names first, so that depends_on may name any step.
	FOR s IN SELECT value FROM jsonb_array_elements(spec -> 'steps') LOOP
		pos := pos + 1;
		IF jsonb_typeof(s) <> 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('step %s must be an object, not %s', pos, s));
		END IF;
		sname := s ->> 'name';
		IF jsonb_typeof(s -> 'name') IS DISTINCT FROM 'string' OR sname !~ '^[A-Za-z_][A-Za-z0-9_-]{0,62}$' THEN
			PERFORM orchestrator._spec_error(wf, format('step %s: "name" must be 1 to 63 letters, digits, "_" or "-", starting with a letter or "_", not %s', pos, coalesce(s -> 'name', 'null')));
		END IF;
		IF sname = ANY (names) THEN
			PERFORM orchestrator._spec_error(wf, format('step name "%s" is used twice', sname), 'Give every step a unique name.');
		END IF;
		names := names || sname;
	END LOOP;

	pos := 0;
	FOR s IN SELECT value FROM jsonb_array_elements(spec -> 'steps') LOOP
		sname := s ->> 'name';
		what := format('step "%s"', sname);
		kind := s ->> 'kind';
		IF kind IS NULL OR kind NOT IN ('sql', 'http', 'external', 'sleep', 'wait', 'workflow') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: unknown kind %s', what, coalesce(s -> 'kind', 'null')),
				'The kinds are sql, http, external, sleep, wait and workflow.');
		END IF;
		IF kind IN ('sleep', 'wait') AND s ? 'rate_limit' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: %s steps take no "rate_limit"', what, kind),
				'A rate limit spaces out calls: it applies to sql, http and external steps.');
		END IF;
		PERFORM orchestrator._spec_keys(wf, what, s, common || CASE kind
			WHEN 'sql' THEN ARRAY['sql', 'args', 'rate_limit']
			WHEN 'http' THEN ARRAY['request', 'rate_limit']
			WHEN 'external' THEN ARRAY['queue', 'input', 'rate_limit']
			WHEN 'sleep' THEN ARRAY['duration', 'until']
			WHEN 'wait' THEN ARRAY['signal']
			WHEN 'workflow' THEN ARRAY['workflow', 'version', 'input'] END);

		deps := '{}';
		IF s ? 'depends_on' THEN
			IF jsonb_typeof(s -> 'depends_on') <> 'array' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "depends_on" must be an array of step names', what));
			END IF;
			FOR r IN SELECT value FROM jsonb_array_elements(s -> 'depends_on') LOOP
				d := r #>> '{}';
				IF jsonb_typeof(r) <> 'string' OR NOT d = ANY (names) THEN
					PERFORM orchestrator._spec_error(wf, format('%s: depends_on names unknown step %s', what, r),
						'depends_on lists names of other steps of the same definition.');
				END IF;
				IF d = sname THEN
					PERFORM orchestrator._spec_error(wf, format('%s depends on itself', what));
				END IF;
				IF d = ANY (deps) THEN
					PERFORM orchestrator._spec_error(wf, format('%s: depends_on lists "%s" twice', what, d));
				END IF;
				deps := deps || d;
			END LOOP;
		END IF;

		row := NULL;
		row.name := wf;
		row.step := sname;
		row.position := pos;
		row.kind := kind;
		row.depends_on := deps;
		row.dependents := '{}';
		row.spec := s;
		IF s ? 'when' THEN
			row.condition := orchestrator._spec_jsonpath(wf, what || '.when', s -> 'when');
		END IF;

		-- Retry policy (sleep and wait steps run once).
		r := coalesce(s -> 'retry', '{}');
		IF jsonb_typeof(r) <> 'object' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "retry" must be an object', what));
		END IF;
		PERFORM orchestrator._spec_keys(wf, what || '.retry', r, ARRAY['max_attempts', 'backoff', 'multiplier', 'max_backoff', 'jitter']);
		IF r ? 'max_attempts' AND (jsonb_typeof(r -> 'max_attempts') <> 'number'
				OR (r ->> 'max_attempts')::numeric NOT BETWEEN 1 AND 100
				OR (r ->> 'max_attempts')::numeric <> trunc((r ->> 'max_attempts')::numeric)) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.max_attempts must be an integer from 1 to 100, not %s', what, r -> 'max_attempts'));
		END IF;
		IF r ? 'multiplier' AND (jsonb_typeof(r -> 'multiplier') <> 'number' OR (r ->> 'multiplier')::numeric NOT BETWEEN 1 AND 10) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.multiplier must be a number from 1 to 10, not %s', what, r -> 'multiplier'));
		END IF;
		IF r ? 'jitter' AND (jsonb_typeof(r -> 'jitter') <> 'number' OR (r ->> 'jitter')::numeric NOT BETWEEN 0 AND 1) THEN
			PERFORM orchestrator._spec_error(wf, format('%s: retry.jitter must be a number from 0 to 1, not %s', what, r -> 'jitter'));
		END IF;
		IF kind IN ('sleep', 'wait') AND s ? 'retry' THEN
			PERFORM orchestrator._spec_error(wf, format('%s: %s steps are not retried; remove "retry"', what, kind));
		END IF;
		-- A child run is a whole workflow with retries of its own: run once
		-- unless "retry" says otherwise.
		row.max_attempts := coalesce((r ->> 'max_attempts')::integer, CASE WHEN kind IN ('sleep', 'wait', 'workflow') THEN 1 ELSE 3 END);
		row.backoff := coalesce(orchestrator._spec_interval(wf, what || '.retry.backoff', r -> 'backoff', true), interval '1 second');
		row.multiplier := coalesce((r ->> 'multiplier')::float8, 2);
		row.max_backoff := coalesce(orchestrator._spec_interval(wf, what || '.retry.max_backoff', r -> 'max_backoff', true), interval '1 minute');
		row.jitter := coalesce((r ->> 'jitter')::float8, 0.2);
		row.timeout := CASE WHEN kind IN ('sleep', 'wait', 'workflow') THEN orchestrator._spec_interval(wf, what || '.timeout', s -> 'timeout')
						   ELSE orchestrator._spec_timeout(wf, what || '.timeout', s -> 'timeout') END;

		IF s ? 'on_error' AND (s -> 'on_error') NOT IN ('"fail"', '"continue"') THEN
			PERFORM orchestrator._spec_error(wf, format('%s: "on_error" must be "fail" or "continue", not %s', what, s -> 'on_error'),
				'"continue": when the step fails for good, the run goes on and its dependents see its status and error.');
		END IF;

		CASE kind
		WHEN 'sleep' THEN
			IF (s ? 'duration') = (s ? 'until') THEN
				PERFORM orchestrator._spec_error(wf, format('%s: a sleep step takes exactly one of "duration" or "until"', what));
			END IF;
			IF s ? 'duration' THEN
				-- a sleep longer than its timeout would always time out
				IF orchestrator._spec_interval(wf, what || '.duration', s -> 'duration') > row.timeout THEN
					PERFORM orchestrator._spec_error(wf, format('%s: "duration" %s is longer than its "timeout" %s, so the sleep could never end',
															   what, s -> 'duration', s -> 'timeout'),
						'A sleep with a "timeout" fails when it would end after it; give a "duration" at most the timeout, or drop the timeout.');
				END IF;
			ELSIF jsonb_typeof(s -> 'until') = 'string' THEN
				BEGIN
					PERFORM (s ->> 'until')::timestamptz;
				EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
					PERFORM orchestrator._spec_error(wf, format('%s: "until" is not a timestamp: %s', what, s -> 'until'));
				END;
			ELSIF jsonb_typeof(s -> 'until') = 'object' AND s -> 'until' ? '$path' THEN
				PERFORM orchestrator._spec_templates(wf, what || '.until', s -> 'until');
			ELSE
				PERFORM orchestrator._spec_error(wf, format('%s: "until" must be a timestamp string or a {"$path": ...} template', what));
			END IF;
		WHEN 'wait' THEN
			IF jsonb_typeof(s -> 'signal') IS DISTINCT FROM 'string' OR (s ->> 'signal') !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,62}$' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "signal" must be a name of letters, digits, "_", ".", ":" or "-", not %s', what, coalesce(s -> 'signal', 'null')));
			END IF;
		WHEN 'workflow' THEN
			-- A child run: the workflow must exist (and the definer may start
			-- it) now; the right of the owner is checked again at each start.
			IF jsonb_typeof(s -> 'workflow') IS DISTINCT FROM 'string' OR (s ->> 'workflow') !~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "workflow" must be the name of a workflow, not %s', what, coalesce(s -> 'workflow', 'null')));
			END IF;
			IF s ? 'version' AND (jsonb_typeof(s -> 'version') <> 'number'
					OR (s ->> 'version')::numeric NOT BETWEEN 1 AND 999999999
					OR (s ->> 'version')::numeric <> trunc((s ->> 'version')::numeric)) THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "version" must be a positive integer, not %s', what, s -> 'version'),
					'Omit "version" to start the latest version of the workflow when the step runs.');
			END IF;
			IF NOT EXISTS (SELECT 1 FROM orchestrator.definitions d WHERE d.name = s ->> 'workflow'
						   AND (NOT s ? 'version' OR d.version = (s ->> 'version')::integer)) THEN
				RAISE EXCEPTION 'invalid workflow definition "%"', wf
					USING ERRCODE = 'undefined_object',
						  DETAIL = format('%s: workflow "%s"%s is not defined.', upper(left(what, 1)) || substr(what, 2), s ->> 'workflow',
										  CASE WHEN s ? 'version' THEN format(' version %s', s -> 'version') ELSE '' END),
						  HINT = 'Define the child workflow first.';
			END IF;
			IF NOT orchestrator._may(s ->> 'workflow', 'start') THEN
				RAISE EXCEPTION 'invalid workflow definition "%"', wf
					USING ERRCODE = 'insufficient_privilege',
						  DETAIL = format('%s: permission denied to start workflow "%s".', upper(left(what, 1)) || substr(what, 2), s ->> 'workflow'),
						  HINT = 'Its owner can grant it: SELECT orchestrator.grant_workflow(<name>, <role>);';
			END IF;
			IF s ? 'input' THEN
				PERFORM orchestrator._spec_templates(wf, what || '.input', s -> 'input');
			END IF;
		ELSE
			PERFORM orchestrator._spec_action(wf, what, s, kind);
		END CASE;

		-- Fan-out: once per element of an array.
		IF s ? 'for_each' THEN
			IF jsonb_typeof(s -> 'for_each') IS DISTINCT FROM 'object' OR NOT (s -> 'for_each') ? '$path' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "for_each" must be a {"$path": ...} template selecting an array, not %s', what, s -> 'for_each'),
					'For example {"$path": "$.input.items"}; each element runs the step with $.item and $.index.');
			END IF;
			PERFORM orchestrator._spec_templates(wf, what || '.for_each', s -> 'for_each');
			IF kind = 'wait' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: a wait step cannot have "for_each"', what),
					'A signal completes every waiting step of its name at once; wait once, then fan out.');
			END IF;
		END IF;
		IF s ? 'max_parallel' THEN
			IF NOT s ? 'for_each' THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "max_parallel" needs "for_each"', what));
			END IF;
			IF jsonb_typeof(s -> 'max_parallel') <> 'number' OR (s ->> 'max_parallel')::numeric NOT BETWEEN 1 AND 10000
			   OR (s ->> 'max_parallel')::numeric <> trunc((s ->> 'max_parallel')::numeric) THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "max_parallel" must be an integer from 1 to 10000, not %s', what, s -> 'max_parallel'));
			END IF;
		END IF;

		IF s ? 'compensate' THEN
			r := s -> 'compensate';
			IF jsonb_typeof(r) <> 'object' OR coalesce(r ->> 'kind', '') NOT IN ('sql', 'http', 'external') THEN
				PERFORM orchestrator._spec_error(wf, format('%s: "compensate" must be an object of kind sql, http or external', what));
			END IF;
			PERFORM orchestrator._spec_keys(wf, what || '.compensate', r, ARRAY['kind', 'sql', 'args', 'request', 'queue', 'input', 'timeout', 'rate_limit']);
			PERFORM orchestrator._spec_action(wf, what || '.compensate', r, r ->> 'kind');
		END IF;

		rows := rows || row;
		pos := pos + 1;
	END LOOP;

	-- Dependents, and a cycle check (repeatedly remove steps whose
	-- dependencies are all removed; whatever remains is on a cycle).
	FOR i IN 1 .. array_length(rows, 1) LOOP
		rows[i].dependents := ARRAY(SELECT x.step FROM unnest(rows) x WHERE rows[i].step = ANY (x.depends_on) ORDER BY x.position);
	END LOOP;
	remaining := names;
	LOOP
		progress := false;
		FOR i IN 1 .. array_length(rows, 1) LOOP
			IF rows[i].step = ANY (remaining) AND NOT (rows[i].depends_on && remaining) THEN
				remaining := array_remove(remaining, rows[i].step);
				progress := true;
			END IF;
		END LOOP;
		EXIT WHEN NOT progress OR cardinality(remaining) = 0;
	END LOOP;
	IF cardinality(remaining) > 0 THEN
		PERFORM orchestrator._spec_error(wf, format('the dependencies form a cycle through steps %s', array_to_string(remaining, ', ')),
			'depends_on must describe a directed acyclic graph.');
	END IF;

	-- A step's compensation is a step of its own, "compensate:<step>" (a
	-- name no user step can take), outside the DAG: it runs only when the
	-- run fails after <step> succeeded (see _run_finish).
	n := cardinality(rows);
	FOR i IN 1 .. n LOOP
		CONTINUE WHEN NOT rows[i].spec ? 'compensate';
		r := rows[i].spec -> 'compensate';
		row := NULL;
		row.name := wf;
		row.step := 'compensate:' || rows[i].step;
		row.position := n + rows[i].position;
		row.kind := r ->> 'kind';
		row.depends_on := '{}';
		row.dependents := '{}';
		row.spec := r;
		row.max_attempts := 3;
		row.backoff := interval '1 second';
		row.multiplier := 2;
		row.max_backoff := interval '1 minute';
		row.jitter := 0.2;
		row.timeout := orchestrator._spec_timeout(wf, format('step "%s".compensate.timeout', rows[i].step), r -> 'timeout');
		row.compensates := rows[i].step;
		rows := rows || row;
	END LOOP;

	RETURN QUERY SELECT * FROM unnest(rows);
END
$$;

CREATE FUNCTION orchestrator._api_define_workflow(name text, spec jsonb)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	v      integer;
	owner  regrole;
	caller regrole := orchestrator._caller();
	steps  orchestrator.definition_steps[];
BEGIN
	steps := ARRAY(SELECT x FROM orchestrator._validate_spec(name, spec) x);
	-- Literal URLs of http steps must be allowed hosts (75_http.sql).
	PERFORM orchestrator._http_check_spec(name, steps);

	-- Serialise definitions of the same name so versions are gap-free (a
	-- lock no role can take from SQL: see _xact_lock).
	PERFORM orchestrator._xact_lock('define_workflow', name, true);
	-- A name belongs to the role that defined it first.  Only that role (or
	-- a role with its privileges) adds versions: a new version decides what
	-- the next runs execute, with the owner's rights.  Checked before
	-- anything else is looked at, so that others learn nothing of its
	-- versions.
	SELECT w.owner INTO owner FROM orchestrator.workflows w WHERE w.name = _api_define_workflow.name;
	IF NOT FOUND THEN
		INSERT INTO orchestrator.workflows (name, owner) VALUES (name, caller);
	ELSIF NOT orchestrator._acts_as(owner) THEN
		RAISE EXCEPTION 'workflow "%" belongs to another role', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only the role that first defined a workflow, and roles with its privileges, can add versions to it.',
				  HINT = 'Choose another name.';
	END IF;
	SELECT d.version INTO v FROM orchestrator.definitions d WHERE d.name = _api_define_workflow.name AND d.spec = _api_define_workflow.spec
		ORDER BY d.version DESC LIMIT 1;
	IF FOUND THEN
		RETURN v;
	END IF;
	SELECT coalesce(max(d.version), 0) + 1 INTO v FROM orchestrator.definitions d WHERE d.name = _api_define_workflow.name;
	INSERT INTO orchestrator.definitions (name, version, spec, created_by) VALUES (name, v, spec, caller);
	INSERT INTO orchestrator.definition_steps
		SELECT x.name, v, x.step, x.position, x.kind, x.depends_on, x.dependents, x.condition, x.spec,
			   x.max_attempts, x.backoff, x.multiplier, x.max_backoff, x.jitter, x.timeout, x.compensates
		FROM unnest(steps) x;
	-- The latest version's "max_active_runs" limits the runs of the name.
	PERFORM orchestrator._admission_configure('workflow', name, (spec ->> 'max_active_runs')::integer);
	RETURN v;
END
$$;

-- The value of a YAML text (src/yaml_spec.c): one document of plain data,
-- scalars typed by the YAML 1.2 core schema; anchors, aliases, other tags,
-- duplicate keys and further documents refused (22P02, with line and column).
CREATE FUNCTION orchestrator._yaml_to_jsonb(yaml text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orchestrator_yaml_to_jsonb'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- define_workflow() of a spec written in YAML: the same validation, the
-- same errors, the same stored jsonb (an identical spec, in YAML or JSON,
-- returns the existing version).  The text is held to the spec's 1 MB before
-- it is read: a larger one was parsed and turned into jsonb whole (memory and
-- time in proportion, for any size up to 1 GB) before the check of the jsonb.
CREATE FUNCTION orchestrator._api_define_workflow_yaml(name text, spec text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF octet_length(spec) > 1048576 THEN
		PERFORM orchestrator._spec_error(name, format('the YAML text is %s bytes; at most 1 MB is allowed', octet_length(spec)),
			'Shorten the spec: comments and indentation count in the YAML text.');
	END IF;
	RETURN orchestrator._api_define_workflow(name, orchestrator._yaml_to_jsonb(spec));
END
$$;

-- Grant or revoke a privilege on a workflow: "start" (start runs of it and
-- see them) or "work" (its external steps).  Its owner, roles with the
-- owner's privileges, and members of orchestrator_admin may.
CREATE FUNCTION orchestrator._workflow_privilege_target(name text, role regrole, privilege text)
RETURNS regrole
LANGUAGE plpgsql
AS $$
DECLARE
	owner regrole;
BEGIN
	IF name IS NULL OR role IS NULL OR privilege IS NULL THEN
		RAISE EXCEPTION 'name, role and privilege must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF privilege NOT IN ('start', 'work') THEN
		RAISE EXCEPTION 'unknown workflow privilege "%"', privilege USING ERRCODE = 'invalid_parameter_value',
			DETAIL = 'Workflow privileges are "start" (start runs and see them) and "work" (claim, heartbeat, complete and fail external steps).';
	END IF;
	SELECT w.owner INTO owner FROM orchestrator.workflows w WHERE w.name = _workflow_privilege_target.name FOR UPDATE;
	IF NOT FOUND OR NOT (orchestrator._acts_as(owner) OR orchestrator._is_admin()) THEN
		-- whether it exists is none of the caller's business
		RAISE EXCEPTION 'permission denied to grant privileges on workflow "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Only the owner of a workflow (the role that defined it first) and members of orchestrator_admin grant and revoke its privileges.',
				  HINT = 'Check the name; define the workflow first if it does not exist.';
	END IF;
	RETURN owner;
END
$$;

CREATE FUNCTION orchestrator._api_grant_workflow(name text, role regrole, privilege text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	owner regrole := orchestrator._workflow_privilege_target(name, role, privilege);
BEGIN
	INSERT INTO orchestrator.workflow_grants (name, grantee, privilege, owner, granted_by)
		VALUES (name, role, privilege, owner, orchestrator._caller())
		ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION orchestrator._api_revoke_workflow(name text, role regrole, privilege text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
	PERFORM orchestrator._workflow_privilege_target(name, role, privilege);
	DELETE FROM orchestrator.workflow_grants g
		WHERE g.name = _api_revoke_workflow.name AND g.grantee = role AND g.privilege = _api_revoke_workflow.privilege;
	RETURN FOUND;
END
$$;

-- May the caller start runs of workflow "name" (privilege 'start') or
-- work its external steps ('work')?  Its owner, roles granted that
-- privilege (or members of such roles), and members of orchestrator_admin.
-- In C (src/rights.c), where the engine checks the same rule without a
-- statement.
CREATE FUNCTION orchestrator._may(name text, privilege text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_may'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- _may(name, 'start') for a given role rather than the caller: may that
-- role start runs of workflow "name"?  A child run is started by the owner of
-- its parent's workflow (src/compose.c).  False for a role that does not exist.
CREATE FUNCTION orchestrator._may_start_as(name text, role regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_may_start_as'
LANGUAGE C STABLE PARALLEL RESTRICTED;
