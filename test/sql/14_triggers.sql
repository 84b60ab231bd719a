\set SHOW_CONTEXT never
-- start_workflow_trigger('<workflow>'): a run per row changed, with the row
-- as input, started as the role whose statement fired the trigger, in the
-- statement's transaction.

CREATE SCHEMA trig;
GRANT USAGE, CREATE ON SCHEMA trig TO alice, bob;
SET search_path = trig, public;

SET ROLE alice;
SELECT orchestrator.define_workflow('on_order', '{"steps": [{"name": "ship", "kind": "external", "queue": "trig_q"}]}') AS v;
CREATE TABLE alice_orders (id integer PRIMARY KEY, item text, qty integer);
CREATE TRIGGER start_on_order AFTER INSERT OR UPDATE OR DELETE ON alice_orders
	FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order');
INSERT INTO alice_orders VALUES (1, 'tea', 2), (2, 'cake', 1);
UPDATE alice_orders SET qty = 3 WHERE id = 1;
DELETE FROM alice_orders WHERE id = 2;
-- One run per row changed: the new row, the old one on DELETE.
SELECT started_by, input FROM orchestrator.runs WHERE name = 'on_order' ORDER BY id;
-- A failed statement starts nothing (the runs are in its transaction).
SELECT try($$INSERT INTO alice_orders VALUES (3, 'jam', 1), (3, 'jam', 1)$$) AS duplicate_row;
SELECT count(*) AS runs FROM orchestrator.runs WHERE name = 'on_order';
RESET ROLE;

-- BEFORE triggers keep the row (the trigger returns it).
SET ROLE alice;
CREATE TABLE alice_notes (id integer, body text);
CREATE TRIGGER start_before BEFORE INSERT OR DELETE ON alice_notes
	FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order');
INSERT INTO alice_notes VALUES (1, 'kept');
SELECT * FROM alice_notes;
DELETE FROM alice_notes;
SELECT count(*) AS deleted_rows_left FROM alice_notes;
DROP TABLE alice_notes;
RESET ROLE;

-- The run is started as the role whose statement fired the trigger, not
-- the table's (or the trigger's) owner: bob may write alice's table but
-- may not start her workflow, so his insert fails and writes nothing.
SET ROLE alice;
GRANT INSERT, SELECT ON alice_orders TO bob;
RESET ROLE;
SET ROLE bob;
SELECT try($$INSERT INTO alice_orders VALUES (10, 'coffee', 1)$$) AS bob_inserts;
RESET ROLE;
SELECT count(*) AS bob_row FROM alice_orders WHERE id = 10;
-- Granted "start", bob's insert starts a run as bob, which bob sees.
SET ROLE alice;
SELECT orchestrator.grant_workflow('on_order', 'bob');
RESET ROLE;
SET ROLE bob;
INSERT INTO alice_orders VALUES (10, 'coffee', 1);
SELECT started_by, owner, input FROM orchestrator.runs WHERE name = 'on_order';
RESET ROLE;
-- A role that reaches the table through a SECURITY DEFINER function acts
-- as that function's owner (alice here), as its other statements do.
SET ROLE alice;
SELECT orchestrator.revoke_workflow('on_order', 'bob');
CREATE FUNCTION alice_add_order(id integer) RETURNS void LANGUAGE sql SECURITY DEFINER
	SET search_path = trig AS $$ INSERT INTO alice_orders VALUES (id, 'via function', 1) $$;
GRANT EXECUTE ON FUNCTION alice_add_order(integer) TO bob;
RESET ROLE;
SET ROLE bob;
SELECT alice_add_order(11);
RESET ROLE;
SELECT started_by, input ->> 'item' AS item FROM orchestrator.runs WHERE name = 'on_order' AND input ->> 'id' = '11';

-- mallory (no orchestrator user) owns a table with the trigger: her
-- statements cannot start runs.
CREATE TABLE public.mallory_t (x integer);
ALTER TABLE public.mallory_t OWNER TO mallory;
SET ROLE mallory;
SELECT try($$CREATE TRIGGER t AFTER INSERT ON public.mallory_t FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order')$$) AS mallory_creates_trigger;
RESET ROLE;
-- (a superuser creates it for her table; firing it as mallory still fails)
CREATE TRIGGER t AFTER INSERT ON public.mallory_t FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order');
SET ROLE mallory;
SELECT try($$INSERT INTO public.mallory_t VALUES (1)$$) AS mallory_fires;
RESET ROLE;
DROP TABLE public.mallory_t;
-- Nobody calls it as a function, or calls its implementation.
SET ROLE bob;
SELECT try($$SELECT orchestrator.start_workflow_trigger()$$) AS called_directly;
SELECT try($$SELECT orchestrator._api_start_workflow_trigger()$$) AS implementation_directly;
RESET ROLE;

-- Misuse: clear errors, nothing written.
SET ROLE alice;
SELECT count(*) AS runs_before FROM orchestrator.runs WHERE name = 'on_order' \gset
CREATE TABLE alice_misuse (x integer);
CREATE TRIGGER per_statement AFTER INSERT ON alice_misuse
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order');
SELECT try($$INSERT INTO alice_misuse VALUES (1)$$) AS for_each_statement;
DROP TRIGGER per_statement ON alice_misuse;
CREATE TRIGGER on_truncate AFTER TRUNCATE ON alice_misuse
	FOR EACH STATEMENT EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order');
SELECT try($$TRUNCATE alice_misuse$$) AS truncate;
DROP TRIGGER on_truncate ON alice_misuse;
CREATE TRIGGER no_argument AFTER INSERT ON alice_misuse
	FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger();
SELECT try($$INSERT INTO alice_misuse VALUES (1)$$) AS no_argument;
DROP TRIGGER no_argument ON alice_misuse;
CREATE TRIGGER two_arguments AFTER INSERT ON alice_misuse
	FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('on_order', 'extra');
SELECT try($$INSERT INTO alice_misuse VALUES (1)$$) AS two_arguments;
DROP TRIGGER two_arguments ON alice_misuse;
CREATE TRIGGER unknown_workflow AFTER INSERT ON alice_misuse
	FOR EACH ROW EXECUTE FUNCTION orchestrator.start_workflow_trigger('no_such_workflow');
SELECT try($$INSERT INTO alice_misuse VALUES (1)$$) AS unknown_workflow;
DROP TRIGGER unknown_workflow ON alice_misuse;
SELECT count(*) AS rows_written FROM alice_misuse;
SELECT count(*) = :runs_before AS no_runs_started FROM orchestrator.runs WHERE name = 'on_order';
DROP TABLE alice_misuse;

-- Cleanup: cancel the runs (their external steps wait for nobody).
SELECT count(orchestrator.cancel_workflow(id)) AS cancelled FROM orchestrator.runs WHERE name = 'on_order' AND started_by::text = 'alice';
DROP TABLE alice_orders;
DROP FUNCTION alice_add_order(integer);
RESET ROLE;
SELECT count(orchestrator.cancel_workflow(id)) AS cancelled_bobs FROM orchestrator.runs WHERE name = 'on_order' AND status = 'pending';
DROP SCHEMA trig;
RESET search_path;
