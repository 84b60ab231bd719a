
# Copyright and license: see the top-level README.
#
# Flow control survives an immediate shutdown (no checkpoint, WAL replay at
# start): runs queued by an admission limit stay queued and are admitted as
# slots free afterwards, the slot count is what it was; steps waiting for a
# rate limit's token stay scheduled at their times, and the bucket does not
# refill by the restart (no burst).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('flow_control');
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
});
my @alice = (extra_params => ['-U', 'alice']);

# At most 2 active reports; 5 started, one per transaction.
$node->safe_psql('postgres', q{
SELECT orchestrator.define_workflow('report', '{"max_active_runs": 2, "steps": [{"name": "w", "kind": "wait", "signal": "done"}]}');
SELECT format('SELECT orchestrator.start_workflow(%L, %L)', 'report', jsonb_build_object('i', i)) FROM generate_series(1, 5) i \gexec
SELECT orchestrator.define_workflow('call', '{"steps": [{"name": "c", "kind": "external", "queue": "partner",
  "rate_limit": {"key": "partner", "per_second": 0.2, "burst": 2}}]}');
}, @alice);
# Rate limit: 2 tokens, then one each 5 seconds; 5 runs: 2 ready, 3 scheduled.
$node->safe_psql('postgres', q{SELECT 'SELECT orchestrator.start_workflow(''call'')' FROM generate_series(1, 5) \gexec}, @alice);

my $states = q{SELECT string_agg(status, ',' ORDER BY id) FROM orchestrator.workflow_runs WHERE name = 'report'};
is($node->safe_psql('postgres', $states), 'running,running,queued,queued,queued', 'two reports run, three are queued');
my $scheduled_before = $node->safe_psql('postgres',
	q{SELECT string_agg(s.ready_at::text, ',' ORDER BY s.ready_at) FROM orchestrator.workflow_steps s
	  JOIN orchestrator.workflow_runs r ON r.id = s.run_id WHERE r.name = 'call' AND s.status = 'scheduled'});
is(scalar(split(/,/, $scheduled_before)), 3, 'three rate-limited steps wait as scheduled');
my $tokens_before = $node->safe_psql('postgres', q{SELECT tokens FROM orchestrator.rate_buckets WHERE key = 'partner'});

$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres', $states), 'running,running,queued,queued,queued', 'after the restart: still two running, three queued');
is($node->safe_psql('postgres', q{SELECT active FROM orchestrator.admission_slots WHERE key = 'report'}),
	'2', 'the slot count survives');
is($node->safe_psql('postgres',
		q{SELECT string_agg(s.ready_at::text, ',' ORDER BY s.ready_at) FROM orchestrator.workflow_steps s
		  JOIN orchestrator.workflow_runs r ON r.id = s.run_id WHERE r.name = 'call' AND s.status = 'scheduled'}),
	$scheduled_before, 'the scheduled steps keep their times');
is($node->safe_psql('postgres', q{SELECT tokens FROM orchestrator.rate_buckets WHERE key = 'partner'}),
	$tokens_before, 'the bucket is as it was: no refill by the restart');

# A new step right after the restart gets no burst: its token comes after
# those already promised (5 s after the last scheduled one).
$node->safe_psql('postgres', q{SELECT orchestrator.start_workflow('call')}, @alice);
is($node->safe_psql('postgres',
		q{SELECT s.status || ' ' || (s.ready_at > (SELECT max(x.ready_at) FROM orchestrator.workflow_steps x
		    WHERE x.run_id <> s.run_id AND x.status = 'scheduled'))
		  FROM orchestrator.workflow_steps s JOIN orchestrator.workflow_runs r ON r.id = s.run_id
		  WHERE r.name = 'call' ORDER BY r.id DESC LIMIT 1}),
	'scheduled true', 'a step after the restart waits behind the promised tokens');

# Runs finish after the restart: the queued ones are admitted, best first.
$node->safe_psql('postgres', q{
SELECT format('SELECT orchestrator.signal_workflow(%L, %L)', id, 'done') FROM orchestrator.runs WHERE name = 'report' AND status = 'running' \gexec
}, @alice);
is($node->safe_psql('postgres', $states), 'succeeded,succeeded,running,running,queued', 'two queued runs admitted after the restart');
$node->safe_psql('postgres', q{
SELECT format('SELECT orchestrator.signal_workflow(%L, %L)', id, 'done') FROM orchestrator.runs WHERE name = 'report' AND status = 'running' \gexec
}, @alice);
$node->safe_psql('postgres', q{
SELECT format('SELECT orchestrator.signal_workflow(%L, %L)', id, 'done') FROM orchestrator.runs WHERE name = 'report' AND status = 'running' \gexec
}, @alice);
is($node->safe_psql('postgres', $states), 'succeeded,succeeded,succeeded,succeeded,succeeded', 'every report ran');
is($node->safe_psql('postgres', q{SELECT active FROM orchestrator.admission_slots WHERE key = 'report'}),
	'0', 'every slot given back');

# The scheduled steps become ready when their tokens are due (the
# dispatchers' timers), in order.
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM orchestrator.workflow_steps s JOIN orchestrator.workflow_runs r ON r.id = s.run_id
		  WHERE r.name = 'call' AND s.status = 'scheduled'}),
	'the scheduled steps become ready after the restart');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM orchestrator.workflow_steps s JOIN orchestrator.workflow_runs r ON r.id = s.run_id
		  WHERE r.name = 'call' AND s.status = 'ready'}),
	'6', 'all six calls are ready for the worker');

$node->stop;
done_testing();
