
# Webhook secrets are write-only: sealed at rest with the key in
# orchestrator.secret_key_file, opened only in C to sign.
#
#   1. deliveries reach a receiver written here and verify with an HMAC
#      computed here, for a secret of one's own and a generated one;
#   2. an orchestrator_admin login reads neither secret anywhere;
#   3. failing create_webhook/rotate_webhook_secret calls leave neither
#      secret nor statement in the server log (a control statement is);
#   4. pg_dump writes the sealed secrets, never the secrets;
#   5. without the key file, with another key, a key of the wrong length or
#      a world-readable one, nothing is sent: the attempt fails with the
#      reason and a hint, retried on the schedule (not in a hot loop), and
#      create_webhook will not mint a new key while sealed secrets exist;
#      with the key back in place the same deliveries are sent and verify;
#   6. rotate_webhook_secret: deliveries verify with the new secret only;
#   7. restored into another cluster, the secrets open once the key file
#      is copied there, and not before.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha256_base64);
use File::Copy qw(copy);
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time);

###########################################################################
# A webhook receiver: records each request (path, Standard Webhooks
# headers, raw body) and answers 204.
###########################################################################

my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Listen    => 64,
	ReuseAddr => 1,
	Proto     => 'tcp') or die "cannot listen: $!";
my $sink = 'http://127.0.0.1:' . $listener->sockport;
my @received;

sub handle_request
{
	my ($c) = @_;
	my $sel = IO::Select->new($c);
	my $buf = '';
	while ($buf !~ /\r\n\r\n/)
	{
		last unless $sel->can_read(5);
		last unless sysread($c, $buf, 65536, length $buf);
	}
	my ($head, $body) = split /\r\n\r\n/, $buf, 2;
	$body //= '';
	my ($request, @lines) = split /\r\n/, $head // '';
	my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } @lines;
	while (length($body) < ($h{'content-length'} // 0))
	{
		last unless $sel->can_read(5);
		last unless sysread($c, $body, 65536, length $body);
	}
	my ($path) = ($request // '') =~ m{^POST (\S+)};
	push @received, { path => $path // '', headers => \%h, body => $body };
	syswrite($c, "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	close $c;
}

# serve requests for up to $seconds
sub serve
{
	my ($seconds) = @_;
	my $sel = IO::Select->new($listener);
	my $until = time + $seconds;
	while ((my $left = $until - time) > 0)
	{
		next unless $sel->can_read($left);
		my $c = $listener->accept or next;
		handle_request($c);
	}
}

# serve requests until $cond holds (or $seconds pass)
sub serve_until
{
	my ($cond, $seconds) = @_;
	my $until = time + ($seconds // 60);
	while (time < $until)
	{
		serve(0.2);
		return 1 if $cond->();
	}
	return 0;
}

# Standard Webhooks verification, independent of the extension's code.
sub verifies
{
	my ($r, $key) = @_;
	my $h = $r->{headers};
	return 0 unless defined $h->{'webhook-signature'} && defined $h->{'webhook-id'};
	my $sig = hmac_sha256_base64("$h->{'webhook-id'}.$h->{'webhook-timestamp'}.$r->{body}", $key);
	$sig .= '=' while length($sig) % 4;
	return scalar grep { $_ eq "v1,$sig" } split / /, $h->{'webhook-signature'};
}

sub received_for
{
	my ($path, $run) = @_;
	return grep { $_->{path} eq $path && index($_->{body}, $run) >= 0 } @received;
}

sub random_key
{
	my ($n) = @_;
	return join('', map { chr(int(rand(256))) } 1 .. $n);
}

###########################################################################
# The cluster.
###########################################################################

my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'app'
orchestrator.poll_interval = 200
orchestrator.http_allowed_hosts = '127.0.0.1:*'
orchestrator.webhook_retry_schedule = '} . join(', ', ('2 seconds') x 40) . qq{'
log_min_messages = warning
log_min_error_statement = error
log_statement = none
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->restart;
$node->safe_psql('app', q{
CREATE EXTENSION orchestrator;
CREATE ROLE hook_admin LOGIN IN ROLE orchestrator_admin;
ALTER ROLE hook_admin SET log_statement = 'all';
SELECT orchestrator.define_workflow('one', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1"}]}');
});
my $key_file = $node->data_dir . '/orchestrator_secret.key';
ok(!-e $key_file, 'no key file before the first secret');

my $admin = sub { my ($sql, %opts) = @_; return $node->psql('app', $sql, extra_params => [ '-U', 'hook_admin' ], %opts); };
my $start = sub { return $node->safe_psql('app', "SELECT orchestrator.start_workflow('one')"); };

# An admin (not a superuser) makes two webhooks: one with its own secret,
# one with a generated secret that the call returns.
my $key = random_key(32);
my $secret = 'whsec_' . encode_base64($key, '');
my ($rc, $out, $err) = $admin->(
	"SELECT id FROM orchestrator.create_webhook('$sink/own', '{workflow.succeeded}', '$secret')");
is($rc, 0, 'an admin creates a webhook with its own secret') or diag $err;
my $own = $out;
($rc, $out, $err) = $admin->(
	"SELECT id || ' ' || generated_secret FROM orchestrator.create_webhook('$sink/gen', '{workflow.succeeded}')");
my ($gen, $generated) = split / /, $out;
like($generated // '', qr{^whsec_[A-Za-z0-9+/]{32}$}, 'a generated secret is returned by create_webhook');
my $gen_key = decode_base64(substr($generated, 6));
ok(-f $key_file && -s $key_file == 32 && ((stat $key_file)[2] & 07777) == 0600,
	'the key file was made on first need: 32 bytes, mode 0600');

# With log_statement = all (set for hook_admin above) every statement is
# logged as it arrives, before any function runs: a secret spelled out in
# it is in the log, a generated one never is.  (docs/http.md: pass NULL, or
# bind the secret as a parameter with log_parameter_max_length = 0.)
my $log = slurp_file($node->logfile);
like($log, qr/statement: SELECT id FROM orchestrator\.create_webhook\(.*\Q$secret\E/,
	'log_statement = all logs a secret spelled out in the statement (what no function can prevent)');
unlike($log, qr/\Q$generated\E|\Q@{[substr($generated, 6)]}\E/, 'a generated secret is never in the log');
$node->safe_psql('app', 'ALTER ROLE hook_admin RESET log_statement');

###########################################################################
# 1. Deliveries verify.
###########################################################################

my $r1 = $start->();
ok(serve_until(sub { received_for('/own', $r1) && received_for('/gen', $r1) }), 'both webhooks delivered');
my ($d_own) = received_for('/own', $r1);
my ($d_gen) = received_for('/gen', $r1);
ok(verifies($d_own, $key), 'a delivery verifies with the secret given to create_webhook');
ok(verifies($d_gen, $gen_key), 'a delivery verifies with the secret create_webhook generated');
ok(!verifies($d_own, $gen_key), 'and not with another secret');

###########################################################################
# 2. No relation an admin reads holds a secret, in any encoding.
###########################################################################

my @needles = (substr($secret, 6), unpack('H*', $key), substr($generated, 6), unpack('H*', $gen_key));
my $scan = q{
DO $$
DECLARE
	rel   regclass;
	n     bigint;
	seen  integer := 0;
	found text[] := '{}';
BEGIN
	FOR rel IN SELECT c.oid FROM pg_class c
			   WHERE c.relnamespace::regnamespace::text IN ('orchestrator', 'orchestrator_archive')
				 AND c.relkind IN ('r', 'v', 'm', 'p') AND has_table_privilege(c.oid, 'SELECT') LOOP
		EXECUTE format('SELECT count(*) FROM %s x WHERE x::text ~ $1', rel) INTO n USING '__NEEDLES__';
		seen := seen + 1;
		IF n > 0 THEN
			found := found || rel::text;
		END IF;
	END LOOP;
	RAISE NOTICE 'read %, holding a secret: %', seen, found;
END $$;
};
my $pattern = join('|', map { quotemeta } @needles);
$pattern =~ s/\\([+\/=])/[$1]/g;    # quotemeta's escapes, as regex classes
$scan =~ s/__NEEDLES__/$pattern/;
($rc, $out, $err) = $admin->($scan);
like($err, qr/read (\d+), holding a secret: \{\}/, 'no table or view an admin reads holds a secret');
my ($seen) = $err =~ /read (\d+)/;
cmp_ok($seen // 0, '>', 5, "(an admin reads $seen relations)");
($rc, $out, $err) = $admin->('SELECT count(*) FROM orchestrator.webhook_secrets');
like($err, qr/permission denied for table webhook_secrets/, 'an admin cannot read the sealed secrets');
($rc, $out, $err) = $admin->("SELECT orchestrator._webhook_sign(sealed_secret, 'm', 1, 'b') FROM orchestrator.webhook_secrets");
like($err, qr/permission denied/, 'nor sign with them');

###########################################################################
# 3. The server log.
###########################################################################

# Errors inside create_webhook/rotate_webhook_secret do not log their
# statement (log_min_error_statement) and do not echo the secret.
my $log_start = -s $node->logfile;
my %bad = (
	url    => 'whsec_' . encode_base64('log-marker-url-0123456789', ''),
	form   => 'whsec_LogMarkerForm!!',
	short  => 'whsec_' . encode_base64('log-marker', ''),
	events => 'whsec_' . encode_base64('log-marker-events-0123456', ''),
	rotate => 'whsec_LogMarkerRotate!!');
$admin->("SELECT orchestrator.create_webhook('http://example.com/x', '{*}', '$bad{url}')");
$admin->("SELECT orchestrator.create_webhook('$sink/x', '{*}', '$bad{form}')");
$admin->("SELECT orchestrator.create_webhook('$sink/x', '{*}', '$bad{short}')");
$admin->("SELECT orchestrator.create_webhook('$sink/x', '{Bad Event}', '$bad{events}')");
$admin->("SELECT orchestrator.rotate_webhook_secret('$own', '$bad{rotate}')");
$admin->("SELECT 1/0, 'control-statement-marker'");
$log = substr(slurp_file($node->logfile), $log_start);
like($log, qr/STATEMENT:  SELECT 1\/0, 'control-statement-marker'/, 'a failing statement is logged (the control)');
like($log, qr/invalid webhook secret/, 'the failures are logged');
for my $what (sort keys %bad)
{
	my $b64 = substr($bad{$what}, 6);
	unlike($log, qr/\Q$b64\E/, "a failing call ($what) leaves its secret out of the log");
}
unlike($log, qr/$pattern/, 'nor is any webhook\'s secret, in any encoding');

###########################################################################
# 4. pg_dump writes sealed secrets only.
###########################################################################

my $dump_sql = $node->basedir . '/app.sql';
my $dump = $node->basedir . '/app.dump';
$node->command_ok([ 'pg_dump', '-Fp', '-d', $node->connstr('app'), '-f', $dump_sql ], 'pg_dump, plain');
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('app'), '-f', $dump ], 'pg_dump, custom');
my $text = slurp_file($dump_sql);
like($text, qr/COPY orchestrator\.webhook_secrets .*\n$own\tv1:[0-9a-f]{8}:/, 'the dump holds the sealed secret');
unlike($text, qr/$pattern/, 'the dump holds no secret, in any encoding');

###########################################################################
# 5. Without the right key file nothing is sent.
###########################################################################

# the state of the deliveries of a run to /own
my $state = sub {
	my ($run) = @_;
	return $node->safe_psql('app',
		"SELECT o.status || '|' || o.attempt || '|' || coalesce(o.last_error, '') || '|' "
		  . "|| (o.available_at - o.last_attempt_at >= interval '1.9 seconds') "
		  . "FROM orchestrator.webhook_outbox o WHERE o.webhook_id = '$own' AND o.run_id = '$run'");
};
my $write_key = sub {
	my ($bytes, $mode) = @_;
	unlink $key_file;
	open my $fh, '>:raw', $key_file or die $!;
	print $fh $bytes;
	close $fh;
	chmod $mode, $key_file;
};
open my $kf, '<:raw', $key_file or die $!;
my $original = do { local $/; <$kf> };
close $kf;

$node->stop;
rename $key_file, "$key_file.away" or die $!;
$node->start;
$log_start = -s $node->logfile;
my $r2 = $start->();
my $seen_error = sub {
	my ($re) = @_;
	return serve_until(sub { my ($s, $a, $e) = split /\|/, $state->($r2); return ($a // 0) > 0 && ($e // '') =~ $re; }, 30);
};
ok($seen_error->(qr/^not sent: secret key file ".*orchestrator_secret\.key" does not exist\. Copy the key file/),
	'no key file: the delivery fails, with the reason and the hint to copy the key file');
my ($status, $attempts, $error, $backoff) = split /\|/, $state->($r2);
is($status, 'pending', 'it waits for its next attempt');
is($backoff, 'true', 'on the retry schedule, not in a hot loop');
serve(2.5);
($status, my $later) = split /\|/, $state->($r2);
cmp_ok($later, '<=', $attempts + 2, "few attempts over 2.5 seconds ($attempts, then $later)");
is(scalar(received_for('/own', $r2)) + scalar(received_for('/gen', $r2)), 0, 'nothing was sent');
$log = substr(slurp_file($node->logfile), $log_start);
like($log, qr/WARNING:  orchestrator: \d+ webhook deliver(y|ies) not sent: secret key file .* does not exist\n.*DETAIL: .*\n.*HINT:  Copy the key file/,
	'the server log says why, with a hint');

($rc, $out, $err) = $admin->("SELECT orchestrator.create_webhook('$sink/new', '{*}')");
like($err, qr/secret key file .* does not exist/, 'create_webhook does not make a new key while sealed secrets need the missing one');
ok(!-e $key_file, 'and no key file was made');

$write_key->(random_key(32), 0600);
ok($seen_error->(qr/^not sent: secret was sealed with another key/), 'another key: not sent, "sealed with another key"');
$write_key->(random_key(16), 0600);
ok($seen_error->(qr/^not sent: secret key file .* has the wrong length/), 'a key of 16 bytes: not sent, "wrong length"');
$write_key->($original, 0644);
ok($seen_error->(qr/^not sent: secret key file .* is accessible by other users/), 'a world-readable key file: not sent');
is(scalar(received_for('/own', $r2)) + scalar(received_for('/gen', $r2)), 0, 'nothing was sent meanwhile');

chmod 0600, $key_file;
ok(serve_until(sub { received_for('/own', $r2) && received_for('/gen', $r2) }, 30),
	'the key file back in place: the same deliveries are sent (no restart)');
ok(verifies((received_for('/own', $r2))[0], $key) && verifies((received_for('/gen', $r2))[0], $gen_key),
	'and verify');

###########################################################################
# 6. Rotation.
###########################################################################

($rc, $out, $err) = $admin->("SELECT orchestrator.rotate_webhook_secret('$own')");
like($out, qr{^whsec_[A-Za-z0-9+/]{32}$}, 'rotate_webhook_secret returns the new generated secret');
my $new_key = decode_base64(substr($out, 6));
my $r3 = $start->();
ok(serve_until(sub { received_for('/own', $r3) }), 'delivered after the rotation');
my ($d3) = received_for('/own', $r3);
ok(verifies($d3, $new_key) && !verifies($d3, $key), 'signed with the new secret, not the old');

$node->stop;
my $gen_pattern = join('|', map { quotemeta } substr($generated, 6), unpack('H*', $gen_key), substr($out, 6));
unlike(slurp_file($node->logfile), qr/$gen_pattern/, 'no generated secret was ever in the server log');

###########################################################################
# 7. Restored into another cluster: the key file must be copied there.
###########################################################################

my $other = PostgreSQL::Test::Cluster->new('restored');
$other->init;
$other->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'app'
orchestrator.workers = 0
orchestrator.http_allowed_hosts = '127.0.0.1:*'
});
$other->start;
# roles first, as pg_dumpall --roles-only would bring them: owners are regrole
$other->safe_psql('postgres', q{
	CREATE ROLE orchestrator_user NOLOGIN;
	CREATE ROLE orchestrator_admin NOLOGIN IN ROLE orchestrator_user;
	CREATE ROLE hook_admin LOGIN IN ROLE orchestrator_admin;
});
$other->safe_psql('postgres', 'CREATE DATABASE app');
my $list = $other->basedir . '/app.list';
IPC::Run::run [ 'pg_restore', '-l', $dump ], '|',
  [ 'grep', '-vE', ' (CONSTRAINT|INDEX|INDEX ATTACH) orchestrator [a-z_]+_p[0-9]{8}[ _]' ], '>', $list
  or die 'pg_restore -l failed';
{
	local $ENV{PGOPTIONS} = '-c orchestrator.restoring=on';
	$other->command_ok([ 'pg_restore', '--exit-on-error', '--single-transaction', '-L', $list, '-d', $other->connstr('app'), $dump ],
		'restored into another cluster');
}
my $other_key = $other->data_dir . '/orchestrator_secret.key';
my $sign = q{SELECT orchestrator._webhook_sign(sealed_secret, 'msg_1', 1700000000, 'body') FROM orchestrator.webhook_secrets WHERE webhook_id = '__ID__'};
(my $sign_own = $sign) =~ s/__ID__/$own/;
($rc, $out, $err) = $other->psql('app', $sign_own);
like($err, qr/ERROR:  secret key file .* does not exist.*HINT:  Copy the key file/s,
	'without the key file the restored secrets do not open, and the error says to copy it');
($rc, $out, $err) = $other->psql('app', "SELECT orchestrator.create_webhook('$sink/x')");
like($err, qr/secret key file .* does not exist/, 'nor does create_webhook make a new key there');

copy($key_file, $other_key) or die $!;
chmod 0600, $other_key;
my $want = hmac_sha256_base64('msg_1.1700000000.body', $key);
$want .= '=' while length($want) % 4;
is($other->safe_psql('app', $sign_own), "v1,$want", 'with the key file copied, the restored secret signs (independent HMAC)');

$other->stop;
done_testing();
