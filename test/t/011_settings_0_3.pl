# A postgresql.conf written for 0.3 meets the integer settings of 0.4.
#
# 0.3 spelled orchestrator.default_lease, default_step_timeout, retention and
# http_breaker_cooldown as interval text ('5 minutes').  They are integers
# with a unit now: PostgreSQL reads '5min', '30s', '90d', not '5 minutes'.
# What happens (docs/operations.md, "Upgrading"):
#   1. the server starts, with a WARNING per such line in its log, and the
#      setting keeps its default (it is silently reset, as far as SHOW goes);
#   2. pg_file_settings names the line that could not be applied;
#   3. maintain() refuses to retire anything while orchestrator.retention is
#      such a line (a default nobody chose could delete history meant to be
#      kept), with the new spelling in its hint;
#   4. written anew ('30d') and reloaded, it applies and maintain() runs.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('settings_0_3');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.workers = 0
max_worker_processes = 16
orchestrator.default_lease = '10 minutes'
orchestrator.default_step_timeout = '2 minutes'
orchestrator.retention = '365 days'
orchestrator.http_breaker_cooldown = '45 seconds'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator');

# 1. It starts; each old spelling is a warning and the default applies.
my $log = slurp_file($node->logfile);
for my $name (qw(default_lease default_step_timeout retention http_breaker_cooldown))
{
	like($log, qr/WARNING:  invalid value for parameter "orchestrator\.$name"/,
		"0.3 spelling of orchestrator.$name is a warning at start");
}
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(current_setting(n), ' ' ORDER BY n) FROM unnest(ARRAY['orchestrator.default_lease',"
		  . " 'orchestrator.default_step_timeout', 'orchestrator.http_breaker_cooldown', 'orchestrator.retention']) n"),
	'5min 1min 30s 90d',
	'the settings keep their defaults');

# 2. pg_file_settings names what was not applied.
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_file_settings"
		  . " WHERE name LIKE 'orchestrator.%' AND error IS NOT NULL"),
	'orchestrator.default_lease=10 minutes, orchestrator.default_step_timeout=2 minutes, '
	  . 'orchestrator.http_breaker_cooldown=45 seconds, orchestrator.retention=365 days',
	'pg_file_settings lists the lines that could not be applied');

# 3. maintain() refuses rather than retire by the default.
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT orchestrator.maintain()');
isnt($ret, 0, 'maintain() refuses while the retention line is not applied');
like($err, qr/orchestrator\.retention = '365 days' in .*postgresql\.conf line \d+ is not a valid setting/,
	'the error names the line');
like($err, qr/write '90d', '2160h' or '7776000s'/, 'the hint gives the new spelling');

# 4. Spelled anew and reloaded, the values apply.
my $conf = slurp_file($node->data_dir . '/postgresql.conf');
$conf =~ s/'10 minutes'/'10min'/;
$conf =~ s/'2 minutes'/'2min'/;
$conf =~ s/'365 days'/'365d'/;
$conf =~ s/'45 seconds'/'45s'/;
open(my $fh, '>', $node->data_dir . '/postgresql.conf') or die $!;
print $fh $conf;
close($fh);
$node->reload;
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(current_setting(n), ' ' ORDER BY n) FROM unnest(ARRAY['orchestrator.default_lease',"
		  . " 'orchestrator.default_step_timeout', 'orchestrator.http_breaker_cooldown', 'orchestrator.retention']) n"),
	'10min 2min 45s 365d',
	'the new spellings apply after a reload');
is($node->safe_psql('postgres', "SELECT orchestrator.maintain() ->> 'retention'"), '365 days',
	'maintain() runs again, with the retention written');

$node->stop;
done_testing();
