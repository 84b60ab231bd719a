\set SHOW_CONTEXT never
-- Event sequence numbers: a run's history is numbered 1, 2, 3, ... with no
-- gap and no repeat, whichever transaction appends.  The next number comes
-- from what the transaction appended to the run, from the run's slot in
-- shared memory (the last committed appender's, src/seq_cache.c), or from
-- the history itself; subtransactions and transactions that roll back take
-- their numbers with them.

SET ROLE alice;
SELECT orchestrator.define_workflow('numbered', '{"steps": [{"name": "crunch", "kind": "external", "queue": "q_numbered"}]}') AS v;
SELECT orchestrator.start_workflow('numbered') AS nrun \gset
SELECT run_id AS nrun, lease_token AS ntoken FROM orchestrator.claim_steps('q_numbered', 'w1', 1, '1 minute') \gset

-- In one transaction: a savepoint rolled back takes its event's number with
-- it; one released keeps it.
BEGIN;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 1}') AS kept;
SAVEPOINT s;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 2}') AS undone;
SAVEPOINT inner_s;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 3}') AS undone_inner;
RELEASE SAVEPOINT inner_s;
ROLLBACK TO SAVEPOINT s;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 4}') AS after_rollback;
SAVEPOINT t;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 5}') AS in_savepoint;
RELEASE SAVEPOINT t;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 6}') AS after_release;
COMMIT;
-- A transaction that rolled back: the next one takes the same number.
BEGIN;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 7}') AS rolled_back;
ROLLBACK;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 8}') AS next_transaction;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 9}') AS and_the_next;
SELECT seq, type, data FROM orchestrator.events(:'nrun') ORDER BY seq;
RESET ROLE;

-- A row written into the history by hand (a superuser's INSERT, not the
-- engine) leaves the run's slot behind: the next append fails on the
-- primary key, nothing of it is written, and the failure forgets the slot,
-- so the one after reads the history and follows the hand-written row.
INSERT INTO orchestrator.workflow_events (run_id, seq, at, type, data)
SELECT :'nrun', max(seq) + 1, now(), 'note.by_hand', '{}' FROM orchestrator.workflow_events WHERE run_id = :'nrun';
SET ROLE alice;
SELECT left(try(format('SELECT orchestrator.heartbeat_step(%L, %L, %L, NULL, %L)', :'nrun', 'crunch', :'ntoken', '{"done": 10}')), 5) AS stale_slot;
SELECT orchestrator.heartbeat_step(:'nrun', 'crunch', :'ntoken', NULL, '{"done": 11}') AS after_the_failure;
SELECT orchestrator.complete_step(:'nrun', 'crunch', :'ntoken', '{"answer": 42}') AS completed;
RESET ROLE;
SELECT seq, type, step, data FROM orchestrator.workflow_events WHERE run_id = :'nrun' AND seq >= 10 ORDER BY seq;
SELECT count(*) = max(seq) AS no_gap, count(DISTINCT seq) = count(*) AS no_repeat
FROM orchestrator.workflow_events WHERE run_id = :'nrun';
