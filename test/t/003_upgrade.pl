
# Upgrades: every released version, installed as it was released and
# updated with ALTER EXTENSION ... UPDATE, ends up with exactly the objects
# of a fresh install of the current version; the current library serves the
# old schema until it is updated, and the updated one afterwards.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha256_base64);
use MIME::Base64 qw(encode_base64);

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'upgraded'
orchestrator.poll_interval = 200
log_min_messages = warning
});
$node->start;

my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'orchestrator'");
my @released = split /\n/, $node->safe_psql('postgres',
	"SELECT version FROM pg_available_extension_versions WHERE name = 'orchestrator' AND version <> '$current' ORDER BY string_to_array(version, '.')::int[]"
);
ok(@released > 0, "released versions to upgrade from: @released; current: $current");

# Everything the extension defines, one line per object, in a stable order.
# Partitions are left out (their names carry the day of installation).
my $catalog = q{
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'function ' || p.oid::regprocedure || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '')
  FROM pg_proc p WHERE p.pronamespace = 'orchestrator'::regnamespace
  UNION ALL
  SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') || ' '
         || coalesce(array_to_string(c.reloptions, ','), '') || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class c WHERE c.relnamespace = 'orchestrator'::regnamespace AND NOT c.relispartition
  UNION ALL
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
         || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE c.relnamespace = 'orchestrator'::regnamespace AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  WHERE c.relnamespace = 'orchestrator'::regnamespace AND NOT c.relispartition
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  WHERE c.relnamespace = 'orchestrator'::regnamespace AND NOT c.relispartition
  UNION ALL
  SELECT 'view ' || c.relname || ' ' || md5(pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'orchestrator'::regnamespace AND c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  WHERE c.relnamespace = 'orchestrator'::regnamespace AND NOT t.tgisinternal AND NOT c.relispartition
  UNION ALL
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
  WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'orchestrator' AND d.deptype = 'e'
  UNION ALL
  -- one line per table whose rows pg_dump writes: their order in extconfig
  -- is the order they were marked in, which means nothing (a table an
  -- update adds comes last, a fresh install marks in creation order)
  SELECT 'config ' || c.t::regclass::text || ' ' || c.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) c(t, cond) WHERE e.extname = 'orchestrator'
) x(line)
};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION orchestrator');
my $want = $node->safe_psql('fresh', $catalog);

# A webhook made on the old schema, with a secret of its own: the update
# seals it in place, and it signs as it did.
my $old_key = join('', map { chr(($_ * 37 + 11) % 256) } 0 .. 31);
my $old_secret = 'whsec_' . encode_base64($old_key, '');
my $key_file = $node->data_dir . '/orchestrator_secret.key';
# a delivery attempt's error: the dispatchers tried to send it (nothing
# listens on port 9), or refused to ("not sent: ...")
my $attempted = sub {
	my ($hook, $run) = @_;
	$node->poll_query_until('upgraded',
		"SELECT count(*) > 0 FROM orchestrator.webhook_outbox WHERE webhook_id = '$hook' AND run_id = '$run' AND attempt > 0")
	  or return 'no attempt';
	return $node->safe_psql('upgraded',
		"SELECT min(last_error) FROM orchestrator.webhook_outbox WHERE webhook_id = '$hook' AND run_id = '$run' AND attempt > 0");
};

my $wait_for = sub {
	my ($run) = @_;
	return $node->poll_query_until('upgraded',
		"SELECT status FROM orchestrator.workflow_runs WHERE id = '$run'", 'succeeded');
};

for my $from (@released)
{
	# the dispatchers of the previous round are connected to it: FORCE ends them
	$node->safe_psql('postgres', 'DROP DATABASE IF EXISTS upgraded WITH (FORCE)');
	$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
	# the dispatchers connect to orchestrator.database when they start
	$node->restart;
	$node->safe_psql('upgraded', "CREATE EXTENSION orchestrator VERSION '$from'");
	$node->safe_psql('upgraded', q{
		SELECT orchestrator.define_workflow('chain', '{"steps": [
		  {"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
		  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}]}')});

	my $hook = $node->safe_psql('upgraded',
		"SELECT orchestrator.create_webhook('http://127.0.0.1:9/old', '{workflow.succeeded}', '$old_secret')");

	my $before = $node->safe_psql('upgraded', "SELECT orchestrator.start_workflow('chain')");
	ok($wait_for->($before), "$from: the current library runs a workflow on the $from schema");
	unlike($attempted->($hook, $before), qr/^(not sent|no attempt)/,
		"$from: the current library signs deliveries with the $from schema's plain secret");
	$node->safe_psql('upgraded', 'CHECKPOINT');
	isnt($node->safe_psql('upgraded',
			"SELECT position(convert_to('$old_secret', 'UTF8') in pg_read_binary_file(pg_relation_filepath('orchestrator.webhooks')))"),
		'0', "$from: the plain secret is in the webhooks table's file before the update");

	$node->safe_psql('upgraded', 'ALTER EXTENSION orchestrator UPDATE');
	is($node->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'orchestrator'"),
		$current, "$from: updated to $current");
	is($node->safe_psql('upgraded', $catalog), $want, "$from: the updated schema is that of a fresh $current");

	# the old secret is sealed in place, and signs as before
	my $b64 = substr($old_secret, 6);
	is($node->safe_psql('upgraded',
			"SELECT count(*) FROM orchestrator.webhook_secrets WHERE webhook_id = '$hook' AND sealed_secret ~ '^v1:[0-9a-f]{8}:' "
			  . "AND strpos(sealed_secret, '$b64') = 0 AND strpos(sealed_secret, encode(convert_to('$old_secret', 'UTF8'), 'base64')) = 0"),
		'1', "$from: the update sealed the old secret");
	ok(-f $key_file && ((stat $key_file)[2] & 07777) == 0600, "$from: the key file exists, mode 0600");
	my $signed = qq(msg_1.1700000000.{"a": 1});
	is($node->safe_psql('upgraded',
			qq(SELECT orchestrator._webhook_sign(sealed_secret, 'msg_1', 1700000000, '{"a": 1}') FROM orchestrator.webhook_secrets WHERE webhook_id = '$hook')),
		'v1,' . hmac_sha256_base64($signed, $old_key) . '=',
		"$from: the sealed secret signs as the plain one did (independent HMAC)");
	$node->safe_psql('upgraded', 'CHECKPOINT');
	is($node->safe_psql('upgraded',
			"SELECT position(convert_to('$old_secret', 'UTF8') in pg_read_binary_file(pg_relation_filepath('orchestrator.webhooks')))"),
		'0', "$from: the plain secret is no longer in the webhooks table's file");

	my $after = $node->safe_psql('upgraded', "SELECT orchestrator.start_workflow('chain')");
	ok($wait_for->($after), "$from: a workflow runs after the update");
	unlike($attempted->($hook, $after), qr/^(not sent|no attempt)/, "$from: deliveries are signed and sent after the update");
	is($node->safe_psql('upgraded',
		"SELECT string_agg(type, ',' ORDER BY seq) FROM orchestrator.workflow_events WHERE run_id = '$before'"),
		'workflow.created,workflow.started,step.started,step.succeeded,step.started,step.succeeded,workflow.succeeded',
		"$from: the history of the run started before the update is whole");
}

$node->stop;
done_testing();
