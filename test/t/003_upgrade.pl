
# Upgrades: every released version, installed as it was released and
# updated with ALTER EXTENSION ... UPDATE, ends up with exactly the objects
# of a fresh install of the current version; the current library refuses the
# old schema until it is updated, and the work left in it then runs.

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
orchestrator.http_allowed_hosts = '127.0.0.1:9'
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

# A webhook the old schema holds, with a secret of its own: the update seals
# it in place, and it signs as it did.
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

# The library serves only its own schema version: on an older one the API
# refuses with 55000 and the dispatchers wait.  Work the old version left
# (a definition owned by a role name, a run started by it and queued) is
# migrated by the update and then runs: it is made here with plain inserts,
# as the old version's functions would have made it.
for my $from (@released)
{
	# the dispatchers of the previous round are connected to it: FORCE ends them
	$node->safe_psql('postgres', 'DROP DATABASE IF EXISTS upgraded WITH (FORCE)');
	$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
	# the dispatchers connect to orchestrator.database when they start
	$node->restart;
	$node->safe_psql('upgraded', "CREATE EXTENSION orchestrator VERSION '$from'");
	$node->safe_psql('upgraded', "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upgrader') THEN CREATE ROLE upgrader IN ROLE orchestrator_user; END IF; END \$\$");

	my ($rc, $out, $err) = $node->psql('upgraded',
		q{SELECT orchestrator.define_workflow('refused', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1"}]}')});
	like($err, qr/must be updated before it can be used.*\n.*\n.*ALTER EXTENSION orchestrator UPDATE/s,
		"$from: the $from schema is refused by the current library, with the update as hint");

	# 0.3 added owners (workflows, started_by, work_queue.workflow) and sealed
	# webhook secrets; older versions get the columns they had
	my $owned = $node->safe_psql('upgraded', "SELECT to_regclass('orchestrator.workflows') IS NOT NULL") eq 't';
	$node->safe_psql('upgraded', "INSERT INTO orchestrator.workflows (name, owner) VALUES ('chain', 'upgrader')") if $owned;
	my ($run_cols, $run_vals, $queue_cols, $queue_vals) = $owned
	  ? (', started_by', ", 'upgrader'", ', workflow', ", 'chain'")
	  : ('', '', '', '');
	my $before = $node->safe_psql('upgraded', qq{
		INSERT INTO orchestrator.definitions (name, version, spec, created_by)
			VALUES ('chain', 1, '{"steps": [
			  {"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
			  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}]}', 'upgrader');
		INSERT INTO orchestrator.definition_steps
			SELECT x.name, 1, x.step, x.position, x.kind, x.depends_on, x.dependents, x.condition, x.spec,
				   x.max_attempts, x.backoff, x.multiplier, x.max_backoff, x.jitter, x.timeout, x.compensates
			FROM orchestrator._validate_spec('chain', (SELECT spec FROM orchestrator.definitions)) x;
		WITH r AS (INSERT INTO orchestrator.workflow_runs (id, name, version, owner, input$run_cols)
				   VALUES (orchestrator.uuid_v7(), 'chain', 1, 'upgrader', '{}'$run_vals) RETURNING id),
			 s AS (INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, deps_open, status)
				   SELECT r.id, d.step, d.position, d.kind, cardinality(d.depends_on),
						  CASE WHEN cardinality(d.depends_on) = 0 THEN 'ready' ELSE 'waiting' END
				   FROM r, orchestrator.definition_steps d),
			 e AS (INSERT INTO orchestrator.workflow_events (run_id, seq, at, type, data)
				   SELECT r.id, 1, now(), 'workflow.created', '{"name": "chain", "version": 1}' FROM r),
			 q AS (INSERT INTO orchestrator.work_queue (run_id, step, queue, available_at$queue_cols)
				   SELECT r.id, 'a', '\@sql', now()$queue_vals FROM r)
		SELECT id FROM r;
	});
	# a webhook with a plain secret (before 0.3 only: later ones are sealed)
	my $hook = $owned ? undef : $node->safe_psql('upgraded',
		"INSERT INTO orchestrator.webhooks (url, events, secret, created_by)
		 VALUES ('http://127.0.0.1:9/old', '{workflow.succeeded}', '$old_secret', 'upgrader') RETURNING id");
	sleep(1);
	is($node->safe_psql('upgraded', "SELECT status FROM orchestrator.workflow_runs WHERE id = '$before'"),
		'pending', "$from: the dispatchers wait for the update");
	if (defined $hook)
	{
		$node->safe_psql('upgraded', 'CHECKPOINT');
		isnt($node->safe_psql('upgraded',
			"SELECT position(convert_to('$old_secret', 'UTF8') in pg_read_binary_file(pg_relation_filepath('orchestrator.webhooks')))"),
		'0', "$from: the plain secret is in the webhooks table's file before the update");
	}

	$node->safe_psql('upgraded', 'ALTER EXTENSION orchestrator UPDATE');
	is($node->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'orchestrator'"),
		$current, "$from: updated to $current");
	is($node->safe_psql('upgraded', $catalog), $want, "$from: the updated schema is that of a fresh $current");
	is($node->safe_psql('upgraded',
		"SELECT owner::text || ' ' || started_by::text FROM orchestrator.workflow_runs WHERE id = '$before'"),
		'upgrader upgrader', "$from: the run's owner became a role OID, and its starter is recorded");
	is($node->safe_psql('upgraded', "SELECT owner::text FROM orchestrator.workflows WHERE name = 'chain'"),
		'upgrader', "$from: the workflow belongs to the role that defined it");

	if (defined $hook)
	{
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
	}

	ok($wait_for->($before), "$from: the run left by $from finishes after the update");
	unlike($attempted->($hook, $before), qr/^(not sent|no attempt)/, "$from: its delivery is signed and sent after the update")
	  if defined $hook;
	is($node->safe_psql('upgraded',
		"SELECT string_agg(type, ',' ORDER BY seq) FROM orchestrator.workflow_events WHERE run_id = '$before'"),
		'workflow.created,workflow.started,step.started,step.succeeded,step.started,step.succeeded,workflow.succeeded',
		"$from: the history of the run left by $from is whole");

	my $after = $node->safe_psql('upgraded', "SELECT orchestrator.start_workflow('chain')");
	ok($wait_for->($after), "$from: a workflow runs after the update");
}

# The gate keeps its "this schema is mine" in the backend, across
# transactions, until the extension changes: a backend that has served the
# current schema refuses an older one that another backend creates in its
# place, and one that it creates itself (DROP SCHEMA ... CASCADE drops the
# extension too); it is served again after the update.
#
# In a database of its own, where no dispatcher runs: a DROP of the schema
# could deadlock with a dispatcher's claim.
{
	my $old = $released[-1];
	my $refused = qr/must be updated before it can be used/;
	$node->safe_psql('postgres', 'CREATE DATABASE kept');
	$node->safe_psql('kept', 'SET client_min_messages = error; CREATE EXTENSION orchestrator');
	my $kept = $node->background_psql('kept', on_error_stop => 0);
	$kept->query_safe('SET client_min_messages = error');
	is($kept->query_safe("SELECT orchestrator.define_workflow('kept', '{\"steps\": [{\"name\": \"a\", \"kind\": \"sql\", \"sql\": \"SELECT 1\"}]}')"),
		'1', 'a backend is served by the current schema');
	$kept->query_safe("SELECT orchestrator.session_get('k')");
	$node->safe_psql('kept', "DROP EXTENSION orchestrator CASCADE");
	$node->safe_psql('kept', "SET client_min_messages = error; CREATE EXTENSION orchestrator VERSION '$old'");
	my ($out, $ret) = $kept->query("SELECT orchestrator.define_workflow('kept2', '{\"steps\": [{\"name\": \"a\", \"kind\": \"sql\", \"sql\": \"SELECT 1\"}]}')");
	like($kept->{stderr}, $refused, "the same backend refuses the $old schema another backend created since");
	$kept->{stderr} = '';
	$node->safe_psql('kept', 'ALTER EXTENSION orchestrator UPDATE');
	is($kept->query_safe("SELECT orchestrator.define_workflow('kept', '{\"steps\": [{\"name\": \"a\", \"kind\": \"sql\", \"sql\": \"SELECT 1\"}]}')"),
		'1', 'and is served again after the update');
	$kept->query_safe("DROP SCHEMA orchestrator CASCADE");
	$kept->query_safe("CREATE EXTENSION orchestrator VERSION '$old'");
	($out, $ret) = $kept->query("SELECT orchestrator.define_workflow('kept3', '{\"steps\": [{\"name\": \"a\", \"kind\": \"sql\", \"sql\": \"SELECT 1\"}]}')");
	like($kept->{stderr}, $refused, "a backend refuses the $old schema it created itself after DROP SCHEMA ... CASCADE");
	$kept->{stderr} = '';
	$kept->query_safe('ALTER EXTENSION orchestrator UPDATE');

	# The mechanism, apart from the flood of invalidations a whole extension
	# sends (which would make the backend look again anyway): a change of
	# the installed version that no DDL made goes unseen until any
	# extension changes; then every backend looks again.
	is($kept->query_safe("SELECT orchestrator.session_get('k') IS NULL"), 't', 'served, and kept');
	$node->safe_psql('kept', "UPDATE pg_extension SET extversion = '$old' WHERE extname = 'orchestrator'");
	$node->safe_psql('kept', 'CREATE EXTENSION autoinc');
	($out, $ret) = $kept->query("SELECT orchestrator.session_get('k')");
	like($kept->{stderr}, qr/installed extension is version \Q$old\E/,
		'a change of any extension makes another backend read the installed version again');
	$kept->{stderr} = '';
	$node->safe_psql('kept', "UPDATE pg_extension SET extversion = '$current' WHERE extname = 'orchestrator'");
	$node->safe_psql('kept', 'DROP EXTENSION autoinc');
	is($kept->query_safe("SELECT orchestrator.session_get('k') IS NULL"), 't', 'and it is served again');
	$kept->quit;
}

$node->stop;
done_testing();
