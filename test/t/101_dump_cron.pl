# Copyright and license: see the top-level README.
#
# Operations tests for orchestrator:
#   1. the pg_cron job made by schedule_maintenance() really runs maintain()
#      (cron.job_run_details);
#   2. plain pg_dump -Fc / pg_restore -d, and pg_dump | psql, keep
#      definitions, runs in every state, steps, events, signals, idempotency
#      keys and queued work, and the restored runs are worked to completion.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Digest::SHA qw(hmac_sha256_base64);
use MIME::Base64 qw(encode_base64);

my $node = PostgreSQL::Test::Cluster->new('ops');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator,pg_cron'
orchestrator.database = 'app'
orchestrator.http_allowed_hosts = '127.0.0.1:9'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
log_min_messages = warning
});
$node->start;

###########################################################################
# 1. pg_cron runs maintain().
###########################################################################

$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator; CREATE EXTENSION pg_cron;');
my $job = $node->safe_psql('postgres', q{SELECT orchestrator.schedule_maintenance('* * * * *')});
like($job, qr/^\d+$/, 'schedule_maintenance returns a job id');
is( $node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobid = $job"),
	'SELECT orchestrator.maintain()', 'the job runs maintain()');
{
	# pg_cron starts jobs on the minute: allow two minutes.
	local $PostgreSQL::Test::Utils::timeout_default = 150;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT EXISTS (SELECT 1 FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded')"),
		'pg_cron ran maintain() successfully');
}
is( $node->safe_psql(
		'postgres',
		"SELECT return_message FROM cron.job_run_details WHERE jobid = $job AND status = 'succeeded' LIMIT 1"),
	'SELECT 1', 'maintain() returned its report');
is($node->safe_psql('postgres', 'SELECT orchestrator.unschedule_maintenance()'), 't', 'unscheduled');

###########################################################################
# 2. pg_dump / pg_restore round trip.
###########################################################################

$node->safe_psql('postgres', 'CREATE DATABASE app');
# The dispatchers connect to orchestrator.database at start.
$node->restart;
$node->safe_psql(
	'app', q{
CREATE EXTENSION orchestrator;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
SELECT orchestrator.define_workflow('note', $$ {"steps": [
  {"name": "write", "kind": "sql", "sql": "INSERT INTO notes(body) VALUES ($1 #>> '{}') RETURNING id", "args": [{"$path": "$.input.body"}]},
  {"name": "review", "kind": "external", "queue": "reviews", "depends_on": ["write"]},
  {"name": "approve", "kind": "wait", "signal": "ok", "depends_on": ["review"]}]} $$);
SELECT orchestrator.start_workflow('note', jsonb_build_object('body', 'n' || i), jsonb_build_object('idempotency_key', 'k' || i, 'tenant', 't' || i % 3))
FROM generate_series(1, 20) i;
});
ok( $node->poll_query_until(
		'app', "SELECT count(*) = 20 FROM orchestrator.work_queue WHERE queue = 'reviews'"),
	'sql steps ran, reviews queued');
# Finish half of the reviews and approve some runs: a mix of states.
$node->safe_psql(
	'app', q{
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{"cost": 0.0125, "tokens": 7}'))
FROM orchestrator.claim_steps('reviews', 'w', 10);
SELECT count(orchestrator.signal_workflow(run_id, 'ok')) FROM (SELECT run_id FROM orchestrator.run_steps
  WHERE step = 'approve' AND status = 'running' ORDER BY run_id LIMIT 5) r;
});
ok( $node->poll_query_until(
		'app', "SELECT count(*) = 5 FROM orchestrator.runs WHERE status = 'succeeded'"),
	'five runs finished');

# A webhook with a secret of its own (for an event that never happens here):
# its secret is dumped sealed, and signs after the restore (same cluster,
# so the same key file; test/t/005_webhook_secrets.pl restores into another).
my $hook_key = join('', map { chr(($_ * 53 + 7) % 256) } 0 .. 23);
my $hook = $node->safe_psql('app',
	"SELECT id FROM orchestrator.create_webhook('http://127.0.0.1:9/hook', '{workflow.failed}', 'whsec_"
	  . encode_base64($hook_key, '') . "')");
my $hook_sign = "SELECT orchestrator._webhook_sign(sealed_secret, 'msg_1', 1700000000, 'body') "
  . "FROM orchestrator.webhook_secrets WHERE webhook_id = '$hook'";
my $hook_want = hmac_sha256_base64('msg_1.1700000000.body', $hook_key);
$hook_want .= '=' while length($hook_want) % 4;
is($node->safe_psql('app', $hook_sign), "v1,$hook_want", 'the webhook signs before the dump');

# A fingerprint of everything the extension keeps.
my $fingerprint = q{
SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
  SELECT 'def:' || d::text FROM orchestrator.definitions d
  UNION ALL SELECT 'run:' || row(r.id, r.name, r.status, r.tenant, r.owner, r.input, r.result, r.error, r.cost, r.created_at, r.finished_at)::text FROM orchestrator.workflow_runs r
  UNION ALL SELECT 'step:' || row(s.run_id, s.step, s.status, s.attempt, s.result, s.finished_at)::text FROM orchestrator.workflow_steps s
  UNION ALL SELECT 'event:' || e::text FROM orchestrator.workflow_events e
  UNION ALL SELECT 'signal:' || s::text FROM orchestrator.signals s
  UNION ALL SELECT 'key:' || k::text FROM orchestrator.idempotency_keys k
  UNION ALL SELECT 'queue:' || row(q.run_id, q.step, q.queue, q.lease_token)::text FROM orchestrator.work_queue q
  UNION ALL SELECT 'note:' || n::text FROM notes n) x(t)};
my $counts = q{SELECT (SELECT count(*) FROM orchestrator.workflow_runs) || ' runs, '
  || (SELECT count(*) FROM orchestrator.workflow_steps) || ' steps, '
  || (SELECT count(*) FROM orchestrator.workflow_events) || ' events, '
  || (SELECT count(*) FROM orchestrator.work_queue) || ' queued'};

# Runs in every other state: running with a sleep timer, failed (a table
# it needs is missing), pending (an external step nobody claimed yet),
# external under lease; then, with the dispatchers stopped, queued (a sql
# step no dispatcher has taken).
$node->safe_psql(
	'app', q{
SELECT orchestrator.define_workflow('mix', $$ {"steps": [
  {"name": "nap", "kind": "sleep", "duration": "2 seconds"},
  {"name": "after", "kind": "sql", "sql": "SELECT 1", "depends_on": ["nap"]}]} $$);
SELECT orchestrator.define_workflow('broken', $$ {"steps": [
  {"name": "post", "kind": "sql", "sql": "INSERT INTO ledger VALUES (1) RETURNING n"}]} $$);
SELECT orchestrator.define_workflow('partner', $$ {"steps": [
  {"name": "call", "kind": "external", "queue": "partners"}]} $$);
SELECT orchestrator.define_workflow('late', $$ {"steps": [
  {"name": "write", "kind": "sql", "sql": "INSERT INTO notes(body) VALUES ('late') RETURNING id"}]} $$);
SELECT orchestrator.start_workflow('mix');
SELECT orchestrator.start_workflow('broken');
SELECT orchestrator.start_workflow('partner');
SELECT count(*) FROM orchestrator.claim_steps('reviews', 'w', 3, '1 hour');
});
ok($node->poll_query_until('app', "SELECT count(*) = 1 FROM orchestrator.runs WHERE name = 'broken' AND status = 'failed'"),
	'a run failed');
ok($node->poll_query_until('app', "SELECT count(*) = 1 FROM orchestrator.run_steps WHERE step = 'nap' AND status = 'running'"),
	'a run sleeps');

# Stop the dispatchers while dumping so the fingerprint is stable.
$node->append_conf('postgresql.conf', 'orchestrator.workers = 0');
$node->reload;
$node->poll_query_until('app',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'")
  or die 'dispatchers did not stop';
$node->safe_psql('app', q{SELECT orchestrator.start_workflow('late')});
is( $node->safe_psql('app', q{SELECT string_agg(status || ':' || n, ' ' ORDER BY status) FROM (
  SELECT status, count(*) AS n FROM orchestrator.runs GROUP BY status) s}),
	'failed:1 pending:2 running:16 succeeded:5', 'runs in every state');
is( $node->safe_psql('app', q{SELECT count(*) FROM orchestrator.work_queue WHERE lease_token IS NOT NULL}),
	'3', 'three external steps under lease');
my $runs_total = $node->safe_psql('app', 'SELECT count(*) FROM orchestrator.runs');
my $before = $node->safe_psql('app', $fingerprint);
my $counts_before = $node->safe_psql('app', $counts);

my $dump = $node->basedir . '/app.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('app'), '-f', $dump ], 'pg_dump -Fc');
my $plain = $node->basedir . '/app.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('app'), '-f', $plain ], 'pg_dump (plain)');

# Restore the plain way, into new databases: no list, no setting, no flag.
# CREATE EXTENSION makes partitions of the current days, which the dump
# holds as well, and ATTACH PARTITION makes the partitions' indexes before
# the dump creates them: both must be taken in stride.
$node->safe_psql('postgres', 'CREATE DATABASE restored; CREATE DATABASE restored_sql');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore -d, nothing else');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored_sql'), '-f', $plain ],
	'pg_dump | psql');

foreach my $db ('restored', 'restored_sql')
{
	is($node->safe_psql($db, $counts), $counts_before, "$db: same rows ($counts_before)");
	is($node->safe_psql($db, $fingerprint), $before, "$db: identical content");
	is( $node->safe_psql($db,
			"SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid WHERE d.deptype = 'e' AND c.relname ~ '_p[0-9]{8}\$'"),
		'0', "$db: partitions are not extension members");
	is( $node->safe_psql($db,
			"SELECT count(*) FROM pg_indexes WHERE schemaname = 'orchestrator' AND tablename ~ '^workflow_runs_p[0-9]{8}\$'")
		  % 6,
		0, "$db: each runs partition has its six indexes");
	is( $node->safe_psql($db, q{
SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
WHERE c.relnamespace = 'orchestrator'::regnamespace AND c.relname ~ '_p[0-9]{8}$' AND NOT i.indisvalid}),
		'0', "$db: no invalid partition index");
	is($node->safe_psql($db, $hook_sign), "v1,$hook_want", "$db: the webhook secret signs as before");

	# Work the restored runs to completion, with the dispatchers on it.
	$node->append_conf('postgresql.conf', "orchestrator.database = '$db'\norchestrator.workers = 2");
	$node->restart;
	$node->safe_psql(
		$db, q{
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{}'))
FROM orchestrator.work_queue WHERE queue = 'reviews' AND lease_token IS NOT NULL;
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{}')) FROM orchestrator.claim_steps('reviews', 'w2', 100);
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{}')) FROM orchestrator.claim_steps('partners', 'w2', 100);
CREATE TABLE ledger (n integer);
SELECT count(orchestrator.retry_run(id)) FROM orchestrator.runs WHERE status = 'failed';
});
	ok($node->poll_query_until($db, "SELECT count(*) = 15 FROM orchestrator.run_steps WHERE step = 'approve' AND status = 'running'"),
		"$db: the approvals wait");
	$node->safe_psql($db, q{SELECT count(orchestrator.signal_workflow(run_id, 'ok')) FROM orchestrator.run_steps
WHERE step = 'approve' AND status = 'running'});
	ok( $node->poll_query_until($db, "SELECT count(*) = 0 FROM orchestrator.runs WHERE status <> 'succeeded'"),
		"$db: every restored run finished")
	  or diag($node->safe_psql($db, 'SELECT name, status, error FROM orchestrator.runs WHERE status <> \'succeeded\''));
	is($node->safe_psql($db, 'SELECT count(*) FROM orchestrator.runs'), $runs_total, "$db: all $runs_total runs");
	is($node->safe_psql($db, 'SELECT count(*) FROM ledger'), '1', "$db: the failed run was resumed and its step ran once");
	is($node->safe_psql($db, "SELECT count(*) FROM notes WHERE body = 'late'"), '1', "$db: the queued sql step ran once");
	is($node->safe_psql($db,
			"SELECT orchestrator.start_workflow('note', '{\"body\": \"again\"}', '{\"idempotency_key\": \"k1\"}') = (SELECT run_id FROM orchestrator.idempotency_keys WHERE key = 'k1')"),
		't', "$db: idempotency keys survive");
	is($node->safe_psql($db, "SELECT ((orchestrator.maintain()) ->> 'partitions_ahead')::int >= 7"), 't', "$db: maintain()");
	is($node->safe_psql($db, "SELECT sum(cost) FROM orchestrator.costs_per_day"), '0.1250', "$db: costs restored exactly");
	is($node->safe_psql($db, "SELECT url FROM orchestrator.webhooks WHERE id = '$hook'"),
		'http://127.0.0.1:9/hook', "$db: the webhook is restored");
	# New runs start on the restored database.
	my $new = $node->safe_psql($db, q{SELECT orchestrator.start_workflow('mix', '{}', '{"version": 1}')});
	ok($node->poll_query_until($db, "SELECT status = 'succeeded' FROM orchestrator.runs WHERE id = '$new'"),
		"$db: a new run succeeds");
}

$node->stop;
done_testing();
