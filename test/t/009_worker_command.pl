
# orchestrator-worker, the command that runs a handler per external step,
# against a real cluster, with shell handlers (test/t/worker_handler.sh):
#   1. usage, version, connection and missing-extension errors (exit 1);
#   2. success (input on stdin, identity in the environment), empty output,
#      failure with stderr (retried per the step's policy), output that is
#      not JSON, a handler killed by a signal, a long stderr cut to its end,
#      shell syntax in the input passed as data, an output over 16 MB;
#   3. heartbeats keep a lease shorter than the handler; a lost lease (run
#      cancelled) stops the handler;
#   4. concurrency N runs N handlers at once;
#   5. a claim woken by NOTIFY alone (poll interval of an hour);
#   6. the connection terminated under the worker: it connects again;
#   7. a worker's role claims only steps of workflows it may work, and a
#      completion after "work" was revoked is refused;
#   8. a handler over its timeout is killed and the step fails;
#   9. kill -9 of the worker mid-step: the step is retried after its lease
#      and completed by a new worker;
#  10. SIGTERM: no more claims, the running handler finishes, exit 0; with a
#      short grace the handler is killed and its step made ready again;
#  11. the server restarts while a handler runs: its result is kept and
#      reported once the worker has connected again.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker_command');
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

my $handler = File::Spec->rel2abs(dirname(__FILE__) . '/worker_handler.sh');
my $dir = PostgreSQL::Test::Utils::tempdir;
$ENV{HANDLER_DIR} = $dir;
my $connstr = $node->connstr('postgres');

# Start orchestrator-worker in the background, its output in a log file.
sub start_worker
{
	my ($name, @args) = @_;
	return start_worker_as('postgres', $name, @args);
}

sub start_worker_as
{
	my ($user, $name, @args) = @_;
	my $log = "$dir/$name.log";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log);
		open(STDERR, '>>', $log);
		exec('orchestrator-worker', '-v', '-d', "$connstr user=$user application_name=$name", @args, '--', $handler)
		  or die "exec: $!";
	}
	return $pid;
}

# Signal a worker and return its exit status.
sub stop_worker
{
	my ($pid, $sig) = @_;
	kill $sig, $pid;
	waitpid($pid, 0);
	return $? >> 8;
}

sub slurp_log { return slurp_file("$dir/$_[0].log"); }

# Wait for a file a handler creates.
sub wait_for_file
{
	my ($file) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if -e $file;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

sub wait_for_log
{
	my ($name, $re) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if slurp_log($name) =~ $re;
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# A workflow of external steps on one queue; each step names what the
# handler does.
sub define
{
	my ($workflow, $queue, $max_attempts, @steps) = @_;
	my $spec = join(', ',
		map { qq({"name": "$_", "kind": "external", "queue": "$queue", "input": {"step": "$_", "n": 42}, "retry": {"max_attempts": $max_attempts, "backoff": "1 second"}}) }
		  @steps);
	$node->safe_psql('postgres', qq{SELECT orchestrator.define_workflow('$workflow', '{"steps": [$spec]}')});
}

sub start_run
{
	my ($workflow) = @_;
	return $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('$workflow')");
}

sub wait_run
{
	my ($run, $status) = @_;
	return $node->poll_query_until('postgres', "SELECT status FROM orchestrator.runs WHERE id = '$run'", $status);
}

sub query { return $node->safe_psql('postgres', $_[0]); }

# --- 1. usage and errors ---------------------------------------------------

my ($out, $err);
my $rc = IPC::Run::run([ 'orchestrator-worker', '--help' ], '>', \$out, '2>', \$err);
ok($rc && $out =~ /^Usage:/m && $out =~ /--concurrency=N/, '--help prints the usage, exit 0');
$rc = IPC::Run::run([ 'orchestrator-worker', '--version' ], '>', \$out, '2>', \$err);
like($out, qr/^orchestrator-worker \(orchestrator\) \d+\.\d+$/m, '--version');

sub fails
{
	my ($args, $re, $name) = @_;
	my ($o, $e) = ('', '');
	my $ok = IPC::Run::run([ 'orchestrator-worker', @$args ], '<', \undef, '>', \$o, '2>', \$e);
	ok(!$ok && ($? >> 8) == 1 && $e =~ $re, $name) or diag("exit " . ($? >> 8) . ": $e");
}
fails([ '-d', $connstr, '--', 'true' ], qr/^orchestrator-worker: error: no queue given.*\n.*hint: Try "orchestrator-worker --help"/,
	'no queue: error and hint, exit 1');
fails([ '-d', $connstr, '-q', 'main' ], qr/error: no handler command given/, 'no handler: exit 1');
fails([ '-q', 'main', '-c', '0', '--', 'true' ], qr/error: --concurrency must be a number from 1 to 1000, not "0"/,
	'bad concurrency');
fails([ '-q', 'main', '--lease', '5 fortnights', '--', 'true' ], qr/error: --lease must be a duration/, 'bad lease');
fails([ '-q', 'main', '--lease', '500ms', '--', 'true' ], qr/error: --lease must be a duration from 1s to 1d/,
	'lease shorter than the server accepts');
fails([ '--bogus', '-q', 'main', '--', 'true' ], qr/unrecognized option.*\n.*hint: Try/, 'unknown option');
fails([ '-d', 'host=127.0.0.1 port=1 connect_timeout=5', '-q', 'main', '--', 'true' ],
	qr/^orchestrator-worker: error: connection to server at "127.0.0.1", port 1 failed/, 'no server: exit 1');
$node->safe_psql('postgres', 'CREATE DATABASE plain');
fails([ '-d', $node->connstr('plain'), '-q', 'main', '--', 'true' ],
	qr/error: extension "orchestrator" is not installed in database "plain"/, 'no extension: exit 1');
fails([ '-d', $connstr, '-q', 'not a queue!', '--', 'true' ],
	qr/error: claiming steps failed: ERROR:  invalid queue name/, 'invalid queue name: the server\'s error, exit 1');

# --- 2. outcomes of handlers -----------------------------------------------

define('outcomes', 'main', 1, qw(ok empty));
define('failing', 'main', 2, 'fail');
define('notjson', 'main', 1, 'notjson');
define('signalled', 'main', 1, 'signal');
define('noisy', 'main', 1, 'noisy');
my $w_main = start_worker('main', '-q', 'main', '-c', '4', '--lease', '1s', '--poll-interval', '200ms');
my %runs = map { $_ => start_run($_) } qw(outcomes failing notjson signalled noisy);
my $run = $runs{outcomes};
ok(wait_run($run, 'succeeded'), 'a run of two handlers that succeed');
ok(wait_run($runs{$_}, 'failed'), "a run whose handler fails: $_") for qw(failing notjson signalled noisy);
my $ok = query("SELECT result FROM orchestrator.run_steps WHERE run_id = '$run' AND step = 'ok'");
like($ok, qr/"input": \{"n": 42, "step": "ok"\}/, 'the handler got the input on stdin');
like($ok, qr/"run": "$run"/, 'ORCHESTRATOR_RUN_ID');
like($ok, qr/"step": "ok"/, 'ORCHESTRATOR_STEP');
like($ok, qr/"attempt": 1\b/, 'ORCHESTRATOR_ATTEMPT');
like($ok, qr/"workflow": "outcomes"/, 'ORCHESTRATOR_WORKFLOW');
like($ok, qr/"queue": "main"/, 'ORCHESTRATOR_QUEUE');
# claim_steps returns a traceparent column from 0.4 on (a trace of its own
# when the run was started without one); the worker works with and without.
my $has_traceparent = query("SELECT count(*) FROM pg_proc WHERE proname = 'claim_steps'
	AND pronamespace = 'orchestrator'::regnamespace AND 'traceparent' = ANY (proargnames)") > 0;
if ($has_traceparent)
{
	like($ok, qr/"traceparent": "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]"/, 'TRACEPARENT from claim_steps');
}
else
{
	like($ok, qr/"traceparent": "none"/, 'no TRACEPARENT when claim_steps returns none');
}
is(query("SELECT status || ' ' || result FROM orchestrator.run_steps WHERE run_id = '$run' AND step = 'empty'"),
	'succeeded null', 'empty output completes the step with null');

is(query("SELECT status || ' ' || attempt FROM orchestrator.run_steps WHERE run_id = '$runs{failing}' AND step = 'fail'"),
	'dead 2', 'a failing handler: retried per the step\'s policy (2 attempts), then dead');
my $fail = query("SELECT error FROM orchestrator.run_steps WHERE run_id = '$runs{failing}' AND step = 'fail'");
like($fail, qr/"message": "handler exited with status 3"/, 'error message: the exit status');
like($fail, qr/"exit_code": 3/, 'error: exit_code');
like($fail, qr/"stderr": "first line\\nboom: attempt 2\\n"/, 'error: the handler\'s stderr');
like($fail, qr/"worker": "[^"]+:\d+"/, 'error: the worker');
is( query("SELECT count(*) FROM orchestrator.workflow_events WHERE run_id = '$runs{failing}' AND step = 'fail' AND type = 'step.retrying'
      AND data->'error'->>'stderr' LIKE '%attempt 1%'"),
	'1', 'the first attempt\'s error is in its step.retrying event');

like(query("SELECT error->>'message' FROM orchestrator.run_steps WHERE run_id = '$runs{notjson}' AND step = 'notjson'"),
	qr/^handler output is not JSON: invalid input syntax for type json/, 'output that is not JSON fails the step');
my $sig = query("SELECT error FROM orchestrator.run_steps WHERE run_id = '$runs{signalled}' AND step = 'signal'");
like($sig, qr/"message": "handler was terminated by signal 15: Terminated"/, 'a handler killed by a signal fails the step');
like($sig, qr/"signal": 15/, 'error: signal');
my $noisy = query("SELECT error->>'stderr' FROM orchestrator.run_steps WHERE run_id = '$runs{noisy}' AND step = 'noisy'");
ok(length($noisy) <= 4096 && length($noisy) > 3000, 'a long stderr is cut to its last 4 kB')
  or diag(length($noisy));
like($noisy, qr/line 1999 of noise on stderr, to be cut\nthe last line\n$/, 'and its end is kept');

# Hostile input and output: input is data on stdin, never a command; an
# output over 16 MB fails the step.
$node->safe_psql('postgres', q{SELECT orchestrator.define_workflow('hostile', '{"steps": [
  {"name": "ok", "kind": "external", "queue": "main", "input": {"$path": "$.input"}},
  {"name": "huge", "kind": "external", "queue": "main", "depends_on": ["ok"], "retry": {"max_attempts": 1}}]}')});
my $evil = '$(touch ' . $dir . '/pwned); `touch ' . $dir . '/pwned2`; \\\"quoted\\\"';
$run = $node->safe_psql('postgres', qq{SELECT orchestrator.start_workflow('hostile', jsonb_build_object('s', \$x\$$evil\$x\$))});
ok(wait_run($run, 'failed'), 'a run with shell syntax in its input and a huge result');
is(query("SELECT result->'input'->>'s' FROM orchestrator.run_steps WHERE run_id = '$run' AND step = 'ok'"),
	$evil, 'the input reached the handler verbatim');
ok(!-e "$dir/pwned" && !-e "$dir/pwned2", 'and nothing in it was executed');
is(query("SELECT status || ' ' || (error->>'message') FROM orchestrator.run_steps WHERE run_id = '$run' AND step = 'huge'"),
	'dead handler output is larger than 16777216 bytes', 'an output over 16 MB fails the step');

# TRACEPARENT: when claim_steps returns a traceparent column.
SKIP:
{
	skip 'claim_steps has no traceparent column in this version', 2 unless $has_traceparent;
	$run = query(q{SELECT orchestrator.start_workflow('outcomes', '{}',
	               '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}')});
	ok(wait_run($run, 'succeeded'), 'a run started with a traceparent');
	like(query("SELECT result->>'traceparent' FROM orchestrator.run_steps WHERE run_id = '$run' AND step = 'ok'"),
		qr/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-0[01]$/, 'TRACEPARENT continues the run\'s trace');
}

# --- 3. heartbeats ---------------------------------------------------------

define('beats', 'main', 1, 'beat');
$run = start_run('beats');
ok(wait_run($run, 'succeeded'), 'a handler running three times its lease of 1 s succeeds');
is(query("SELECT attempt || ' ' || result FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'1 {"beat": true}', 'in its first attempt: heartbeats kept the lease');

# A lost lease (here: the run is cancelled) stops the handler with SIGTERM.
define('cancelled', 'main', 1, 'cancelme');
$run = start_run('cancelled');
ok(wait_for_file("$dir/cancelme.started"), 'a handler runs');
query("SELECT orchestrator.cancel_workflow('$run')");
ok(wait_for_file("$dir/cancelme.terminated"), 'its run cancelled, the next heartbeat fails and the handler gets SIGTERM');
ok(wait_for_log('main', qr/warning: lease of step "cancelme" of run $run is lost: stopping its handler/),
	'the worker says so');
is(query("SELECT status FROM orchestrator.run_steps WHERE run_id = '$run'"), 'cancelled', 'the step stays cancelled');

# --- 4. concurrency ----------------------------------------------------------

define('parallel', 'main', 1, qw(conc1 conc2 conc3));
$run = start_run('parallel');
ok(wait_run($run, 'succeeded'), 'three steps on a worker with --concurrency 4');
is(query("SELECT string_agg(result::text, ',' ORDER BY step) FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'{"peers": 3},{"peers": 3},{"peers": 3}', 'each handler saw the other two running');

# --- 6. reconnection -------------------------------------------------------

query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'main'");
define('again', 'main', 1, 'ok');
$run = start_run('again');
ok(wait_run($run, 'succeeded'), 'after its connection was terminated, the worker connects again and works');
like(slurp_log('main'), qr/warning: connection to server lost/, 'and says so');
is(stop_worker($w_main, 'TERM'), 0, 'SIGTERM with nothing running: exit 0');

# --- 5. NOTIFY alone ---------------------------------------------------------

define('notified', 'listen', 1, 'ok');
my $w_listen = start_worker('listen', '-q', 'listen', '--poll-interval', '1h');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'listen' AND state = 'idle' AND query LIKE '%claim_steps%'",
		'1'),
	'the worker made its first claim');
$run = start_run('notified');
ok(wait_run($run, 'succeeded'), 'a step made ready later is claimed on its NOTIFY (poll interval 1 h)');
is(stop_worker($w_listen, 'INT'), 0, 'SIGINT: exit 0');

# --- 7. rights -------------------------------------------------------------

query("CREATE ROLE stranger LOGIN IN ROLE orchestrator_user");
define('private', 'private', 1, 'ok');
$run = start_run('private');
my $w_stranger = start_worker_as('stranger', 'stranger', '-q', 'private', '--poll-interval', '100ms');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'stranger' AND state = 'idle' AND query LIKE '%claim_steps%'"
	),
	'a worker of another role claims');
is(stop_worker($w_stranger, 'TERM'), 0, 'and stops');
is(query("SELECT status || ' ' || attempt FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'ready 0', 'the step of a workflow it may not work is left alone');
query("SELECT orchestrator.grant_workflow('private', 'stranger', 'work')");
$w_stranger = start_worker_as('stranger', 'stranger', '-q', 'private', '--poll-interval', '100ms');
ok(wait_run($run, 'succeeded'), 'granted "work", it claims and completes the step');
is(query("SELECT worker FROM orchestrator.run_steps WHERE run_id = '$run'") =~ /:\d+$/ ? 1 : 0, 1, 'as host:pid');
# "work" revoked while a handler runs: its result is refused and the step
# is left to its lease.
define('gate', 'private', 1, 'gated');
query("SELECT orchestrator.grant_workflow('gate', 'stranger', 'work')");
$run = start_run('gate');
ok(wait_for_file("$dir/gated.started"), 'a handler of the role runs');
query("SELECT orchestrator.revoke_workflow('gate', 'stranger', 'work')");
open(my $go, '>', "$dir/gated.go") or die;
close($go);
ok( wait_for_log('stranger',
		qr/error: could not complete step "gated" of run $run: ERROR:  permission denied to work steps of workflow "gate"/),
	'"work" revoked meanwhile: the completion is refused, and said so');
is(query("SELECT status || ' ' || coalesce(result::text, '-') FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'running -', 'the step is left to its lease');
is(stop_worker($w_stranger, 'TERM'), 0, 'and stops');

# --- 8. timeout ------------------------------------------------------------

define('slowly', 'slow', 1, 'slow');
my $w_slow = start_worker('slow', '-q', 'slow', '--timeout', '1s');
$run = start_run('slowly');
ok(wait_run($run, 'failed'), 'a handler over its --timeout of 1 s');
like(query("SELECT status || ' ' || (error->>'message') FROM orchestrator.run_steps WHERE run_id = '$run'"),
	qr/^dead handler timed out after 1\.000 s$/, 'is killed and the step fails');
is(stop_worker($w_slow, 'TERM'), 0, 'exit 0');

# --- 9. kill -9 mid-step -----------------------------------------------------

define('killing', 'kill', 3, 'killed');
my $w_a = start_worker('kill_a', '-q', 'kill', '--lease', '2s');
$run = start_run('killing');
ok(wait_for_file("$dir/killed.started"), 'the first attempt runs');
kill 'KILL', $w_a;
waitpid($w_a, 0);
my $w_b = start_worker('kill_b', '-q', 'kill', '--lease', '2s', '--poll-interval', '200ms');
ok(wait_run($run, 'succeeded'), 'after kill -9 of its worker, the step is done by another worker');
is(query("SELECT attempt || ' ' || result FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'2 {"attempt": 2}', 'in the second attempt');
is( query("SELECT data->'error'->>'message' FROM orchestrator.workflow_events WHERE run_id = '$run' AND type = 'step.retrying'"),
	'lease expired', 'after the lease of the first expired');
is(stop_worker($w_b, 'TERM'), 0, 'exit 0');

# --- 10. SIGTERM -------------------------------------------------------------

define('terminating', 'term', 1, 'term');
my $w_term = start_worker('term', '-q', 'term', '--poll-interval', '100ms');
my $run1 = start_run('terminating');
ok(wait_for_file("$dir/term.started.$run1"), 'a handler runs');
kill 'TERM', $w_term;
ok(wait_for_log('term', qr/stopping: waiting up to 30\.000 s for 1 running handlers/), 'SIGTERM: the worker stops claiming');
my $run2 = start_run('terminating');
# the worker stays until its handler ends: let it end
open(my $fh, '>', "$dir/term.go") or die;
close($fh);
waitpid($w_term, 0);
is($? >> 8, 0, 'the worker exits 0 once its handler has ended');
is(query("SELECT status || ' ' || result FROM orchestrator.run_steps WHERE run_id = '$run1'"),
	'succeeded {"graceful": true}', 'the running step was completed');
is(query("SELECT status || ' ' || attempt FROM orchestrator.run_steps WHERE run_id = '$run2'"),
	'ready 0', 'the step made ready after SIGTERM was not claimed');

define('hanging', 'hang', 3, 'hang');
my $w_hang = start_worker('hang', '-q', 'hang', '--grace', '1s');
$run = start_run('hanging');
ok(wait_for_file("$dir/hang.started"), 'a handler that never ends runs');
is(stop_worker($w_hang, 'TERM'), 0, 'SIGTERM with a grace of 1 s: exit 0');
my $hang = query("SELECT status || ' ' || attempt || ' ' || (error->>'message') FROM orchestrator.run_steps WHERE run_id = '$run'");
like($hang, qr/^(ready|running) 1 handler killed: the worker was stopped and its grace of 1\.000 s ran out$/,
	'the handler was killed after the grace and its step failed as retryable')
  or diag($hang);
is(query("SELECT count(*) FROM orchestrator.workflow_events WHERE run_id = '$run' AND type = 'step.retrying'"),
	'1', 'the step will be retried');

# --- 11. the server restarts while a handler runs ----------------------------

define('holding', 'held', 1, 'held');
my $w_held = start_worker('held', '-q', 'held', '--lease', '5min');
$run = start_run('holding');
ok(wait_for_file("$dir/held.started"), 'a handler runs');
$node->stop('fast');
open(my $held, '>', "$dir/held.go") or die;
close($held);
ok(wait_for_log('held', qr/could not connect to server/), 'the server is down: the worker tries again');
$node->start;
ok(wait_run($run, 'succeeded'), 'the result the handler gave meanwhile is reported once the server is back');
is(query("SELECT attempt || ' ' || result FROM orchestrator.run_steps WHERE run_id = '$run'"),
	'1 {"held": true}', 'in the same attempt (the lease held)');
like(slurp_log('held'), qr/connected again/, 'the worker said it connected again');
is(stop_worker($w_held, 'TERM'), 0, 'exit 0');

$node->stop;
done_testing();
