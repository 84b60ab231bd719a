
# A lease is checked by the queue row's key.  In 0.1, _check_lease()
# (heartbeat_step, fail_step, complete_step) put the lease conditions in its
# WHERE clause, and the generic plan read the partial index of leased rows:
# every live lease, for each check.  auto_explain shows the plans of the
# statements inside the functions.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('lease_plan');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
log_min_messages = log
autovacuum = off
});
$node->start;

# The plans of one call, from the server log.
my $plans_of = sub {
	my ($sql) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', qq{
		LOAD 'auto_explain';
		SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_nested_statements = on;
		$sql});
	return slurp_file($node->logfile, $offset);
};

# A queue analyzed while nothing was leased (statistics lag behind, as
# between two runs of autovacuum), then 2,000 leases taken by one worker
# and one by us.
my $setup = q{
	SELECT orchestrator.define_workflow('leased', '{"steps": [{"name": "a", "kind": "external", "queue": "q"}]}');
	SELECT count(orchestrator.start_workflow('leased')) FROM generate_series(1, 2001);
	ANALYZE orchestrator.work_queue;
	SELECT count(*) FROM orchestrator.claim_steps('q', 'holder', 1000);
	SELECT count(*) FROM orchestrator.claim_steps('q', 'holder', 1000);
	CREATE TABLE mine AS SELECT * FROM orchestrator.claim_steps('q', 'me', 1);
};
my $heartbeat = 'SELECT orchestrator.heartbeat_step(run_id, step, lease_token) FROM mine';

# (0.1's plan read work_queue_leased here.  The library no longer serves
# older schemas, so only the current one is checked.)
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');
$node->safe_psql('postgres', $setup);
my $log = $plans_of->($heartbeat);
like($log, qr/Index Scan using work_queue_pkey on work_queue/, 'current: the lease check finds the row by key');
unlike($log, qr/work_queue_leased/, 'current: no read of the leased rows');
is($node->safe_psql('postgres', $heartbeat), 't', 'and the lease is still valid');

# complete_step (C): the lease check and the dequeue are one DELETE by key.
$log = $plans_of->('SELECT orchestrator.complete_step(run_id, step, lease_token, NULL) FROM mine');
unlike($log, qr/work_queue_leased/, 'complete_step does not read the leased rows either');
is($node->safe_psql('postgres', "SELECT status FROM orchestrator.workflow_steps WHERE run_id = (SELECT run_id FROM mine)"),
	'succeeded', 'the step completed');

$node->stop;
done_testing();
