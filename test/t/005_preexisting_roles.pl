
# Roles are cluster-wide: orchestrator_user and orchestrator_admin may exist
# before CREATE EXTENSION.  One that someone could log in as, or hand out
# (ADMIN OPTION), is refused: whoever created it would decide who
# administers orchestrator.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('roles');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.workers = 0
});
$node->start;

my $create = sub {
	my ($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION orchestrator');
	return ($rc, $err);
};

$node->safe_psql('postgres', 'CREATE ROLE orchestrator_admin LOGIN');
my ($rc, $err) = $create->();
isnt($rc, 0, 'a pre-existing login role orchestrator_admin is refused');
like($err, qr/role "orchestrator_admin" exists already with attributes/, '... with a message naming it');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'orchestrator'"),
	'0', '... and nothing is installed');

$node->safe_psql('postgres', q{
	ALTER ROLE orchestrator_admin NOLOGIN;
	CREATE ROLE mallory LOGIN CREATEROLE;
	GRANT orchestrator_admin TO mallory WITH ADMIN OPTION;
});
($rc, $err) = $create->();
isnt($rc, 0, 'a pre-existing role that another role administers is refused');
like($err, qr/role "orchestrator_admin" exists already and is administered by mallory/, '... naming who administers it');

$node->safe_psql('postgres', 'REVOKE ADMIN OPTION FOR orchestrator_admin FROM mallory');
($rc, $err) = $create->();
is($rc, 0, 'a plain pre-existing NOLOGIN role is taken over');
like($err, qr/WARNING:  role "orchestrator_admin" exists already; its members keep it: mallory/,
	'... and its members are named for the operator to check');
is($node->safe_psql('postgres', "SELECT pg_has_role('orchestrator_admin', 'orchestrator_user', 'MEMBER')"),
	't', '... and made a member of orchestrator_user');

$node->stop;
done_testing();
