# Copyright and license: see the top-level README.
#
# Operations tests for orchestrator:
#   1. the pg_cron job made by schedule_maintenance() really runs maintain()
#      (cron.job_run_details);
#   2. pg_dump / pg_restore keep definitions, runs, steps, events, signals,
#      idempotency keys and queued work, and the restored database works.

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

# Stop the dispatchers while dumping so the fingerprint is stable.
$node->append_conf('postgresql.conf', 'orchestrator.workers = 0');
$node->reload;
$node->poll_query_until('app',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'orchestrator dispatcher%'")
  or die 'dispatchers did not stop';
my $before = $node->safe_psql('app', $fingerprint);
my $counts_before = $node->safe_psql('app', $counts);

my $dump = $node->basedir . '/app.dump';
my $list = $node->basedir . '/app.list';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('app'), '-f', $dump ], 'pg_dump');
# The restore recipe of docs/operations.md: leave out the partitions' own
# indexes and constraints (ATTACH PARTITION makes them from the parents'),
# and create the extension without partitions (the dump has them).
my ($stdout, $stderr);
IPC::Run::run [ 'pg_restore', '-l', $dump ], '|', [ 'grep', '-vE', ' (CONSTRAINT|INDEX|INDEX ATTACH) orchestrator [a-z_]+_p[0-9]{8}[ _]' ], '>', $list
  or die 'pg_restore -l failed';
$node->safe_psql('postgres', 'CREATE DATABASE restored');
{
	local $ENV{PGOPTIONS} = '-c orchestrator.restoring=on';
	$node->command_ok(
		[ 'pg_restore', '--exit-on-error', '--single-transaction', '-L', $list, '-d', $node->connstr('restored'), $dump ],
		'pg_restore into a new database');
}
is($node->safe_psql('restored', $counts), $counts_before, "same rows after restore ($counts_before)");
is($node->safe_psql('restored', $fingerprint), $before, 'identical content after restore');
is( $node->safe_psql('restored',
		"SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid WHERE d.deptype = 'e' AND c.relname ~ '_p[0-9]{8}\$'"),
	'0', 'partitions are not extension members after restore');
is( $node->safe_psql('restored',
		"SELECT count(*) FROM pg_indexes WHERE schemaname = 'orchestrator' AND tablename ~ '^workflow_runs_p[0-9]{8}\$'")
	  % 4,
	0, 'each runs partition has its four indexes');

# The restored database works: claim and complete the remaining reviews,
# approve every run, and maintain() runs.
$node->safe_psql(
	'restored', q{
SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{}')) FROM orchestrator.claim_steps('reviews', 'w2', 100);
SELECT count(orchestrator.signal_workflow(id, 'ok')) FROM orchestrator.runs WHERE status = 'running';
});
is($node->safe_psql('restored', "SELECT count(*) FROM orchestrator.runs WHERE status = 'succeeded'"),
	'20', 'every restored run finished');
is($node->safe_psql('restored',
		"SELECT orchestrator.start_workflow('note', '{\"body\": \"again\"}', '{\"idempotency_key\": \"k1\"}') = (SELECT run_id FROM orchestrator.idempotency_keys WHERE key = 'k1')"),
	't', 'idempotency keys survive');
is($node->safe_psql('restored', "SELECT ((orchestrator.maintain()) ->> 'partitions_ahead')::int >= 7"), 't', 'maintain() on the restored database');
is($node->safe_psql('restored', "SELECT sum(cost) FROM orchestrator.costs_per_day"), '0.1250', 'costs restored exactly');
is($node->safe_psql('restored', "SELECT url FROM orchestrator.webhooks WHERE id = '$hook'"),
	'http://127.0.0.1:9/hook', 'the webhook is restored');
is($node->safe_psql('restored', $hook_sign), "v1,$hook_want",
	'its restored secret signs as before (same key file; HMAC computed here)');

$node->stop;
done_testing();
