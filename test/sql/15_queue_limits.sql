\set SHOW_CONTEXT never
-- set_queue_limit(queue, max_running): claim_steps() never hands out more
-- than max_running leased steps of the queue at once.  (Concurrent claims:
-- test/isolation/specs/queue_limit.spec.)

SET ROLE alice;
SELECT orchestrator.define_workflow('limited', '{"steps": [{"name": "a", "kind": "external", "queue": "q_limit", "retry": {"max_attempts": 5, "backoff": "0 seconds"}}]}') AS v;
SELECT count(orchestrator.start_workflow('limited', jsonb_build_object('i', i))) AS started FROM generate_series(1, 6) i;
RESET ROLE;

-- Only admins set limits (a queue is shared by every workflow naming it).
SET ROLE alice;
SELECT try($$SELECT orchestrator.set_queue_limit('q_limit', 1)$$) AS user_sets_limit;
SELECT try($$SELECT orchestrator._api_set_queue_limit('q_limit', 1)$$) AS implementation_direct;
SELECT try($$SELECT * FROM orchestrator.queue_limits$$) AS user_reads_limits;
RESET ROLE;
SET ROLE mallory;
SELECT try($$SELECT orchestrator.set_queue_limit('q_limit', 1)$$) AS mallory_sets_limit;
RESET ROLE;
SET ROLE carol;
SELECT orchestrator.set_queue_limit('q_limit', 2);
SELECT queue, max_running, set_by, claimed_at IS NULL AS never_claimed FROM orchestrator.queue_limits;
RESET ROLE;

-- Claims: at most two leased at once, however many are asked for.
SET ROLE alice;
CREATE TEMP TABLE leases AS SELECT run_id, step, lease_token FROM orchestrator.claim_steps('q_limit', 'w1', 10);
SELECT count(*) AS first_claim FROM leases;
SELECT count(*) AS claim_at_limit FROM orchestrator.claim_steps('q_limit', 'w2', 10);
-- A completed step frees its slot.
SELECT orchestrator.complete_step(run_id, step, lease_token, '{}') AS completed FROM leases ORDER BY run_id LIMIT 1;
DELETE FROM leases WHERE run_id = (SELECT min(run_id::text)::uuid FROM leases);
INSERT INTO leases SELECT run_id, step, lease_token FROM orchestrator.claim_steps('q_limit', 'w2', 10);
SELECT count(*) AS leased_now FROM leases;
-- A failed attempt (retried later) frees its slot.
SELECT orchestrator.fail_step(run_id, step, lease_token, '{"message": "busy"}') AS failed FROM leases ORDER BY run_id LIMIT 1;
DELETE FROM leases WHERE run_id = (SELECT min(run_id::text)::uuid FROM leases);
INSERT INTO leases SELECT run_id, step, lease_token FROM orchestrator.claim_steps('q_limit', 'w3', 10);
SELECT count(*) AS leased_after_fail FROM leases;
SELECT count(*) AS over_limit FROM orchestrator.claim_steps('q_limit', 'w3', 10);
RESET ROLE;
-- Admins are bound by it too.
SET ROLE carol;
SELECT count(*) AS admin_over_limit FROM orchestrator.claim_steps('q_limit', 'w-admin', 10);
RESET ROLE;

-- An expired lease frees its slot (the step is retried later).
UPDATE orchestrator.work_queue SET available_at = now() - interval '1 second'
	WHERE queue = 'q_limit' AND lease_token IS NOT NULL AND run_id = (SELECT min(run_id::text)::uuid FROM pg_temp.leases);
-- The claim that meets the expired lease handles it (the attempt is lost
-- and retried, here at once) in the slot it was given; the next claim has
-- the slot.
SET ROLE alice;
SELECT count(*) AS meets_expiry FROM orchestrator.claim_steps('q_limit', 'w4', 10);
SELECT count(*) AS after_expiry FROM orchestrator.claim_steps('q_limit', 'w4', 10);
SELECT count(*) AS over_limit_again FROM orchestrator.claim_steps('q_limit', 'w4', 10);
RESET ROLE;
SELECT count(*) AS live_leases FROM orchestrator.work_queue WHERE queue = 'q_limit' AND lease_token IS NOT NULL AND available_at > now();

-- Raising the limit lets more out; 0 pauses the queue; NULL removes it.
SET ROLE carol;
SELECT orchestrator.set_queue_limit('q_limit', 3);
RESET ROLE;
SET ROLE alice;
SELECT count(*) AS after_raise FROM orchestrator.claim_steps('q_limit', 'w5', 10);
RESET ROLE;
SET ROLE carol;
SELECT orchestrator.set_queue_limit('q_limit', 0);
RESET ROLE;
SELECT count(*) AS paused FROM orchestrator.claim_steps('q_limit', 'w6', 10);
SET ROLE carol;
SELECT orchestrator.set_queue_limit('q_limit', NULL);
SELECT count(*) AS limits_left FROM orchestrator.queue_limits;
SELECT orchestrator.set_queue_limit('q_limit', NULL) AS removing_again;
RESET ROLE;
SELECT count(*) > 0 AS unlimited_again FROM orchestrator.claim_steps('q_limit', 'w7', 10);

-- Bad input: a specific SQLSTATE, nothing written.
SET ROLE carol;
SELECT try($$SELECT orchestrator.set_queue_limit(NULL, 1)$$) AS null_queue;
SELECT try($$SELECT orchestrator.set_queue_limit('', 1)$$) AS empty_queue;
SELECT try($$SELECT orchestrator.set_queue_limit('@sql', 1)$$) AS internal_queue;
SELECT try($$SELECT orchestrator.set_queue_limit('a b', 1)$$) AS bad_queue;
SELECT try($$SELECT orchestrator.set_queue_limit('q', -1)$$) AS negative;
SELECT try($$SELECT orchestrator.set_queue_limit('q', 1000001)$$) AS too_many;
SELECT count(*) AS nothing_written FROM orchestrator.queue_limits;
RESET ROLE;

-- Cleanup
SET ROLE alice;
SELECT count(orchestrator.cancel_workflow(id)) AS cancelled FROM orchestrator.runs WHERE name = 'limited' AND status IN ('pending', 'running');
RESET ROLE;
