-- The session store: small JSON documents under a key private to the role
-- that wrote them (the caller at the entry gate), with a version for
-- optimistic concurrency, an optional expiry and an optional lock with a
-- token and its own expiry.
--
-- Built for churn: one row per key, the primary key (owner, key) is the only
-- index and none of its columns ever changes, so every set, touch and lock is
-- a HOT update (fillfactor 70 leaves room on the page).  Expired rows read as
-- absent at once (every statement tests expires_at) and maintain() deletes
-- them in bounded batches (_session_purge).

CREATE TABLE orchestrator.session_store (
	owner           regrole NOT NULL,
	key             text COLLATE "C" NOT NULL,
	value           jsonb NOT NULL,
	version         bigint NOT NULL,
	expires_at      timestamptz,
	lock_token      uuid,
	lock_expires_at timestamptz,
	updated_at      timestamptz NOT NULL,
	PRIMARY KEY (owner, key)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.05);

-- Announce a change of a session on its owner's private channel at commit
-- (src/sessions.c): {"op", "key", "version"}, never the value.
CREATE FUNCTION orchestrator._session_notify(owner regrole, op text, key text, version bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_session_notify'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- The caller's private channel (its name is a keyed hash nobody else can
-- compute; it changes when the server restarts).
CREATE FUNCTION orchestrator._api_session_channel()
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_session_channel'
LANGUAGE C STABLE SECURITY DEFINER PARALLEL RESTRICTED;

-- Checks shared by the session functions: 22004 for NULL, 22023 for a key
-- that is empty or longer than 512 bytes, a ttl that is not positive.
CREATE FUNCTION orchestrator._session_check(key text, ttl interval DEFAULT NULL, ttl_name text DEFAULT 'ttl')
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'session key must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			DETAIL = 'Every session is named by a key.',
			HINT = 'Pass a non-empty text of at most 512 bytes.';
	END IF;
	IF key = '' OR octet_length(key) > 512 THEN
		RAISE EXCEPTION 'session key must be 1 to 512 bytes long' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('The key has %s bytes.', octet_length(key)),
			HINT = 'Shorten long keys, for example to a hash of what they name.';
	END IF;
	IF ttl <= interval '0' THEN
		RAISE EXCEPTION '% must be a positive interval', ttl_name USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', ttl),
			HINT = CASE ttl_name WHEN 'ttl' THEN 'Pass NULL for a session that does not expire, or delete the session.'
				 ELSE 'A lock expires after its ttl; unlock it with session_unlock() to release it early.' END;
	END IF;
END
$$;

-- Why a session_set() changed nothing: raise 55P03 (locked under another
-- token, or not locked under the given one) or 40001 (stale version).
CREATE FUNCTION orchestrator._session_refuse(me regrole, key text, expected_version bigint, lock_token uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
BEGIN
	SELECT st.version, st.lock_token, st.lock_expires_at > now() AS locked INTO s
		FROM orchestrator.session_store st
		WHERE st.owner = me AND st.key = _session_refuse.key
		  AND (st.expires_at IS NULL OR st.expires_at > now());
	IF lock_token IS NOT NULL AND (NOT found OR NOT coalesce(s.locked, false) OR s.lock_token <> lock_token) THEN
		RAISE EXCEPTION 'session "%" is not locked under this token', key USING ERRCODE = 'lock_not_available',
			DETAIL = CASE WHEN NOT found THEN 'The session does not exist or has expired.'
						  WHEN coalesce(s.locked, false) THEN 'Another token holds its lock.'
						  ELSE 'Its lock has expired or was released.' END,
			HINT = 'Take the lock again with session_lock(), read the session and retry.';
	END IF;
	IF lock_token IS NULL AND found AND coalesce(s.locked, false) THEN
		RAISE EXCEPTION 'session "%" is locked', key USING ERRCODE = 'lock_not_available',
			DETAIL = 'Another client holds its lock.',
			HINT = 'Wait for session_unlock() or the lock''s expiry, or pass the lock''s token.';
	END IF;
	IF expected_version IS NOT NULL THEN
		RAISE EXCEPTION 'session "%" is not at version %', key, expected_version USING ERRCODE = 'serialization_failure',
			DETAIL = CASE WHEN found THEN format('Its version is %s.', s.version)
						  ELSE 'The session does not exist or has expired.' END,
			HINT = 'Read the session again (session_read) and retry with its version; 0 means "does not exist".';
	END IF;
	RAISE EXCEPTION 'session "%" changed concurrently', key USING ERRCODE = 'serialization_failure',
		DETAIL = 'Another transaction changed it while this one waited.',
		HINT = 'Retry the call.';
END
$$;

-- A session's value is held to the writing role's max_input_bytes, and a
-- new key to its max_sessions (54000; src/quota.c).
CREATE FUNCTION orchestrator._check_session_write(role regrole, key text, value jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_check_session_write'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION orchestrator._api_session_create(key text, value jsonb, ttl interval DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me      regrole := orchestrator._caller();
	created boolean;
BEGIN
	PERFORM orchestrator._session_set_check(key, value, ttl, NULL);
	-- the value is held to the role's max_input_bytes, a new key to its
	-- max_sessions (src/quota.c)
	PERFORM orchestrator._check_session_write(me, key, value);
	INSERT INTO orchestrator.session_store AS s (owner, key, value, version, expires_at, updated_at)
		VALUES (me, key, value, 1, now() + ttl, now())
	ON CONFLICT ON CONSTRAINT session_store_pkey DO UPDATE
		SET value = excluded.value, version = 1, expires_at = excluded.expires_at,
			lock_token = NULL, lock_expires_at = NULL, updated_at = excluded.updated_at
		WHERE s.expires_at <= now()
	RETURNING true INTO created;
	IF created THEN
		PERFORM orchestrator._session_notify(me, 'set', key, 1);
	END IF;
	RETURN coalesce(created, false);
END
$$;

-- The checks of session_set() (src/sessions.c calls this when one fails).
CREATE FUNCTION orchestrator._session_set_check(key text, value jsonb, ttl interval, expected_version bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	PERFORM orchestrator._session_check(key, ttl);
	IF value IS NULL THEN
		RAISE EXCEPTION 'session value must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			DETAIL = format('Key "%s".', key),
			HINT = 'Store the JSON null (''null''::jsonb), or delete the session with session_delete().';
	END IF;
	IF expected_version < 0 THEN
		RAISE EXCEPTION 'expected_version must not be negative' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', expected_version),
			HINT = 'Pass the version session_read() or session_set() returned, 0 for "does not exist yet", or NULL for no check.';
	END IF;
END
$$;

-- session_set() and session_get() carry the load: one prepared statement
-- each, in C (src/sessions.c).  session_set(): with a lock_token or an
-- expected_version above 0, an update of a live session at that version
-- and under that lock; with expected_version 0, an insert of a new key (an
-- expired one is replaced); otherwise an upsert, refused while another
-- token holds the lock.  A NULL ttl keeps a live session's expiry.  When
-- nothing was written, _session_refuse() says why.
CREATE FUNCTION orchestrator._api_session_set(key text, value jsonb, ttl interval DEFAULT NULL,
	expected_version bigint DEFAULT NULL, lock_token uuid DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'orchestrator_session_set'
LANGUAGE C VOLATILE SECURITY DEFINER PARALLEL UNSAFE;

CREATE FUNCTION orchestrator._api_session_get(key text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orchestrator_session_get'
LANGUAGE C STABLE SECURITY DEFINER PARALLEL RESTRICTED;

CREATE FUNCTION orchestrator._api_session_read(key text)
RETURNS TABLE (value jsonb, version bigint, expires_at timestamptz, locked boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM orchestrator._session_check(key);
	RETURN QUERY
		SELECT s.value, s.version, s.expires_at, coalesce(s.lock_expires_at > now(), false)
		FROM orchestrator.session_store s
		WHERE s.owner = orchestrator._caller() AND s.key = _api_session_read.key
		  AND (s.expires_at IS NULL OR s.expires_at > now());
END
$$;

CREATE FUNCTION orchestrator._api_session_touch(key text, ttl interval)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	done boolean;
BEGIN
	PERFORM orchestrator._session_check(key, ttl);
	-- a NULL ttl makes the session permanent
	UPDATE orchestrator.session_store s SET expires_at = now() + ttl
		WHERE s.owner = orchestrator._caller() AND s.key = _api_session_touch.key
		  AND (s.expires_at IS NULL OR s.expires_at > now())
		RETURNING true INTO done;
	RETURN coalesce(done, false);
END
$$;

CREATE FUNCTION orchestrator._api_session_delete(key text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me   regrole := orchestrator._caller();
	live boolean;
	v    bigint;
BEGIN
	PERFORM orchestrator._session_check(key);
	-- an expired row goes too (it reads as absent: false)
	DELETE FROM orchestrator.session_store s
		WHERE s.owner = me AND s.key = _api_session_delete.key
		  AND (s.expires_at <= now() OR NOT coalesce(s.lock_expires_at > now(), false))
		RETURNING s.expires_at IS NULL OR s.expires_at > now(), s.version INTO live, v;
	IF live IS NULL AND EXISTS (
			SELECT FROM orchestrator.session_store s
			WHERE s.owner = me AND s.key = _api_session_delete.key
			  AND (s.expires_at IS NULL OR s.expires_at > now()) AND s.lock_expires_at > now()) THEN
		RAISE EXCEPTION 'session "%" is locked', key USING ERRCODE = 'lock_not_available',
			DETAIL = 'A client holds its lock.',
			HINT = 'Delete it after session_unlock() or the lock''s expiry.';
	END IF;
	IF live THEN
		PERFORM orchestrator._session_notify(me, 'delete', key, v);
	END IF;
	RETURN coalesce(live, false);
END
$$;

-- A plan for each prefix (plan_cache_mode): the planner turns "key ^@
-- 'abc'" into the index range 'abc' <= key < 'abd' only for a known prefix.
CREATE FUNCTION orchestrator._api_session_list(prefix text DEFAULT '', max_keys integer DEFAULT 100)
RETURNS TABLE (key text, version bigint, expires_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
	IF prefix IS NULL THEN
		RAISE EXCEPTION 'prefix must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			DETAIL = 'session_list() lists the keys that start with prefix.',
			HINT = 'Pass '''' to list every key.';
	END IF;
	IF max_keys IS NULL OR max_keys < 1 OR max_keys > 10000 THEN
		RAISE EXCEPTION 'max_keys must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(max_keys::text, 'NULL')),
			HINT = 'List more keys page by page: ask again with a longer prefix.';
	END IF;
	RETURN QUERY
		SELECT s.key::text, s.version, s.expires_at
		FROM orchestrator.session_store s
		WHERE s.owner = orchestrator._caller() AND s.key ^@ prefix
		  AND (s.expires_at IS NULL OR s.expires_at > now())
		ORDER BY s.key
		LIMIT max_keys;
END
$$;

CREATE FUNCTION orchestrator._api_session_lock(key text, lock_token uuid, ttl interval)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	done boolean;
BEGIN
	PERFORM orchestrator._session_check(key, ttl, 'lock ttl');
	IF lock_token IS NULL OR ttl IS NULL THEN
		RAISE EXCEPTION 'lock_token and ttl must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			DETAIL = format('Key "%s".', key),
			HINT = 'Lock with a token of your own (gen_random_uuid()) and a ttl after which the lock lapses if you never unlock.';
	END IF;
	-- free, lapsed, or held under the same token (which extends it)
	UPDATE orchestrator.session_store s
		SET lock_token = _api_session_lock.lock_token, lock_expires_at = now() + ttl
		WHERE s.owner = orchestrator._caller() AND s.key = _api_session_lock.key
		  AND (s.expires_at IS NULL OR s.expires_at > now())
		  AND (NOT coalesce(s.lock_expires_at > now(), false) OR s.lock_token = _api_session_lock.lock_token)
		RETURNING true INTO done;
	RETURN coalesce(done, false);
END
$$;

CREATE FUNCTION orchestrator._api_session_unlock(key text, lock_token uuid)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me regrole := orchestrator._caller();
	v  bigint;
BEGIN
	PERFORM orchestrator._session_check(key);
	IF lock_token IS NULL THEN
		RAISE EXCEPTION 'lock_token must not be NULL' USING ERRCODE = 'null_value_not_allowed',
			DETAIL = format('Key "%s".', key),
			HINT = 'Pass the token the lock was taken with.';
	END IF;
	UPDATE orchestrator.session_store s SET lock_token = NULL, lock_expires_at = NULL
		WHERE s.owner = me AND s.key = _api_session_unlock.key
		  AND (s.expires_at IS NULL OR s.expires_at > now())
		  AND s.lock_token = _api_session_unlock.lock_token AND s.lock_expires_at > now()
		RETURNING s.version INTO v;
	IF v IS NOT NULL THEN
		PERFORM orchestrator._session_notify(me, 'unlock', key, v);
	END IF;
	RETURN v IS NOT NULL;
END
$$;

-- Delete up to max_rows expired sessions, in batches of 1000 that skip rows
-- a client has locked (such a row is deleted by a later call), so no client
-- ever waits for the purge.  Sequential scans, no index on expires_at (it
-- changes on every touch): each batch stops at its thousandth expired row.
CREATE FUNCTION orchestrator._session_purge(max_rows integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	total bigint := 0;
	n     bigint;
BEGIN
	LOOP
		DELETE FROM orchestrator.session_store s
			WHERE s.ctid = ANY (ARRAY(
				SELECT e.ctid FROM orchestrator.session_store e
				WHERE e.expires_at <= now()
				LIMIT least(1000, max_rows - total)
				FOR UPDATE SKIP LOCKED))
			  AND s.expires_at <= now();
		GET DIAGNOSTICS n = ROW_COUNT;
		total := total + n;
		EXIT WHEN n < 1000 OR total >= max_rows;
	END LOOP;
	RETURN total;
END
$$;

-- What administrators see of every role's sessions, for support: keys and
-- their state, not the values.  Other roles see their own sessions here.
CREATE VIEW orchestrator.sessions WITH (security_barrier) AS
	SELECT s.owner, s.key::text AS key, s.version, s.expires_at, s.updated_at,
		   coalesce(s.lock_expires_at > now(), false) AS locked,
		   CASE WHEN s.lock_expires_at > now() THEN s.lock_expires_at END AS lock_expires_at,
		   pg_catalog.pg_column_size(s.value) AS value_bytes
	FROM orchestrator.session_store s
	WHERE (s.expires_at IS NULL OR s.expires_at > now())
	  AND ((SELECT orchestrator._is_admin()) OR s.owner = orchestrator._caller());
