# A stuck listener cannot stop the engine.
#
# A session LISTENs on "orchestrator" and stays idle in a transaction, and
# another fills the server's notification queue past
# orchestrator.notify_queue_max_usage (set to 1 %: PostgreSQL 15's queue is
# 8 GB, filling it whole takes over a minute and 8 GB of disk, see
# docs/operations.md; above the limit the orchestrator sends nothing, so the
# engine behaves as with a full queue).  Then:
#   1. starts and sql steps keep committing: every run succeeds;
#   2. the relay waits (deferred_since, deferrals), its small ring overflows
#      and what does not fit is dropped and counted;
#   3. health() reports the queue and names the listener holding it back;
#   4. a start in a database no relay serves (notifying directly) commits too,
#      its notifications dropped and counted;
#   5. once the listener commits, the relay sends what it kept and stops
#      waiting, and LISTENing clients get notifications again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes;

my $node = PostgreSQL::Test::Cluster->new('notify_queue');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.poll_interval = 200
orchestrator.relay_queue_size = 256
orchestrator.notify_queue_max_usage = 1
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

sub poll_until
{
	my ($query, $expected, $timeout) = @_;
	local $PostgreSQL::Test::Utils::timeout_default = $timeout // 120;
	return $node->poll_query_until('postgres', $query, $expected // 't');
}

poll_until("SELECT count(*) = 2 FROM orchestrator._worker_status()")
  or die "dispatchers did not start";
poll_until("SELECT pid IS NOT NULL FROM orchestrator._relay_status()")
  or die "the relay did not start";

$node->safe_psql(
	'postgres', q{
CREATE TABLE side (run_id uuid NOT NULL);
SELECT orchestrator.define_workflow('w', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "INSERT INTO side VALUES (($1 #>> '{}')::uuid)",
            "args": [{"$path": "$.run.id"}]},
           {"name": "b", "kind": "sql", "sql": "SELECT 1", "depends_on": ["a"]}]}
$$);
CREATE PROCEDURE fill_notify_queue(n integer) LANGUAGE plpgsql AS $p$
DECLARE
	pad text := repeat('x', 7900);
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM pg_notify('filler', i || pad);
		IF i % 1000 = 0 THEN COMMIT; END IF;
	END LOOP;
END
$p$;
});

# The stuck listener.
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN orchestrator');
$listener->query_safe('BEGIN');
my $listener_pid = $listener->query_safe('SELECT pg_backend_pid()');

# 1 % of the usable 8 GB is about 86 MB: 14,000 notifications of 7.9 kB
# (about 110 MB) take a second or two.
$node->safe_psql('postgres', 'CALL fill_notify_queue(14000)');
cmp_ok($node->safe_psql('postgres', 'SELECT orchestrator._notify_queue_usage()'),
	'>=', 0.01, 'the notification queue is fuller than orchestrator.notify_queue_max_usage');
my ($pid_behind) = $node->safe_psql('postgres',
	"SELECT pid FROM orchestrator._notify_listeners() ORDER BY behind_bytes DESC LIMIT 1");
is($pid_behind, $listener_pid, '_notify_listeners() shows the listener furthest behind');

###########################################################################
# 1. Starts and steps commit.
###########################################################################

my $before = $node->safe_psql('postgres', 'SELECT dropped FROM orchestrator._relay_status()');
my $started = $node->safe_psql('postgres',
	"SELECT count(orchestrator.start_workflow('w')) FROM generate_series(1, 150)");
is($started, '150', 'starts commit with the queue full');
ok( poll_until(
		"SELECT count(*) = 150 FROM orchestrator.runs WHERE name = 'w' AND status = 'succeeded'", 't', 120),
	'every run succeeds: its steps commit');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT run_id) FROM side'), '150', 'each took effect');

###########################################################################
# 2. The relay waits and counts.
###########################################################################

my $status = $node->safe_psql('postgres',
	"SELECT deferred_since IS NOT NULL, deferrals > 0, queued > 0, dropped > $before FROM orchestrator._relay_status()");
is($status, 't|t|t|t', 'the relay waits for room, keeps its ring, drops what overflows it');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator relay' AND wait_event = 'Extension'"),
	'1', 'and is waiting, not blocked on the queue');

###########################################################################
# 3. health() reports it and names the listener.
###########################################################################

is( $node->safe_psql(
		'postgres', q{
SELECT (h -> 'notifications' ->> 'queue_usage')::numeric >= 0.01,
       h -> 'notifications' -> 'listeners_behind' -> 0 ->> 'pid',
       h -> 'notifications' -> 'listeners_behind' -> 0 ->> 'state',
       h -> 'notifications' ->> 'deferred_since' IS NOT NULL,
       EXISTS (SELECT 1 FROM jsonb_array_elements_text(h -> 'problems') p
               WHERE p LIKE 'the notification queue is %full%held back by pid ' || (h -> 'notifications' -> 'listeners_behind' -> 0 ->> 'pid') || '%')
FROM orchestrator.health() h}),
	"t|$listener_pid|idle in transaction|t|t",
	'health() reports the queue and names the idle-in-transaction listener');
like($node->safe_psql('postgres', 'SELECT orchestrator.metrics()'),
	qr/^orchestrator_notifications_dropped_total [1-9]/m, 'metrics() counts the dropped notifications');

###########################################################################
# 4. A database no relay serves: notifications go directly, or are dropped.
###########################################################################

$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('w', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1"}]}');
});
$before = $node->safe_psql('postgres', 'SELECT dropped FROM orchestrator._relay_status()');
my ($ret, $out, $err) = $node->psql('other', "SELECT count(orchestrator.start_workflow('w')) FROM generate_series(1, 5)");
is("$ret|$out", '0|5', 'starts commit where notifications would go directly');
cmp_ok($node->safe_psql('postgres', 'SELECT dropped FROM orchestrator._relay_status()'),
	'>', $before, 'their notifications are dropped and counted');

# A session announcement too long for the relay's entries goes directly: it
# is dropped too (before decision 83 it was sent past the limit, and with the
# queue really full it failed its transaction at commit; 4b).
$before = $node->safe_psql('postgres', 'SELECT dropped || \'|\' || direct FROM orchestrator._relay_status()');
$node->safe_psql('postgres', "SELECT orchestrator.session_set(repeat('k', 300), '1')");
my ($dropped0, $direct0) = split /\|/, $before;
is( $node->safe_psql('postgres',
		"SELECT dropped > $dropped0 AND direct = $direct0 FROM orchestrator._relay_status()"),
	't', 'a long session announcement is dropped and counted, not sent past the limit');

###########################################################################
# 4b. With ORCH_TEST_FULL_NOTIFY_QUEUE=1 only: the real queue, full (about
#     80 s and 8 GB of disk on a laptop-class machine, too much for every CI
#     run): starts, steps and direct notifiers still commit.
###########################################################################

SKIP:
{
	skip 'ORCH_TEST_FULL_NOTIFY_QUEUE is not set', 5 unless $ENV{ORCH_TEST_FULL_NOTIFY_QUEUE};

	$node->safe_psql('postgres',
		'ALTER SYSTEM SET orchestrator.notify_queue_max_usage = 99; SELECT pg_reload_conf()');
	my $t0 = time;
	my ($r, $o, $e);
	# each call commits every 1,000; the one that finds the queue full fails
	for (1 .. 30)
	{
		($r, $o, $e) = $node->psql('postgres', 'CALL fill_notify_queue(100000)');
		last if $r != 0;
	}
	note 'filling the queue took ' . (time - $t0) . " s: $e";
	($r, $o, $e) = $node->psql('postgres', "SELECT pg_notify('filler', 'one more')");
	like($e, qr/too many notifications in the NOTIFY queue/, 'the server\'s notification queue is full');
	my $run_full = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('w')");
	ok(poll_until("SELECT status = 'succeeded' FROM orchestrator.runs WHERE id = '$run_full'", 't', 60),
		'a start and its steps commit with the queue full');
	($r, $o, $e) = $node->psql('other', "SELECT count(orchestrator.start_workflow('w')) FROM generate_series(1, 5)");
	is("$r|$o", '0|5', 'starts that notify directly commit with the queue full');
	($r, $o, $e) = $node->psql('postgres', "SELECT orchestrator.session_set(repeat('q', 300), '1')");
	is($r, 0, 'a session change with a long key commits with the queue full');
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator relay'"),
		'1', 'the relay is alive');
}

###########################################################################
# 5. The listener commits: notifications flow again.
###########################################################################

$listener->query_safe('COMMIT');
# the listener reads the queue when it is idle again
$listener->query_safe('SELECT 1');
ok(poll_until("SELECT deferred_since IS NULL AND queued = 0 FROM orchestrator._relay_status()", 't', 60),
	'the relay sends what it kept and stops waiting');
ok( poll_until(
		"SELECT NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(orchestrator.health() -> 'problems') p WHERE p LIKE '%notification queue%')",
		't', 60),
	'health() no longer reports the queue');

my $client = $node->background_psql('postgres');
$client->query_safe('LISTEN orchestrator');
my $run = $node->safe_psql('postgres', "SELECT orchestrator.start_workflow('w')");
poll_until("SELECT status = 'succeeded' FROM orchestrator.runs WHERE id = '$run'");
# psql prints notifications it received with the result of its next query
my $got = '';
for (1 .. 50)
{
	$got .= $client->query_safe('SELECT 1');
	last if $got =~ /\Q$run\E/;
	Time::HiRes::usleep(200_000);
}
like($got, qr/Asynchronous notification "orchestrator" with payload .*\Q$run\E/,
	'a listening client gets the notifications of a new run again');

$client->quit;
$listener->quit;
$node->stop;
done_testing();
