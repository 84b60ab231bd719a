# Copyright and license: see the top-level README.
#
# docs/patterns.md runs as written: every ```sql block, in order, as the
# role its first line names ("-- as <role>").  On the way, pg_cron really
# starts a run of a scheduled workflow (schedule_workflow), as the role that
# scheduled it, and a trigger starts a run per row inserted.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('patterns');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator,pg_cron'
orchestrator.database = 'postgres'
orchestrator.http_allowed_hosts = '127.0.0.1:9'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION orchestrator; CREATE EXTENSION pg_cron;');

my $doc = slurp_file("$ENV{TESTDIR}/docs/patterns.md");
my @blocks = $doc =~ /^```sql\n(.*?)^```$/msg;
ok(@blocks >= 8, scalar(@blocks) . ' SQL blocks in docs/patterns.md');

for my $i (0 .. $#blocks)
{
	my $sql = $blocks[$i];
	my ($role) = $sql =~ /\A-- as (\w+)\n/;
	ok(defined $role, "block $i names its role") or next;

	# Before the schedules are removed: pg_cron has started the scheduled
	# workflow on its own, as shop.
	if ($sql =~ /unschedule_workflow/)
	{
		local $PostgreSQL::Test::Utils::timeout_default = 150;
		ok( $node->poll_query_until(
				'postgres', q{SELECT EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
				 WHERE j.jobname = 'workflow:report-every-minute' AND d.status = 'succeeded')}),
			'pg_cron ran the every-minute schedule (pg_cron starts jobs on the minute)');
		ok( $node->poll_query_until(
				'postgres', q{SELECT count(*) >= 2 FROM orchestrator.runs
				 WHERE name = 'daily_report' AND started_by = 'shop'::regrole AND status = 'succeeded'}),
			'the scheduled run succeeded, started as shop');
		is( $node->safe_psql(
				'postgres', q{SELECT count(*) FROM orchestrator.runs WHERE name = 'daily_report' AND started_by <> 'shop'::regrole}),
			'0', 'no run of the schedule was started as another role');
	}

	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role ], on_error_stop => 1);
	is($rc, 0, "block $i runs as $role") or diag("block:\n$sql\nstdout:\n$out\nstderr:\n$err");

	if ($sql =~ /claim_steps\('packing'/)
	{
		like($out, qr/^2\n0\n/m, 'the packer claimed two orders (the limit), a second claim none');
	}
	if ($sql =~ /'ship_label', jsonb_build_object/)
	{
		like($out, qr/^8\nready\|5\nscheduled\|3$/m, 'five labels ready (the burst), three scheduled');
	}
	if ($sql =~ /'month_report', jsonb_build_object/)
	{
		like($out, qr/^5\npending\|2\nqueued\|3$/m, 'two reports admitted, three queued');
	}
	if ($sql =~ /reporter-1/)
	{
		like($out, qr/^t\npending\|2\nqueued\|2\nsucceeded\|1\nworkflow\.created\nworkflow\.queued\nworkflow\.admitted$/m,
			'a finished report admitted the oldest queued one');
	}
	if ($sql =~ /get_tenant_limits/)
	{
		like($out, qr/^acme\|3\|0\|0$/m, 'the tenant limit, read back');
	}
	if ($sql =~ /AS same_run/)
	{
		like($out, qr/^t$/m, 'a second request with the same idempotency key returns the first run');
	}
	if ($sql =~ /'approved', '\{"by": "ann"\}'/)
	{
		ok( $node->poll_query_until(
				'postgres', q{SELECT state = 'paid, approved by ann' FROM shop.refunds WHERE order_id = 7}),
			'the refund was paid once approved, with the approver\'s name');
		is( $node->safe_psql('postgres', q{SELECT status FROM orchestrator.runs WHERE name = 'refund'}),
			'succeeded', 'one refund run, succeeded');
	}
	if ($sql =~ /start_workflow\('place_order'/)
	{
		ok( $node->poll_query_until(
				'postgres', q{SELECT status = 'failed' FROM orchestrator.runs WHERE name = 'place_order'}),
			'the order run failed');
		is( $node->safe_psql(
				'postgres', q{SELECT string_agg(step || ':' || status, ',' ORDER BY step) FROM orchestrator.run_steps
				 WHERE workflow = 'place_order'}),
			'charge:dead,compensate:reserve:succeeded,reserve:compensated',
			'the charge is dead, the reservation compensated');
		is($node->safe_psql('postgres', q{SELECT reserved FROM shop.stock WHERE sku = 'mug'}),
			'0', 'the stock reservation was released');
	}
	if ($sql =~ /WHERE r\.name = 'place_order' ORDER BY e\.seq/)
	{
		like($out, qr/step\.compensated\|reserve\nworkflow\.failed\|$/m, 'the history ends with the compensation and the failure');
	}
	if ($sql =~ /INSERT INTO shop\.orders/)
	{
		is( $node->safe_psql(
				'postgres', q{SELECT string_agg(started_by::text || ':' || (input ->> 'customer'), ',' ORDER BY id)
				 FROM orchestrator.runs WHERE name = 'fulfil_order'}),
			'clerk:ada,clerk:grace,clerk:edsger', 'the trigger started a run per order, as clerk');
	}
}

ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM shop.orders WHERE parcel LIKE 'P-%'}),
	'the two packed orders got their parcel numbers');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM orchestrator.workflow_events WHERE type = 'step.progress'}),
	'2', 'one progress event per packed order');
ok( $node->poll_query_until(
		'postgres', q{SELECT status = 'succeeded' AND result ->> 'total' = '71.700' AND jsonb_array_length(result -> 'quotes') = 3
		 FROM orchestrator.runs WHERE name = 'quote_orders'}),
	'the fan-out quoted every customer and the fan-in summed the quotes');
ok( $node->poll_query_until(
		'postgres', q{SELECT r.status = 'succeeded' AND r.result #>> '{log,sent}' = 'Thank you, ada'
		   AND (SELECT string_agg(c.status || ':' || c.parent_step || ':' || c.started_by, ',')
				FROM orchestrator.runs c WHERE c.parent_id = r.id) = 'succeeded:thank:shop'
		 FROM orchestrator.runs r WHERE r.name = 'follow_up'}),
	'the child run succeeded, started as shop, and its result reached the parent');
is($node->safe_psql('postgres', q{SELECT count(*) FROM cron.job WHERE jobname LIKE 'workflow:%'}),
	'0', 'the schedules are removed');
is( $node->safe_psql(
		'postgres', q{SELECT (result ->> 'day')::date = current_date - 1 FROM orchestrator.runs
		 WHERE name = 'daily_report' AND status = 'succeeded' ORDER BY id DESC LIMIT 1}),
	't', 'a scheduled run reported yesterday');

$node->stop;
done_testing();
