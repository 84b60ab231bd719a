
# The dispatchers as processes: the launcher keeps orchestrator.workers of
# them running, follows a change of the setting on reload (SIGHUP), replaces
# one that is terminated, and a fast shutdown in the middle of work loses
# nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('workers');
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
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

my $count_dispatchers =
  "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'";

ok($node->poll_query_until('postgres', $count_dispatchers, '2'),
	'two dispatchers by default, visible in pg_stat_activity');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orchestrator._worker_status()'),
	'2', 'and in shared memory');

# Grow and shrink on reload.
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 4');
$node->reload;
ok($node->poll_query_until('postgres', $count_dispatchers, '4'), 'reload to 4 workers starts two more');
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 1');
$node->reload;
ok($node->poll_query_until('postgres', $count_dispatchers, '1'), 'reload to 1 worker stops three');

# A terminated dispatcher (SIGTERM) is replaced.
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 AND bool_and(pid <> $pid) FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'"
	),
	'a terminated dispatcher is replaced');

# With 0 workers nothing runs; with workers back, everything does.
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 0');
$node->reload;
ok($node->poll_query_until('postgres', $count_dispatchers, '0'), 'orchestrator.workers = 0 stops them all');
$node->safe_psql(
	'postgres', q{
CREATE TABLE side (run_id uuid NOT NULL, n int NOT NULL);
SELECT orchestrator.define_workflow('pair', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "INSERT INTO side VALUES (($1 #>> '{}')::uuid, 1)", "args": [{"$path": "$.run.id"}]},
  {"name": "b", "kind": "sql", "sql": "INSERT INTO side VALUES (($1 #>> '{}')::uuid, 2)", "args": [{"$path": "$.run.id"}],
   "depends_on": ["a"]}]}
$$);
SELECT count(orchestrator.start_workflow('pair')) FROM generate_series(1, 500);
});
sleep 1;
is($node->safe_psql('postgres', 'SELECT count(*) FROM side'), '0', 'no dispatcher, no sql step');

# Workers back, then a fast shutdown in the middle of the work.
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 2');
$node->reload;
ok($node->poll_query_until('postgres', 'SELECT count(*) > 0 FROM side'), 'work resumes when workers return');
$node->stop('fast');
$node->start;
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) FROM orchestrator.runs WHERE status <> 'succeeded'", '0'),
	'every run finishes after a fast shutdown');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT (run_id, n)) FROM side'),
	'1000|1000', 'each sql step took effect exactly once');

$node->stop;
done_testing();
