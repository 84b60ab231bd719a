
# Copyright and license: see the top-level README.
#
# Sessions are durable: what session_set() returned before an immediate
# shutdown (no checkpoint, WAL replay at start) is there afterwards, with
# its version, expiry and lock; versions go on from there.  The private
# channel names are made again at start (a LISTEN does not survive a
# restart either).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('sessions');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION orchestrator;
CREATE ROLE alice LOGIN IN ROLE orchestrator_user;
CREATE ROLE bob LOGIN IN ROLE orchestrator_user;
});

my @alice = (extra_params => ['-U', 'alice']);

# 1000 sessions, each set in its own transaction (as clients do), a few
# written several times, one locked, one with an expiry, one deleted.
$node->safe_psql('postgres', q{
SELECT format('SELECT orchestrator.session_set(%L, %L)', 's:' || i, jsonb_build_object('i', i)) FROM generate_series(1, 1000) i \gexec
SELECT orchestrator.session_set('s:1', '{"i": 1, "again": 1}');
SELECT orchestrator.session_set('s:1', '{"i": 1, "again": 2}');
SELECT orchestrator.session_lock('s:2', '00000000-0000-0000-0000-000000000002', '1 hour');
SELECT orchestrator.session_set('s:3', '"expires"', ttl => '1 day');
SELECT orchestrator.session_delete('s:4');
}, @alice);
# the same key in another role
$node->safe_psql('postgres', q{SELECT orchestrator.session_set('s:1', '"bob''s"')}, extra_params => ['-U', 'bob']);
my $channel_before = $node->safe_psql('postgres', 'SELECT orchestrator.session_channel()', @alice);

$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres', q{SELECT count(*) FROM orchestrator.session_list('s:', 10000)}, @alice),
	'999', 'every session committed before the immediate shutdown is there, the deleted one is not');
is($node->safe_psql('postgres', q{SELECT value::text || ' ' || version FROM orchestrator.session_read('s:1')}, @alice),
	'{"i": 1, "again": 2} 3', 'value and version survive');
is($node->safe_psql('postgres', q{SELECT orchestrator.session_get('s:1')}, extra_params => ['-U', 'bob']),
	'"bob\'s"', 'the other role\'s session with the same key survives apart');
is($node->safe_psql('postgres', q{SELECT locked FROM orchestrator.session_read('s:2')}, @alice),
	't', 'the lock survives');
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT orchestrator.session_set('s:2', '"no token"')}, @alice);
like($err, qr/session "s:2" is locked/, 'a set without the token is refused after the restart');
is($node->safe_psql('postgres',
		q{SELECT orchestrator.session_set('s:2', '"token"', lock_token => '00000000-0000-0000-0000-000000000002')}, @alice),
	'2', 'the token still writes, the version goes on');
is($node->safe_psql('postgres',
		q{SELECT expires_at > now() + interval '23 hours' FROM orchestrator.session_read('s:3')}, @alice),
	't', 'the expiry survives');
is($node->safe_psql('postgres', q{SELECT orchestrator.session_set('s:1', '"after"', expected_version => 3)}, @alice),
	'4', 'expected_version works against the recovered version');
isnt($node->safe_psql('postgres', 'SELECT orchestrator.session_channel()', @alice), $channel_before,
	'the private channel has a new name after the restart');

$node->stop;
done_testing();
