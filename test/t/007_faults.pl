# Faults stay contained:
#   1. a sql step whose bookkeeping fails after its statement ran (its cost
#      overflows numeric(20,4)) fails its own attempts and ends dead, while
#      200 other runs and a sleep timer finish;
#   2. steps that catch their timeout's cancel in a loop are ended by the
#      watchdog: they end dead, the other runs finish, and cancel_workflow of
#      such a run returns within the step's timeout and the grace;
#   3. a step that terminates its own dispatcher, and one whose dispatcher is
#      killed (SIGKILL: the server reinitialises), are retried to death, not
#      for ever; an immediate shutdown counts no attempt;
#   4. health() turns not ready when the dispatchers' work waits too long
#      (no dispatcher running), and ready again when they come back.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('faults');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.poll_interval = 200
orchestrator.step_timeout_grace = 1000
max_worker_processes = 16
log_min_messages = warning
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

# Poll with a bounded timeout (seconds).
sub poll_until
{
	my ($query, $expected, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 120;
	return $node->poll_query_until('postgres', $query, $expected // 't');
}

sub wait_for_dispatchers
{
	poll_until("SELECT count(*) = 2 FROM orchestrator._worker_status()")
	  or die "dispatchers did not start";
}

my $active = "status IN ('pending', 'running', 'compensating')";

$node->safe_psql(
	'postgres', q{
CREATE TABLE side (run_id uuid NOT NULL);
SELECT orchestrator.define_workflow('normal', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "INSERT INTO side VALUES (($1 #>> '{}')::uuid)",
            "args": [{"$path": "$.run.id"}]}]}
$$);
SELECT orchestrator.define_workflow('nap', '{"steps": [{"name": "z", "kind": "sleep", "duration": "1 second"}]}');
});
wait_for_dispatchers();

###########################################################################
# 1. A poison step: its bookkeeping fails after its statement ran.
###########################################################################

$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('poison', '{"steps": [{"name": "p", "kind": "sql", "sql": "SELECT 1e30 AS cost",
  "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}');
});
my $poison = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('poison')");
my $nap = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('nap')");
$node->safe_psql('postgres',
	"SELECT count(orchestrator.start_workflow('normal')) FROM generate_series(1, 200)");

ok(poll_until("SELECT count(*) = 0 FROM orchestrator.runs WHERE name IN ('normal', 'nap') AND $active", 't', 60),
	'the normal runs and the timer finish beside a poison step');
is($node->safe_psql('postgres', "SELECT status FROM orchestrator.runs WHERE id = '$nap'"),
	'succeeded', 'the sleep timer fired');
is( $node->safe_psql('postgres',
		"SELECT count(*), count(DISTINCT run_id) FROM side"),
	'200|200', 'each normal run took effect once');
ok(poll_until("SELECT status = 'failed' FROM orchestrator.runs WHERE id = '$poison'", 't', 60),
	'the poison run fails');
is( $node->safe_psql('postgres',
		"SELECT status || '/' || attempt || '/' || (error ->> 'sqlstate') || '/' || (error ->> 'internal')"
		  . " FROM orchestrator.run_steps WHERE run_id = '$poison'"),
	'dead/3/22003/true',
	'the poison step is dead after its 3 attempts, with its SQLSTATE, marked internal');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM orchestrator.events('$poison') WHERE type = 'step.retrying'"),
	'2', 'and was retried twice');

# The same poison step after a first step: a dispatcher runs it at once in
# the transaction of the step it depends on (chaining), so its failed
# bookkeeping takes that step's success with it.  The lost attempt comes to
# nothing (the step is waiting again); the step is then queued instead of
# chained, and is retried to death as above, not chained forever.
$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('poison_chained', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "INSERT INTO side VALUES (($1 #>> '{}')::uuid)",
            "args": [{"$path": "$.run.id"}]},
           {"name": "p", "kind": "sql", "sql": "SELECT 1e30 AS cost", "depends_on": ["a"],
            "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}
$$);
});
my $chained = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('poison_chained')");
ok(poll_until("SELECT status = 'failed' FROM orchestrator.runs WHERE id = '$chained'", 't', 60),
	'a chained poison step fails its run');
is( $node->safe_psql('postgres',
		"SELECT string_agg(step || '/' || status || '/' || attempt, ',' ORDER BY step)"
		  . " FROM orchestrator.run_steps WHERE run_id = '$chained'"),
	'a/succeeded/1,p/dead/3',
	'its first step succeeded once; the poison step is dead after its 3 attempts');
is($node->safe_psql('postgres', "SELECT count(*) FROM side WHERE run_id = '$chained'"),
	'1', 'the first step took effect once');

###########################################################################
# 2. Steps that swallow their timeout are ended by the watchdog.
###########################################################################

$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('runaway', $j$
{"steps": [{"name": "r", "kind": "sql", "timeout": "1 second",
  "retry": {"max_attempts": 2, "backoff": "100 milliseconds", "jitter": 0},
  "sql": "DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.1); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$"}]}
$j$);
TRUNCATE side;
});
my @runaway = map { $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('runaway')") } 1 .. 2;
ok( poll_until(
		"SELECT count(*) = 2 FROM orchestrator._worker_status() WHERE step = 'r'", 't', 30),
	'both dispatchers are running a runaway step');
$node->safe_psql('postgres',
	"SELECT count(orchestrator.start_workflow('normal')) FROM generate_series(1, 100)");
ok(poll_until("SELECT count(*) = 0 FROM orchestrator.runs WHERE name = 'normal' AND $active", 't', 30),
	'the normal runs finish beside the runaway steps');
is($node->safe_psql('postgres', 'SELECT count(*) FROM side'), '100', 'each took effect');
ok( poll_until(
		"SELECT count(*) = 2 FROM orchestrator.runs WHERE name = 'runaway' AND status = 'failed'", 't', 60),
	'the runaway runs fail');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT s.status || '/' || s.attempt || '/' || (s.error ->> 'sqlstate'), ',')"
		  . " FROM orchestrator.run_steps s WHERE s.workflow = 'runaway'"),
	'dead/2/57014', 'their steps are dead after 2 attempts, each ended by the watchdog');
like( $node->safe_psql('postgres',
		"SELECT error ->> 'message' FROM orchestrator.run_steps WHERE run_id = '$runaway[0]'"),
	qr/timed out and did not stop/, 'with the reason');
ok($node->log_contains('exited because of a sql step, restarting it'),
	'the launcher restarted the ended dispatchers at once');
wait_for_dispatchers();

# cancel_workflow of a runaway run waits for the run's lock, which the
# watchdog releases within the step's timeout (1 s) and the grace (1 s).
my $victim = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('runaway')");
ok(poll_until("SELECT count(*) = 1 FROM orchestrator._worker_status() WHERE run_id = '$victim'", 't', 30),
	'a runaway step is running');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '4s'; SELECT orchestrator.cancel_workflow('$victim', 'enough')");
is($ret, 0, 'cancel_workflow of a runaway run returns within timeout and grace')
  or diag $stderr;
is($node->safe_psql('postgres', "SELECT status FROM orchestrator.runs WHERE id = '$victim'"),
	'cancelled', 'the run is cancelled');
wait_for_dispatchers();

###########################################################################
# 3. Steps that end their dispatcher process are counted.
###########################################################################

# The workflow is a superuser's: its step may terminate its own backend.
$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('suicide', '{"steps": [{"name": "t", "kind": "sql",
  "sql": "SELECT pg_terminate_backend(pg_backend_pid())",
  "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}');
TRUNCATE side;
});
my $suicide = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('suicide')");
$node->safe_psql('postgres',
	"SELECT count(orchestrator.start_workflow('normal')) FROM generate_series(1, 100)");
ok(poll_until("SELECT status = 'failed' FROM orchestrator.runs WHERE id = '$suicide'", 't', 60),
	'a step that terminates its dispatcher fails its run');
is( $node->safe_psql('postgres',
		"SELECT status || '/' || attempt || '/' || (error ->> 'message') FROM orchestrator.run_steps WHERE run_id = '$suicide'"),
	'dead/3/the dispatcher process exited while running this step',
	'after its 3 attempts');
ok(poll_until("SELECT count(*) = 0 FROM orchestrator.runs WHERE name = 'normal' AND $active", 't', 60),
	'the other runs finish');
is($node->safe_psql('postgres', 'SELECT count(*) FROM side'), '100', 'each took effect');
wait_for_dispatchers();

# A dispatcher killed with SIGKILL: the server reinitialises; the journal of
# its slot names the step it was running.
$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('sleepy', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT pg_sleep(60)",
  "retry": {"max_attempts": 2, "backoff": "100 milliseconds", "jitter": 0}}]}');
});
my $sleepy = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('sleepy')");
for my $attempt (1 .. 2)
{
	ok( poll_until(
			"SELECT count(*) = 1 FROM orchestrator._worker_status() WHERE run_id = '$sleepy'", 't', 60),
		"attempt $attempt is running");
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM orchestrator._worker_status() WHERE run_id = '$sleepy'");
	is(kill('KILL', $pid), 1, "killed its dispatcher (attempt $attempt)");
	# connections fail while the server reinitialises
	poll_until('SELECT 1', '1', 60);
}
ok(poll_until("SELECT status = 'failed' FROM orchestrator.runs WHERE id = '$sleepy'", 't', 60),
	'a step whose dispatcher is killed every time fails its run');
is( $node->safe_psql('postgres',
		"SELECT status || '/' || attempt || '/' || (error ->> 'message') FROM orchestrator.run_steps WHERE run_id = '$sleepy'"),
	'dead/2/the dispatcher process died while running this step',
	'after its 2 attempts');
ok($node->log_contains('were running in dispatchers when the server crashed'),
	'the postmaster read the journal back');

# An immediate shutdown is not the step's fault: no attempt is counted.
wait_for_dispatchers();
$node->safe_psql(
	'postgres', q{
SELECT orchestrator.define_workflow('once', '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT pg_sleep(60)",
  "retry": {"max_attempts": 1}}]}');
});
my $once = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('once')");
ok(poll_until("SELECT count(*) = 1 FROM orchestrator._worker_status() WHERE run_id = '$once'", 't', 60),
	'a one-attempt step is running');
$node->stop('immediate');
$node->start;
ok(poll_until("SELECT count(*) = 1 FROM orchestrator._worker_status() WHERE run_id = '$once'", 't', 60),
	'after an immediate shutdown it runs again');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM orchestrator.events('$once') WHERE type IN ('step.retrying', 'step.dead', 'step.failed')"),
	'0', 'no attempt was counted against it');
$node->safe_psql('postgres', "SELECT orchestrator.cancel_workflow('$once')");

###########################################################################
# 4. health(): ready or not.
###########################################################################

ok(poll_until("SELECT (h ->> 'ready')::boolean AND (h ->> 'live')::boolean FROM orchestrator.health() h"),
	'health is live and ready');
$node->safe_psql('postgres', "ALTER SYSTEM SET orchestrator.health_max_ready_age = '1s'");
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 0');
$node->reload;
ok(poll_until('SELECT count(*) = 0 FROM orchestrator._worker_status()'), 'no dispatcher runs');
$node->safe_psql('postgres', "SELECT orchestrator.start_workflow('normal')");
my $health = "SELECT h ->> 'ready', h ->> 'live',"
  . " h -> 'problems' ? 'no dispatcher is running and 1 sql, timer or http items are ready' FROM orchestrator.health() h";
ok(poll_until($health, 'false|false|t', 30), 'not live, not ready while sql work waits for no dispatcher');
ok( poll_until(
		"SELECT (h -> 'problems')::text LIKE '%longer than orchestrator.health_max_ready_age%' FROM orchestrator.health() h",
		't', 30),
	'and so is the age of the waiting work');
$node->safe_psql('postgres', 'ALTER SYSTEM SET orchestrator.workers = 2');
$node->reload;
ok(poll_until("SELECT count(*) = 0 FROM orchestrator.runs WHERE name = 'normal' AND $active"),
	'the work is done when the dispatchers are back');
ok( poll_until(
		"SELECT (h ->> 'ready')::boolean AND (h ->> 'live')::boolean AND h ->> 'status' = 'ok' FROM orchestrator.health() h"
	),
	'health is live and ready again');

$node->stop;
done_testing();
