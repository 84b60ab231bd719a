
# Copyright and license: see the top-level README.
#
# A fan-out and a child run survive an immediate shutdown mid-way: element
# rows, the step's counts, leases held by a worker and the notice a child
# left for its parent's step (a queue row) are committed state, and the run
# finishes correctly afterwards.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('compose');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.poll_interval = 200
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('restart_child', '{"steps": [{"name": "hold", "kind": "wait", "signal": "go"}]}');
SELECT orchestrator.define_workflow('restart_parent', '{"steps": [
  {"name": "fan", "kind": "external", "queue": "tq", "for_each": {"$path": "$.input.items"}, "max_parallel": 2,
   "input": {"item": {"$path": "$.item"}}},
  {"name": "kid", "kind": "workflow", "workflow": "restart_child", "input": {"from": "parent"}}]}');
CREATE TABLE run (id uuid);
INSERT INTO run SELECT orchestrator.start_workflow('restart_parent', '{"items": ["a", "b", "c", "d"]}');
CREATE TABLE leases (step text, token uuid);
});

# the child starts (the dispatchers' timer pass)
$node->poll_query_until('postgres',
	q{SELECT status = 'running' FROM orchestrator.runs WHERE parent_id = (SELECT id FROM run)})
  or die 'the child run did not start';

# no dispatcher from here on: what follows is left for after the restart
$node->safe_psql('postgres', q{ALTER SYSTEM SET orchestrator.workers = 0; SELECT pg_reload_conf();});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'orchestrator dispatcher%'})
  or die 'dispatchers still running';

$node->safe_psql('postgres', q{
INSERT INTO leases SELECT step, lease_token FROM orchestrator.claim_steps('tq', 'w', 10);
SELECT orchestrator.complete_step((SELECT id FROM run), 'fan[0]', (SELECT token FROM leases WHERE step = 'fan[0]'), '{"r": "a"}');
SELECT orchestrator.signal_workflow((SELECT id FROM orchestrator.runs WHERE parent_id = (SELECT id FROM run)), 'go', '{"ok": 1}');
});
is($node->safe_psql('postgres', q{SELECT string_agg(step, ',' ORDER BY step) FROM leases}),
	'fan[0],fan[1]', 'two elements leased at once (max_parallel)');
is($node->safe_psql('postgres',
		q{SELECT string_agg(step || ':' || queue, ',' ORDER BY step) FROM orchestrator.work_queue WHERE run_id = (SELECT id FROM run)}),
	'fan[1]:tq,fan[2]:tq,kid:@timer',
	'mid-way: an element leased, the next one ready, the child\'s end waiting for its parent');

$node->safe_psql('postgres', q{ALTER SYSTEM RESET orchestrator.workers});
$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres',
		q{SELECT orchestrator.complete_step((SELECT id FROM run), 'fan[1]', (SELECT token FROM leases WHERE step = 'fan[1]'), '{"r": "b"}')}),
	't', 'a lease taken before the restart completes its element');
for my $i (2, 3)
{
	$node->poll_query_until('postgres', qq{
WITH c AS (SELECT * FROM orchestrator.claim_steps('tq', 'w', 1))
SELECT count(*) = 1 FROM c WHERE orchestrator.complete_step(c.run_id, c.step, c.lease_token, jsonb_build_object('r', c.input ->> 'item'))})
	  or die "element $i was not claimed";
}
$node->poll_query_until('postgres', q{SELECT status = 'succeeded' FROM orchestrator.runs WHERE id = (SELECT id FROM run)})
  or die 'the run did not finish';
is($node->safe_psql('postgres', q{SELECT result::text FROM orchestrator.runs WHERE id = (SELECT id FROM run)}),
	'{"fan": [{"r": "a"}, {"r": "b"}, {"r": "c"}, {"r": "d"}], "kid": {"hold": {"ok": 1}}}',
	'the fan-out and the child run finish with every result, in order');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM orchestrator.events((SELECT id FROM run)) WHERE type = 'workflow.child_finished'}),
	'1', 'the child\'s end reached its parent once');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orchestrator.work_queue}), '0', 'nothing is left queued');

$node->stop;
done_testing();
