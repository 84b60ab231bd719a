
# The first dispatcher vacuums work_queue itself while steps flow
# (src/queue_vacuum.c).  While another vacuum of the queue is under way (an
# autovacuum, here a session holding the same lock), it leaves the queue
# alone without a word: VACUUM (SKIP_LOCKED) used to log "WARNING: skipping
# vacuum of work_queue --- lock not available" every 2 seconds.  Once the
# lock is gone it vacuums again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('queue_vacuum');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
autovacuum = off
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION orchestrator;
	SELECT orchestrator.define_workflow('churn', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
});

my $vacuums = q{SELECT vacuum_count FROM pg_stat_user_tables
	WHERE schemaname = 'orchestrator' AND relname = 'work_queue'};
my $unfinished = q{SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL};

# Start 2,100 one-step runs (2,100 queue rows deleted) and wait for them.
my $churn = sub {
	$node->safe_psql('postgres', q{SELECT count(orchestrator.start_workflow('churn')) FROM generate_series(1, 2100)});
	$node->poll_query_until('postgres', $unfinished, '0') or die 'the runs did not finish';
};

# Another vacuum of the queue holds its lock throughout a churn.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe('LOCK TABLE orchestrator.work_queue IN SHARE UPDATE EXCLUSIVE MODE');
my $offset = -s $node->logfile;
my $before = $node->safe_psql('postgres', $vacuums);
$churn->();
# the first dispatcher looks at least once a second (poll_interval) once
# 2,000 rows went, at most every 2 seconds
sleep 4;
is($node->safe_psql('postgres', $vacuums), $before, 'no vacuum of the queue while another holds it');
unlike(slurp_file($node->logfile, $offset), qr/skipping vacuum of "work_queue"/,
	'and no warning about it in the server log');

# The lock gone, the next churn gets the queue vacuumed.
$holder->query_safe('COMMIT');
$holder->quit;
$churn->();
ok($node->poll_query_until('postgres', "SELECT ($vacuums) > $before"),
	'the dispatcher vacuums the queue again once the lock is gone');

$node->stop;
done_testing();
