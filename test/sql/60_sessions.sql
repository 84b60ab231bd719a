\set SHOW_CONTEXT never
-- The session store: every function, its refusals (SQLSTATE, message,
-- detail, hint; nothing written), expiry, locks, privacy between roles,
-- the admin view and maintain()'s purge.  Roles from 06_roles: alice and
-- bob (orchestrator_user), carol (orchestrator_admin), mallory (neither).

-- An error in full: SQLSTATE, message, detail and hint.
CREATE FUNCTION session_err(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN format(E'%s: %s\n  detail: %s\n  hint: %s', st, msg, det, hin);
END $$;
GRANT EXECUTE ON FUNCTION session_err(text) TO PUBLIC;

SET ROLE alice;
-- create: true once, false while the key lives
SELECT orchestrator.session_create('cart:1', '{"items": [1]}') AS created;
SELECT orchestrator.session_create('cart:1', '{"items": [2]}') AS created_again;
SELECT orchestrator.session_get('cart:1');
SELECT * FROM orchestrator.session_read('cart:1');
-- set: versions count up; a new key starts at 1
SELECT orchestrator.session_set('cart:1', '{"items": [1, 2]}') AS v;
SELECT orchestrator.session_set('cart:2', '"two"') AS v;
SELECT orchestrator.session_set('cart:1', '{"items": [1, 2, 3]}', expected_version => 2) AS v;
-- a stale expected_version: 40001, nothing written
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{"stale": true}', expected_version => 2)$$);
SELECT value, version FROM orchestrator.session_read('cart:1');
-- expected_version 0: only when the key does not exist
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{}', expected_version => 0)$$);
SELECT orchestrator.session_set('cart:3', '[]', expected_version => 0) AS v;
SELECT session_err($$SELECT orchestrator.session_set('nothing', '{}', expected_version => 4)$$);
SELECT orchestrator.session_get('nothing') IS NULL AS absent;
-- JSON null is a value
SELECT orchestrator.session_set('null', 'null') AS v;
SELECT orchestrator.session_get('null') AS json_null, orchestrator.session_get('null') IS NULL AS sql_null;

-- ttl: set, kept by a set without ttl, changed by touch, removed by a NULL touch
BEGIN;
SELECT orchestrator.session_set('ttl', '1', ttl => '1 hour') AS v;
SELECT expires_at = now() + interval '1 hour' AS expires_in_an_hour FROM orchestrator.session_read('ttl');
SELECT orchestrator.session_set('ttl', '2') AS v;
SELECT expires_at = now() + interval '1 hour' AS expiry_kept FROM orchestrator.session_read('ttl');
SELECT orchestrator.session_touch('ttl', '2 hours') AS touched;
SELECT expires_at = now() + interval '2 hours' AS expires_in_two_hours FROM orchestrator.session_read('ttl');
SELECT orchestrator.session_touch('ttl', NULL) AS persisted;
SELECT expires_at IS NULL AS never_expires FROM orchestrator.session_read('ttl');
COMMIT;
SELECT orchestrator.session_touch('nothing', '1 hour') AS touched_absent;

-- expiry: absent at once, everywhere (the TTL is long enough for the next
-- statements to see the key on a loaded machine)
SELECT orchestrator.session_set('short', '"soon gone"', ttl => '500 milliseconds') AS v;
SELECT orchestrator.session_lock('short', '00000000-0000-0000-0000-00000000000a', '1 hour') AS locked;
SELECT pg_sleep(0.6);
SELECT orchestrator.session_get('short') IS NULL AS get_absent;
SELECT count(*) AS read_rows FROM orchestrator.session_read('short');
SELECT count(*) AS listed FROM orchestrator.session_list('short');
SELECT orchestrator.session_touch('short', '1 hour') AS touch_expired;
SELECT orchestrator.session_lock('short', '00000000-0000-0000-0000-00000000000b', '1 hour') AS lock_expired;
SELECT orchestrator.session_delete('short') AS delete_expired;
-- an expired key is a new key: create works, versions start again, its lock is gone
SELECT orchestrator.session_set('short2', '1', ttl => '500 milliseconds') AS v;
SELECT orchestrator.session_set('short2', '2') AS v;
SELECT orchestrator.session_lock('short2', '00000000-0000-0000-0000-00000000000a', '1 hour') AS locked;
SELECT pg_sleep(0.6);
SELECT orchestrator.session_create('short2', '"new"') AS created_over_expired;
SELECT value, version, expires_at, locked FROM orchestrator.session_read('short2');
SELECT orchestrator.session_set('short3', '1', ttl => '10 milliseconds') AS v;
SELECT pg_sleep(0.05);
SELECT orchestrator.session_set('short3', '"again"') AS set_over_expired;
SELECT value, version, expires_at FROM orchestrator.session_read('short3');

-- locks: one token at a time; set needs no token when unlocked, the token when locked
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', '1 minute') AS a_locks;
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000002', '1 minute') AS b_locks;
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', '2 minutes') AS a_extends;
SELECT locked FROM orchestrator.session_read('cart:1');
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{"no": "token"}')$$);
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{"wrong": "token"}', lock_token => '00000000-0000-0000-0000-000000000002')$$);
SELECT session_err($$SELECT orchestrator.session_delete('cart:1')$$);
SELECT orchestrator.session_get('cart:1');
SELECT orchestrator.session_set('cart:1', '{"with": "token"}', lock_token => '00000000-0000-0000-0000-000000000001') AS v;
SELECT orchestrator.session_set('cart:1', '{"with": "token and version"}', expected_version => 4,
	lock_token => '00000000-0000-0000-0000-000000000001') AS v;
SELECT orchestrator.session_touch('cart:1', '1 day') AS touch_while_locked;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000002') AS b_unlocks;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000001') AS a_unlocks;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000001') AS a_unlocks_again;
-- a token on an unlocked session: the lock was lost, 55P03
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{}', lock_token => '00000000-0000-0000-0000-000000000001')$$);
SELECT session_err($$SELECT orchestrator.session_set('nothing', '{}', lock_token => '00000000-0000-0000-0000-000000000001')$$);
-- a lapsed lock is free for the next token; the old token no longer writes
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', '10 milliseconds') AS a_locks_briefly;
SELECT pg_sleep(0.05);
SELECT locked FROM orchestrator.session_read('cart:1');
SELECT orchestrator.session_set('cart:1', '{"after": "lapse"}') AS v_without_token;
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{}', lock_token => '00000000-0000-0000-0000-000000000001')$$);
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000002', '1 minute') AS b_locks;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000001') AS a_unlocks_lapsed;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000002') AS b_unlocks;
SELECT orchestrator.session_lock('nothing', '00000000-0000-0000-0000-000000000001', '1 minute') AS lock_absent;

-- list: by prefix, in byte order, at most max_keys, live keys only
SELECT key, version, expires_at IS NOT NULL AS expires FROM orchestrator.session_list('cart:');
SELECT key, version FROM orchestrator.session_list();
SELECT key FROM orchestrator.session_list('cart:', 2);
SELECT key FROM orchestrator.session_list('%');
SELECT orchestrator.session_set('50%_off', '1') AS v;
SELECT key FROM orchestrator.session_list('50%');
SELECT key FROM orchestrator.session_list('5_');

-- delete
SELECT orchestrator.session_delete('cart:2') AS deleted;
SELECT orchestrator.session_delete('cart:2') AS deleted_again;
SELECT orchestrator.session_get('cart:2') IS NULL AS gone;

-- bad input: specific SQLSTATE, message, detail, hint; nothing written
SELECT count(*) AS rows_before FROM orchestrator.session_list('', 10000);
SELECT session_err($$SELECT orchestrator.session_set(NULL, '{}')$$);
SELECT session_err($$SELECT orchestrator.session_set('', '{}')$$);
SELECT session_err(format($$SELECT orchestrator.session_set(%L, '{}')$$, repeat('k', 513)));
SELECT session_err(format($$SELECT orchestrator.session_set(%L, '{}')$$, repeat('é', 257)));
SELECT orchestrator.session_set(repeat('k', 512), '{"longest": true}') AS v_512_bytes;
SELECT orchestrator.session_delete(repeat('k', 512)) AS deleted;
SELECT session_err($$SELECT orchestrator.session_set('k', NULL)$$);
SELECT session_err($$SELECT orchestrator.session_set('k', '{}', ttl => '-1 second')$$);
SELECT session_err($$SELECT orchestrator.session_set('k', '{}', ttl => '0')$$);
SELECT session_err($$SELECT orchestrator.session_set('k', '{}', expected_version => -1)$$);
SELECT session_err($$SELECT orchestrator.session_create(NULL, '{}')$$);
SELECT session_err($$SELECT orchestrator.session_create('k', NULL)$$);
SELECT session_err($$SELECT orchestrator.session_create('k', '{}', '-5 minutes')$$);
SELECT session_err($$SELECT orchestrator.session_get(NULL)$$);
SELECT session_err($$SELECT orchestrator.session_get('')$$);
SELECT session_err($$SELECT * FROM orchestrator.session_read(NULL)$$);
SELECT session_err($$SELECT orchestrator.session_touch('cart:1', '-1 day')$$);
SELECT session_err($$SELECT orchestrator.session_touch(NULL, '1 day')$$);
SELECT session_err($$SELECT orchestrator.session_delete('')$$);
SELECT session_err($$SELECT * FROM orchestrator.session_list(NULL)$$);
SELECT session_err($$SELECT * FROM orchestrator.session_list('', 0)$$);
SELECT session_err($$SELECT * FROM orchestrator.session_list('', 10001)$$);
SELECT session_err($$SELECT orchestrator.session_lock('cart:1', NULL, '1 minute')$$);
SELECT session_err($$SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', NULL)$$);
SELECT session_err($$SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', '0 seconds')$$);
SELECT session_err($$SELECT orchestrator.session_unlock('cart:1', NULL)$$);
SELECT session_err($$SELECT orchestrator.session_unlock(NULL, '00000000-0000-0000-0000-000000000001')$$);
SELECT count(*) AS rows_after FROM orchestrator.session_list('', 10000);
SELECT locked FROM orchestrator.session_read('cart:1');

-- The same key in another role is another session; each role sees only its own.
SELECT orchestrator.session_set('shared-name', '"alice''s"') AS v;
RESET ROLE;
SET ROLE bob;
SELECT orchestrator.session_get('shared-name') IS NULL AS bob_sees_nothing;
SELECT orchestrator.session_create('shared-name', '"bob''s"') AS bob_creates_his_own;
SELECT orchestrator.session_get('shared-name') AS bob_reads_his;
-- bob cannot read, set, lock, touch, unlock, delete or list alice's keys
SELECT orchestrator.session_get('cart:1') IS NULL AS get_others;
SELECT count(*) AS read_others FROM orchestrator.session_read('cart:1');
SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-0000000000bb', '1 minute') AS lock_others;
SELECT orchestrator.session_touch('cart:1', '1 second') AS touch_others;
SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000001') AS unlock_others;
SELECT orchestrator.session_delete('cart:1') AS delete_others;
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{}', expected_version => 5)$$);
SELECT key FROM orchestrator.session_list();
SELECT owner, key FROM orchestrator.sessions ORDER BY key;
-- the tables and internal functions are closed
SELECT session_err($$SELECT * FROM orchestrator.session_store$$);
SELECT session_err($$SELECT orchestrator._api_session_get('cart:1')$$);
SELECT session_err($$SELECT orchestrator._session_notify('alice', 'set', 'cart:1', 1)$$);
SELECT session_err($$SELECT orchestrator._api_session_channel()$$);
SELECT session_err($$SELECT orchestrator._session_purge(10)$$);
-- each role has its own channel, a keyed hash: not derived from the role's name or OID
SELECT orchestrator.session_channel() AS bob_channel \gset
RESET ROLE;
SET ROLE alice;
SELECT orchestrator.session_channel() AS alice_channel \gset
SELECT :'alice_channel' <> :'bob_channel' AS channels_differ,
	   :'alice_channel' ~ '^orchestrator_session_[0-9a-f]{32}$' AS channel_form,
	   orchestrator.session_channel() = :'alice_channel' AS stable;
-- a SECURITY DEFINER function of bob's acts as bob: alice reaches bob's sessions only through it
RESET ROLE;
CREATE SCHEMA bobs AUTHORIZATION bob;
GRANT USAGE ON SCHEMA bobs TO alice;
SET ROLE bob;
CREATE FUNCTION bobs.bob_get(k text) RETURNS jsonb LANGUAGE sql SECURITY DEFINER AS $$ SELECT orchestrator.session_get(k) $$;
RESET ROLE;
SET ROLE alice;
SELECT bobs.bob_get('shared-name') AS through_bobs_function, orchestrator.session_get('shared-name') AS alices_own;
RESET ROLE;
DROP SCHEMA bobs CASCADE;

-- A role outside orchestrator_user cannot call anything.
SET ROLE mallory;
SELECT session_err($$SELECT orchestrator.session_get('cart:1')$$);
SELECT session_err($$SELECT orchestrator.session_set('cart:1', '{}')$$);
SELECT session_err($$SELECT orchestrator.session_channel()$$);
SELECT session_err($$SELECT * FROM orchestrator.sessions$$);
RESET ROLE;

-- Administrators list every role's sessions in the view (keys and state, no values);
-- their own session_list() shows their own keys only.
SET ROLE carol;
SELECT owner, key, version, locked, value_bytes > 0 AS has_value FROM orchestrator.sessions
WHERE owner IN ('alice'::regrole, 'bob'::regrole) ORDER BY owner::text, key;
SELECT count(*) AS carols_own FROM orchestrator.session_list();
SELECT session_err($$SELECT value FROM orchestrator.sessions$$);
RESET ROLE;

-- Sessions in a transaction: rolled back with it.
SET ROLE alice;
BEGIN;
SELECT orchestrator.session_set('rolled-back', '1') AS v;
ROLLBACK;
SELECT orchestrator.session_get('rolled-back') IS NULL AS rolled_back;
RESET ROLE;

-- maintain() purges expired sessions (and reports how many); live ones stay.
SET ROLE alice;
SELECT count(orchestrator.session_set('exp:' || i, '1', ttl => '10 milliseconds')) FROM generate_series(1, 25) i;
RESET ROLE;
SELECT pg_sleep(0.05);
SELECT count(*) AS expired_rows FROM orchestrator.session_store WHERE expires_at <= now();
SET ROLE carol;
SELECT (orchestrator.maintain()) -> 'sessions_purged' AS purged;
RESET ROLE;
SELECT count(*) AS expired_rows FROM orchestrator.session_store WHERE expires_at <= now();
SELECT count(*) AS alices_live FROM orchestrator.session_store WHERE owner = 'alice'::regrole;
-- bounded: at most max_runs per call
SET ROLE alice;
SELECT count(orchestrator.session_set('exp:' || i, '1', ttl => '10 milliseconds')) FROM generate_series(1, 5) i;
RESET ROLE;
SELECT pg_sleep(0.05);
SELECT orchestrator._session_purge(3) AS purged_3;
SELECT orchestrator._session_purge(3) AS purged_rest;

-- Built for churn: updates are HOT (no index on what changes).
SELECT reloptions FROM pg_class WHERE oid = 'orchestrator.session_store'::regclass;
SELECT indexrelid::regclass, indkey FROM pg_index WHERE indrelid = 'orchestrator.session_store'::regclass;

-- session_get() reads the row without a statement (an index probe in C):
-- values stored compressed or out of line come back whole; in a transaction
-- it sees the transaction's own writes, in a serializable one the rows it
-- read are tracked like a query's; the probe counts as an index scan.
SET ROLE alice;
SELECT orchestrator.session_set('big', (SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 5000) i)) AS v;
SELECT orchestrator.session_get('big') = (SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 5000) i) AS big_whole,
       jsonb_array_length(orchestrator.session_get('big')) AS big_len;
SELECT orchestrator.session_set('big', to_jsonb(repeat('x', 300000))) AS v;
SELECT length(orchestrator.session_get('big') #>> '{}') AS compressed_len;
BEGIN;
SELECT orchestrator.session_set('in-tx', '"first"') AS v;
SELECT orchestrator.session_get('in-tx') AS sees_own_write;
SELECT orchestrator.session_set('in-tx', '"second"') AS v;
SELECT orchestrator.session_get('in-tx') AS sees_own_update;
ROLLBACK;
SELECT orchestrator.session_get('in-tx') IS NULL AS rolled_back;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT orchestrator.session_get('cart:1') IS NOT NULL AS read_serializable;
SELECT count(*) > 0 AS predicate_locked FROM pg_locks
WHERE pid = pg_backend_pid() AND locktype IN ('page', 'tuple') AND mode = 'SIReadLock';
COMMIT;
RESET ROLE;
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS scans_before FROM pg_stat_user_indexes WHERE indexrelid = 'orchestrator.session_store_pkey'::regclass \gset
SET ROLE alice;
SELECT orchestrator.session_get('cart:1') IS NOT NULL AS got;
RESET ROLE;
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :scans_before AS probes_counted FROM pg_stat_user_indexes WHERE indexrelid = 'orchestrator.session_store_pkey'::regclass;
