# A dispatcher's memory stays within its bounds whatever users define.
#
# 300 distinct workflows, each a sql step of about 200 kB of text (a long
# comment: the definition keeps it, and so does the statement's plan), run
# once each by one dispatcher, with orchestrator.definition_cache_size and
# orchestrator.plan_cache_size at 2 MB.  Then:
#   1. each cache holds at most its bound, and evicted least recently used
#      entries to stay there;
#   2. the dispatcher's resident memory grew by far less than the 60 MB of
#      text it went through, twice (definitions and plans): under 24 MB, and
#      its memory contexts (pg_log_backend_memory_contexts) hold under 12 MB;
#   3. a lowered bound (reload) is applied at the next unit of work;
#   4. health() and metrics() report the figures.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

my $node = PostgreSQL::Test::Cluster->new('caches');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.workers = 1
orchestrator.poll_interval = 200
orchestrator.definition_cache_size = '2MB'
orchestrator.plan_cache_size = '2MB'
max_worker_processes = 16
log_min_messages = log
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

sub poll_until
{
	my ($query, $expected, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 180;
	return $node->poll_query_until('postgres', $query, $expected // 't');
}

poll_until("SELECT count(*) = 1 FROM orchestrator._worker_status()")
  or die "the dispatcher did not start";
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM orchestrator._worker_status()');

sub rss_kb
{
	open(my $fh, '<', "/proc/$pid/status") or die "no /proc/$pid/status: $!";
	while (<$fh>)
	{
		return $1 if /^VmRSS:\s+(\d+) kB/;
	}
	die "no VmRSS";
}

# Workflow i: one sql step, "SELECT i" after a 200 kB comment of its own.
$node->safe_psql(
	'postgres', q{
CREATE PROCEDURE define_big(first integer, last integer) LANGUAGE plpgsql AS $p$
BEGIN
	FOR i IN first .. last LOOP
		PERFORM orchestrator.define_workflow('big_' || i, jsonb_build_object('steps', jsonb_build_array(
			jsonb_build_object('name', 'a', 'kind', 'sql',
				'sql', '/* ' || i || ' ' || repeat(md5(i::text), 6250) || ' */ SELECT ' || i || ' AS n'))));
		COMMIT;
	END LOOP;
END
$p$;
CREATE PROCEDURE run_big(first integer, last integer) LANGUAGE plpgsql AS $p$
BEGIN
	FOR i IN first .. last LOOP
		PERFORM orchestrator.start_workflow('big_' || i);
		COMMIT;
	END LOOP;
END
$p$;
});

sub run_batch
{
	my ($first, $last) = @_;
	$node->safe_psql('postgres', "CALL define_big($first, $last)");
	$node->safe_psql('postgres', "CALL run_big($first, $last)");
	poll_until(
		"SELECT count(*) = 0 FROM orchestrator.runs WHERE name LIKE 'big\\_%' AND status NOT IN ('succeeded', 'failed')")
	  or die "runs did not finish";
}

# Warm up: the caches fill to their bounds.
run_batch(1, 40);
is($node->safe_psql('postgres', "SELECT count(*) FROM orchestrator.runs WHERE status = 'succeeded'"),
	'40', 'the first runs succeed');
my $rss_before = rss_kb();

run_batch(41, 300);
is($node->safe_psql('postgres', "SELECT count(*) FROM orchestrator.runs WHERE status = 'succeeded'"),
	'300', 'every run succeeds');
my $rss_after = rss_kb();

# the dispatcher reports its caches after a turn, at most once a second
sleep 2;
my $figures = $node->safe_psql('postgres',
	"SELECT cache || ' ' || entries || ' ' || bytes || ' ' || limit_bytes || ' ' || hits || ' ' || misses || ' ' || evictions"
	  . " FROM orchestrator._cache_status() ORDER BY cache");
note "caches (cache entries bytes limit hits misses evictions):\n$figures";
note "dispatcher VmRSS: $rss_before kB after 40 workflows, $rss_after kB after 300";

# The dispatcher's memory contexts, as it logs them (the "Grand total" line).
sub contexts_total
{
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	for (1 .. 100)
	{
		my $log = slurp_file($node->logfile, $offset);
		return $1 if $log =~ /Grand total: (\d+) bytes in/;
		Time::HiRes::usleep(100_000);
	}
	die "no memory context report of $pid";
}
my $contexts = contexts_total();
note "dispatcher memory contexts: $contexts bytes";

###########################################################################
# 1. Each cache within its bound, least recently used out.
###########################################################################

is( $node->safe_psql(
		'postgres', q{
SELECT cache, bytes <= limit_bytes, bytes > limit_bytes / 2, evictions > 0
FROM orchestrator._cache_status() WHERE cache IN ('definitions', 'sql_step_plans') ORDER BY cache}),
	"definitions|t|t|t\nsql_step_plans|t|t|t",
	'the definitions and the sql steps\' plans stay within 2 MB, evicting');

###########################################################################
# 2. The dispatcher's memory.
###########################################################################

cmp_ok($rss_after - $rss_before, '<', 24 * 1024,
	'the dispatcher grew by less than 24 MB over 260 workflows of 200 kB');
# its memory contexts: the two bounds (2 MB each) and what a dispatcher
# holds anyway (relcache, catcache, the engine's statements: about 4 MB);
# unbounded, the definitions alone hold 60 MB here
cmp_ok($contexts, '<', 12 * 1024 * 1024, 'the dispatcher\'s memory contexts hold less than 12 MB');

###########################################################################
# 3. A lowered bound applies at the next unit of work.
###########################################################################

$node->safe_psql('postgres',
	"ALTER SYSTEM SET orchestrator.definition_cache_size = '512kB'; SELECT pg_reload_conf()");
sleep 1;
run_batch(301, 305);
sleep 2;
is( $node->safe_psql(
		'postgres',
		"SELECT limit_bytes = 512 * 1024 AND bytes <= limit_bytes FROM orchestrator._cache_status() WHERE cache = 'definitions'"),
	't', 'after a reload the definitions shrink to the new bound');

###########################################################################
# 4. health() and metrics().
###########################################################################

is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(c ->> 'cache', ',' ORDER BY c ->> 'cache')
FROM jsonb_array_elements(orchestrator.health() -> 'caches') c
WHERE (c ->> 'hits')::bigint >= 0 AND (c ->> 'bytes')::bigint > 0}),
	'definitions,engine_plans,sql_step_plans', 'health() lists the dispatcher\'s caches');
like($node->safe_psql('postgres', 'SELECT orchestrator.metrics()'),
	qr/^orchestrator_cache_evictions_total\{slot="0",cache="definitions"\} [1-9]/m,
	'metrics() counts evictions');

$node->stop;
done_testing();
