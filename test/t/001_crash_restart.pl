
# Copyright and license: see the top-level README.
#
# Crash and restart tests for orchestrator:
#   1. sql steps run exactly once across an immediate shutdown and a killed
#      (SIGKILL) dispatcher, which makes the postmaster reinitialize (the
#      step that dispatcher was running counts one failed attempt);
#   2. a non-superuser's sql step cannot escalate privileges;
#   3. sleep and wait steps survive a restart;
#   4. an external step whose worker dies holding a lease is retried once the
#      lease expires.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.poll_interval = 200
max_worker_processes = 16
log_min_messages = warning
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

# Wait until both dispatchers are connected (they start after the launcher).
sub wait_for_dispatchers
{
	my ($n) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'"
	) or die "dispatchers did not start";
}

# Poll with a bounded timeout (seconds, roughly: each try sleeps 0.1 s).
sub poll_until
{
	my ($query, $expected, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 120;
	return $node->poll_query_until('postgres', $query, $expected);
}

my $active = "status IN ('pending', 'running', 'compensating')";

###########################################################################
# 1. Exactly once across an immediate restart and a killed dispatcher.
###########################################################################

$node->safe_psql(
	'postgres', q{
CREATE TABLE side (run_id uuid NOT NULL, step text NOT NULL);
-- Each step sleeps 3 ms so that the crashes below land in the middle of
-- the work however fast the dispatchers are.
SELECT orchestrator.define_workflow('chain', $$
{"steps": [
  {"name": "s1", "kind": "sql", "sql": "INSERT INTO side SELECT ($1 #>> '{}')::uuid, 's1' FROM pg_sleep(0.003)",
   "args": [{"$path": "$.run.id"}]},
  {"name": "s2", "kind": "sql", "depends_on": ["s1"], "sql": "INSERT INTO side SELECT ($1 #>> '{}')::uuid, 's2' FROM pg_sleep(0.003)",
   "args": [{"$path": "$.run.id"}]},
  {"name": "s3", "kind": "sql", "depends_on": ["s2"], "sql": "INSERT INTO side SELECT ($1 #>> '{}')::uuid, 's3' FROM pg_sleep(0.003)",
   "args": [{"$path": "$.run.id"}]}
 ]}
$$);
});

wait_for_dispatchers(2);

my $t0 = time;
$node->safe_psql('postgres',
	"SELECT count(orchestrator.start_workflow('chain', jsonb_build_object('i', i))) FROM generate_series(1, 1000) i"
);
note sprintf("started 1000 runs in %.1f s", time - $t0);

# Let some runs finish, then crash the whole server.
ok(poll_until("SELECT count(*) >= 50 FROM orchestrator.runs WHERE name = 'chain' AND status = 'succeeded'"),
	'some runs finished before the immediate shutdown');
my $done_before = $node->safe_psql('postgres',
	"SELECT count(*) FROM orchestrator.runs WHERE name = 'chain' AND status = 'succeeded'");
note "succeeded before immediate shutdown: $done_before";
$node->stop('immediate');
$node->start;
wait_for_dispatchers(1);

# Let more finish, then SIGKILL a dispatcher: the postmaster treats it as a
# crash, kills every backend, recovers and starts the workers again.
my $done_after_restart = $node->safe_psql('postgres',
	"SELECT count(*) FROM orchestrator.runs WHERE name = 'chain' AND status = 'succeeded'");
note "succeeded after restart: $done_after_restart";
cmp_ok($done_after_restart, '>=', $done_before,
	'no finished run was lost in the immediate shutdown');
poll_until(
	"SELECT count(*) >= least($done_after_restart + 100, 900) FROM orchestrator.runs WHERE name = 'chain' AND status = 'succeeded'"
);
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%' LIMIT 1"
);
like($pid, qr/^\d+$/, 'found a dispatcher to kill');
my $done_before_kill = $node->safe_psql('postgres',
	"SELECT count(*) FROM orchestrator.runs WHERE name = 'chain' AND status = 'succeeded'");
note "succeeded before kill -9 of dispatcher $pid: $done_before_kill";
cmp_ok($done_before_kill, '<', 1000, 'runs were still to do when the dispatcher was killed');
is(kill('KILL', $pid), 1, 'sent SIGKILL to a dispatcher');

# Wait for crash recovery (connections fail meanwhile) and for every run.
ok( poll_until(
		"SELECT count(*) = 0 FROM orchestrator.runs WHERE name = 'chain' AND $active",
		't', 120),
	'all runs finished after the crashes');
note sprintf("1000 runs finished %.1f s after they were started", time - $t0);

is( $node->safe_psql(
		'postgres',
		"SELECT status, count(*) FROM orchestrator.runs WHERE name = 'chain' GROUP BY status ORDER BY status"
	),
	'succeeded|1000',
	'all 1000 runs succeeded');
is( $node->safe_psql(
		'postgres', 'SELECT count(*), count(DISTINCT (run_id, step)) FROM side'),
	'3000|3000',
	'every sql step ran exactly once');
# The immediate shutdown counts no attempt; the killed dispatcher's journal
# names the step it was handling, whose attempt counts as failed.
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.run_steps s
WHERE s.workflow = 'chain' AND (s.status <> 'succeeded' OR s.attempt > 2)}),
	'0',
	'every step succeeded, none after more than 2 attempts');
cmp_ok(
	$node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.run_steps s WHERE s.workflow = 'chain' AND s.attempt = 2}),
	'<=', 1,
	'at most the step of the killed dispatcher took a second attempt');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.run_steps s
WHERE s.workflow = 'chain' AND s.attempt = 2 AND NOT EXISTS (
  SELECT 1 FROM orchestrator.events(s.run_id) e WHERE e.type = 'step.retrying' AND e.step = s.step
    AND e.data -> 'error' ->> 'message' = 'the dispatcher process died while running this step')}),
	'0',
	'a second attempt is explained by the death of the dispatcher');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM side x
WHERE NOT EXISTS (SELECT 1 FROM orchestrator.runs r WHERE r.id = x.run_id AND r.name = 'chain')}),
	'0',
	'side effects belong to the runs');
ok( $node->log_contains('terminated by signal 9'),
	'the server log shows the killed dispatcher');

###########################################################################
# 2. A non-superuser's sql step runs with its own privileges.
###########################################################################

wait_for_dispatchers(1);
$node->safe_psql('postgres', 'CREATE ROLE u LOGIN IN ROLE orchestrator_user');
$node->safe_psql(
	'postgres', q{
SET ROLE u;
SELECT orchestrator.define_workflow('escalate',
  '{"steps": [{"name": "s", "kind": "sql", "sql": "CREATE ROLE x SUPERUSER", "retry": {"max_attempts": 1}}]}');
});
my $r2 = $node->safe_psql('postgres',
	"SET ROLE u; SELECT orchestrator.start_workflow('escalate')");
ok(poll_until("SELECT status = 'failed' FROM orchestrator.runs WHERE id = '$r2'", 't', 60),
	'escalating run failed');
is( $node->safe_psql(
		'postgres',
		"SELECT error -> 'error' ->> 'sqlstate' FROM orchestrator.runs WHERE id = '$r2'"),
	'42501',
	'with insufficient_privilege');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_roles WHERE rolname = 'x'"),
	'0', 'role x was not created');
is($node->safe_psql('postgres', "SELECT owner FROM orchestrator.runs WHERE id = '$r2'"),
	'u', 'the run is owned by u');

###########################################################################
# 3. Timers and waits survive a restart.
###########################################################################

$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('nap', '{"steps": [{"name": "z", "kind": "sleep", "duration": "3 seconds"}]}');
SELECT orchestrator.define_workflow('hold', '{"steps": [{"name": "w", "kind": "wait", "signal": "go"}]}');
});
my $r_sleep = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('nap')");
my $r_wait  = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('hold')");
ok( poll_until(
		"SELECT count(*) = 2 FROM orchestrator.run_steps WHERE run_id IN ('$r_sleep', '$r_wait') AND status = 'running'",
		't', 30),
	'sleep and wait steps are running');
$node->restart;
# The sleep may be over already if the restart took more than 3 seconds.
like( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY step) FROM orchestrator.run_steps WHERE run_id IN ('$r_sleep', '$r_wait')"
	),
	qr/^running,(running|succeeded)$/,
	'the wait step (w) and the sleep step (z) survived the restart');
is( $node->safe_psql(
		'postgres', "SELECT orchestrator.signal_workflow('$r_wait', 'go', '{\"who\": \"tap\"}')"),
	't',
	'signal accepted after the restart');
ok( poll_until(
		"SELECT count(*) = 0 FROM orchestrator.runs WHERE id IN ('$r_sleep', '$r_wait') AND $active",
		't', 60),
	'sleep and wait runs finished');
is( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY name) FROM orchestrator.runs WHERE id IN ('$r_sleep', '$r_wait')"
	),
	'succeeded,succeeded',
	'both runs succeeded');
is( $node->safe_psql('postgres',
		"SELECT finished_at - started_at >= interval '3 seconds' FROM orchestrator.run_steps WHERE run_id = '$r_sleep'"
	),
	't',
	'the sleep lasted at least 3 seconds');
is( $node->safe_psql('postgres',
		"SELECT result ->> 'who' FROM orchestrator.run_steps WHERE run_id = '$r_wait'"),
	'tap',
	'the wait step got the signal payload');

###########################################################################
# 4. An external step whose worker died holding a lease is retried.
###########################################################################

$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('leased',
  '{"steps": [{"name": "e", "kind": "external", "queue": "q_lease",
               "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}');
});
my $r4 = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('leased')");
is( $node->safe_psql('postgres',
		"SELECT run_id = '$r4' AND attempt = 1 FROM orchestrator.claim_steps('q_lease', 'doomed', 1, '1 second')"
	),
	't',
	'first claim, attempt 1, 1 second lease');
# The worker "dies": it never heartbeats nor completes.
sleep 3;
ok( poll_until(
		"SELECT coalesce((SELECT attempt FROM orchestrator.claim_steps('q_lease', 'heir', 1, '1 minute')), 0)",
		'2', 30),
	'the step is claimed again with attempt 2 after the lease expired');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM orchestrator.events('$r4') WHERE type = 'step.retrying' AND step = 'e' AND data -> 'error' ->> 'message' = 'lease expired'"
	),
	'1',
	'events show a step.retrying with "lease expired"');
is( $node->safe_psql('postgres',
		"SELECT status || '/' || attempt || '/' || worker FROM orchestrator.run_steps WHERE run_id = '$r4'"
	),
	'running/2/heir',
	'the step now runs in the new worker');

$node->stop;
done_testing();
