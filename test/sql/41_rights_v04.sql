\set SHOW_CONTEXT never
-- Attacks of one ordinary role on another through what 0.3 and 0.4 added
-- (hostile review; docs/security.md).  Each block failed before its fix.
CREATE ROLE h_alice LOGIN IN ROLE orchestrator_user;
CREATE ROLE h_bob LOGIN IN ROLE orchestrator_user;
CREATE ROLE h_admin LOGIN IN ROLE orchestrator_admin;

-- 1. A cursor a sql step leaves open.  A dispatcher's batch runs the steps
-- of many owners in one transaction, each in a subtransaction: a cursor
-- h_alice's step declared stayed open for the steps after it, of h_bob, which
-- could FETCH rows read with h_alice's rights (or find the name taken).  The
-- step's cursors are closed when its statement ends.  _run_sql_step() is what
-- the dispatcher runs for each step, each in a subtransaction (the savepoints
-- here); several in one transaction are a batch.
CREATE FUNCTION h_open() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'h_ref'; BEGIN OPEN c FOR SELECT 1; RETURN c; END $$;
BEGIN;
-- a cursor of the batch's own, declared before, is not a step's to close
DECLARE mine CURSOR FOR SELECT 1;
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_alice'::regrole, 'DECLARE h_cur CURSOR FOR SELECT current_user AS declared_by', NULL, 0) AS alice_declares;
RELEASE step;
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_bob'::regrole, 'SELECT array_agg(name ORDER BY name) AS cursors FROM pg_cursors', NULL, 0) AS bob_sees;
RELEASE step;
SAVEPOINT step;
SELECT try($$SELECT orchestrator._run_sql_step('h_bob'::regrole, 'FETCH h_cur', NULL, 0)$$) AS bob_fetches;
RELEASE step;
-- the same for a cursor opened by a function and returned by name
SAVEPOINT step;
SELECT orchestrator._run_sql_step('h_alice'::regrole, 'SELECT public.h_open() AS opened', NULL, 0) AS alice_opens;
RELEASE step;
SELECT name FROM pg_cursors ORDER BY name;
COMMIT;
