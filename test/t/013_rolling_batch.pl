
# A dispatcher's rolling batch (orchestrator.batch_window): a sql step made
# ready while the dispatcher is inside a batch is claimed and started in
# that same transaction when the batch is younger than the window (before,
# it waited for the batch to commit; and a claim comparing available_at
# with the transaction's start time could not see it at all); a batch
# older than the window commits first; batch_window = 0 claims once per
# transaction.  One dispatcher, so that the same one takes both runs.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rolling');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.workers = 1
orchestrator.poll_interval = 200
orchestrator.batch_window = 10000
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('slow', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT pg_sleep(2)"}]}');
SELECT orchestrator.define_workflow('quick', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
});

# Starts 'slow', waits until the dispatcher runs its step, starts 'quick'
# meanwhile, and returns whether quick's step started in the transaction
# that ran slow's step.
sub quick_joins_slow_batch
{
	my $slow = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('slow')");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM orchestrator._worker_status() WHERE run_id = '$slow' AND step = 'a'"),
		'the dispatcher runs the slow step');
	my $quick = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('quick')");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 2 FROM orchestrator.runs WHERE id IN ('$slow', '$quick') AND status = 'succeeded'"),
		'both runs succeed');
	return $node->safe_psql(
		'postgres', qq{
SELECT q.xmin = s.xmin
FROM orchestrator.workflow_events q, orchestrator.workflow_events s
WHERE q.run_id = '$quick' AND q.type = 'step.started'
  AND s.run_id = '$slow' AND s.type = 'step.succeeded'});
}

is(quick_joins_slow_batch(), 't',
	'work made ready during a batch within batch_window starts in that batch');

$node->safe_psql('postgres', "ALTER SYSTEM SET orchestrator.batch_window = '500ms'");
$node->reload;
sleep 1;	# the dispatcher reloads between turns (poll_interval 200ms)
is(quick_joins_slow_batch(), 'f', 'a batch older than batch_window commits before it claims again');

$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.batch_window = 0');
$node->reload;
sleep 1;
is(quick_joins_slow_batch(), 'f', 'batch_window 0: one claim per transaction');

$node->stop;
done_testing();
