
# Upgrades: every released version, installed as it was released and
# updated with ALTER EXTENSION ... UPDATE, ends up with exactly the objects
# of a fresh install of the current version; the current library serves the
# old schema until it is updated, and the updated one afterwards.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

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
  SELECT 'config ' || coalesce(extconfig::regclass[]::text, '') || ' ' || coalesce(extcondition::text, '')
  FROM pg_extension WHERE extname = 'orchestrator'
) x(line)
};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION orchestrator');
my $want = $node->safe_psql('fresh', $catalog);

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

	my $before = $node->safe_psql('upgraded', "SELECT orchestrator.start_workflow('chain')");
	ok($wait_for->($before), "$from: the current library runs a workflow on the $from schema");

	$node->safe_psql('upgraded', 'ALTER EXTENSION orchestrator UPDATE');
	is($node->safe_psql('upgraded', "SELECT extversion FROM pg_extension WHERE extname = 'orchestrator'"),
		$current, "$from: updated to $current");
	is($node->safe_psql('upgraded', $catalog), $want, "$from: the updated schema is that of a fresh $current");

	my $after = $node->safe_psql('upgraded', "SELECT orchestrator.start_workflow('chain')");
	ok($wait_for->($after), "$from: a workflow runs after the update");
	is($node->safe_psql('upgraded',
		"SELECT string_agg(type, ',' ORDER BY seq) FROM orchestrator.workflow_events WHERE run_id = '$before'"),
		'workflow.created,workflow.started,step.started,step.succeeded,step.started,step.succeeded,workflow.succeeded',
		"$from: the history of the run started before the update is whole");
}

$node->stop;
done_testing();
