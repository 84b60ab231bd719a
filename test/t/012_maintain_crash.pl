
# Copyright and license: see the top-level README.
#
# A crash in the middle of maintain(): it has deleted the expired runs of a
# rolled-up day and subtracted them from the roll-ups, and waits for the lock
# that retires an older day whole when the server goes down (immediate
# shutdown).  maintain() is one transaction: after the restart every run is
# there and the roll-ups are exactly as before the call (nothing subtracted
# twice or lost); the next maintain() does the work, and the analytics views
# then answer what a rebuild from scratch answers.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('maintain_crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

# Day -100: 40 runs, all expired (retired whole).  Day -99: 40 runs finishing
# from 03:05 every 5 minutes (a cutoff at 04:02:30 expires 12 of them).  Two
# owners' worth of groups: two tenants, two statuses, durations, tokens.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION at_(ago integer, t interval) RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT ((now() AT TIME ZONE 'UTC')::date - ago)::timestamp AT TIME ZONE 'UTC' + t $$;
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 100, 2);
CREATE TABLE gen AS
SELECT ago, i, orchestrator.uuid_v7_boundary(at_(ago, interval '2 hours' + i * interval '1 second')) AS id,
	   at_(ago, interval '2 hours' + i * interval '1 second') AS created,
	   at_(ago, interval '3 hours' + i * interval '5 minutes') AS done
FROM generate_series(99, 100) ago, generate_series(1, 40) i;
INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at, started_at, finished_at, cost)
SELECT id, 'crash_wf', 1, CASE WHEN i % 4 = 0 THEN 'failed' ELSE 'succeeded' END, 't' || i % 2, 'postgres', 'postgres', '{}',
	   created, created, done, i / 100.0
FROM gen;
INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, result, error, started_at, finished_at)
SELECT id, 'work', 0, 'external', CASE WHEN i % 4 = 0 THEN 'dead' ELSE 'succeeded' END, 0,
	   jsonb_build_object('tokens', i), CASE WHEN i % 4 = 0 THEN jsonb_build_object('message', 'no') END,
	   created + (i % 3) * interval '1 second', done
FROM gen;
DROP TABLE gen;
});

# Roll up every closed day from day -100 on.
my $roll_up_all = q{
DO $$
BEGIN
	PERFORM set_config('orchestrator.retention', '1000d', true);
	PERFORM orchestrator.rebuild_stats((now() AT TIME ZONE 'UTC')::date - 100);
	WHILE jsonb_array_length(orchestrator.maintain() -> 'stats_days_rolled_up') = 7 LOOP
	END LOOP;
END $$;
};
$node->safe_psql('postgres', $roll_up_all);

my $rollups = q{
SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
	SELECT t::text AS x FROM orchestrator.run_stats_daily t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.step_error_stats_daily t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.throughput_stats t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.step_duration_stats_daily t WHERE t.workflow = 'crash_wf') s
};
my $views = q{
SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
	SELECT t::text AS x FROM orchestrator.runs_per_day t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.step_durations t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.error_rates t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.step_errors t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.throughput t WHERE t.workflow = 'crash_wf'
	UNION ALL SELECT t::text FROM orchestrator.costs_per_day t WHERE t.workflow = 'crash_wf') s
};
my $runs = q{SELECT count(*) FROM orchestrator.workflow_runs WHERE name = 'crash_wf'};
# The cutoff falls between the runs finishing at 04:00 and 04:05 (retention is
# whole seconds: a cutoff at 04:00 itself kept the 04:00 run or not depending
# on how the fraction of a second rounded).
my $retention = q{SELECT set_config('orchestrator.retention',
	extract(epoch FROM now() - (((now() AT TIME ZONE 'UTC')::date - 99)::timestamp AT TIME ZONE 'UTC' + interval '4 hours 150 seconds'))::bigint || 's', false)};

my $rollups_before = $node->safe_psql('postgres', $rollups);
my $runs_before = $node->safe_psql('postgres', $runs);
is($runs_before, '80', 'history made');

# A reader holds the runs table: retiring day -100 whole waits for it, after
# the expired runs of day -99 were deleted and subtracted.
my $reader = $node->background_psql('postgres', on_error_stop => 0);
$reader->query_safe('BEGIN');
$reader->query_safe('SELECT count(*) FROM orchestrator.workflow_runs');
my $maint = $node->background_psql('postgres', on_error_stop => 0);
$maint->query_safe($retention);
$maint->query_until(qr/started/, "\\echo started\nSELECT orchestrator.maintain();\n");
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
WHERE query LIKE 'SELECT orchestrator.maintain()%' AND wait_event_type = 'Lock'}),
	'maintain() waits for the lock of the whole-day retirement');
my $maint_pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT orchestrator.maintain()%'});
# It has subtracted from the roll-ups (nothing else in this call writes to
# run_stats_daily before the lock it waits for).
is( $node->safe_psql('postgres',
		qq{SELECT count(*) FROM pg_locks WHERE pid = $maint_pid AND relation = 'orchestrator.run_stats_daily'::regclass
		   AND mode = 'RowExclusiveLock' AND granted}),
	'1', 'maintain() has subtracted the expired runs of day -99');

$node->stop('immediate');
$maint->{run}->kill_kill;
$reader->{run}->kill_kill;
$node->start;

is($node->safe_psql('postgres', $runs), $runs_before, 'after the crash every run is there');
is($node->safe_psql('postgres', $rollups), $rollups_before,
	'after the crash the roll-ups are as before the call');

# The next call does the work: day -100 retired, day -99 subtracted.
my $result = $node->safe_psql('postgres', qq{
$retention;
SELECT r -> 'runs_deleted', jsonb_array_length(r -> 'partitions_retired'), jsonb_array_length(r -> 'stats_days_adjusted'),
	   jsonb_array_length(r -> 'stats_days_rebuilt')
FROM orchestrator.maintain() r});
like($result, qr/^12\|[1-9][0-9]*\|1\|0$/m, 'the next maintain() retires day -100 and subtracts 12 runs of day -99');
is($node->safe_psql('postgres', $runs), '28', 'the runs left');

my $views_after = $node->safe_psql('postgres', $views);
my $rollups_after = $node->safe_psql('postgres', $rollups);
$node->safe_psql('postgres', $roll_up_all);
is($node->safe_psql('postgres', $rollups), $rollups_after, 'roll-ups equal a rebuild from scratch');
is($node->safe_psql('postgres', $views), $views_after, 'views equal a rebuild from scratch');

$node->stop;
done_testing();
