
# Event sequence numbers under concurrent appends (src/seq_cache.c): eight
# clients append to the same four runs for a few seconds, each transaction
# appending to one run, then in a savepoint to another, rolled back, then
# again, while other clients start three-step sql runs that the two
# dispatchers run.  Each transaction takes its first number from the slot
# the last committed appender left, or from the history when that appender
# has not marked its slot yet; either way every run's history must stay
# numbered 1..n, with no gap and no repeat, and no append may fail.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('event_seq');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.workers = 2
max_worker_processes = 16
max_connections = 40
log_min_messages = warning
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('held', '{"steps": [{"name": "a", "kind": "external", "queue": "held"}]}');
SELECT orchestrator.define_workflow('noop3', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SELECT count(orchestrator.start_workflow('held')) FROM generate_series(1, 4);
CREATE TABLE leases AS
SELECT row_number() OVER (ORDER BY run_id) AS i, run_id, step, lease_token
FROM orchestrator.claim_steps('held', 'w', 4, '1 hour');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM leases'), '4', 'four steps held');

# Runs are locked in the order of i (r <= s), so the clients cannot deadlock.
$node->pgbench(
	'--no-vacuum --client=8 --jobs=4 --time=6',
	0,
	[qr{processed: [1-9]}, qr{number of failed transactions: 0}],
	[qr{^$}],
	'concurrent appends, with savepoints rolled back, and starts',
	{
		'016_heartbeats@9' => q{
\set r random(1, 4)
\set s random(:r, 4)
BEGIN;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, jsonb_build_object('r', :r)) FROM leases WHERE i = :r;
SAVEPOINT undone;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, jsonb_build_object('undone', :s)) FROM leases WHERE i = :s;
ROLLBACK TO SAVEPOINT undone;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, jsonb_build_object('s', :s)) FROM leases WHERE i = :s;
END;
},
		'016_starts@1' => q{
SELECT orchestrator.start_workflow('noop3');
}
	});

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM orchestrator.runs WHERE name = 'noop3' AND status <> 'succeeded'"),
	'every sql run succeeded');

is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (
	SELECT run_id FROM orchestrator.workflow_events
	GROUP BY run_id
	HAVING count(*) <> max(seq) OR count(DISTINCT seq) <> count(*)) x}),
	'0',
	'every run numbered 1..n: no gap, no repeat');
cmp_ok(
	$node->safe_psql(
		'postgres',
		"SELECT min(n) FROM (SELECT count(*) AS n FROM orchestrator.workflow_events e JOIN leases USING (run_id) GROUP BY run_id) x"
	),
	'>', 10,
	'each held run got many events');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM orchestrator.workflow_events WHERE data ? 'undone'"),
	'0',
	'nothing of the rolled-back savepoints is kept');

$node->stop;
done_testing();
