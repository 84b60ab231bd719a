
# The order in which a dispatcher's rolling batch claims sql steps
# (decision 85): each claim of a batch goes on from where the batch's last
# claim stopped instead of reading the queue from its start again, and
# that must not change what is claimed.  Pinned here, with one dispatcher
# whose batch keeps rolling (batch_window 10 s) while a slow step runs:
#   - a step of higher priority made ready during the batch is claimed at
#     the batch's next claim, before the due steps of lower priority that
#     follow where the last claim stopped;
#   - a step whose queue row another transaction holds is skipped, and
#     claimed in the same batch once that transaction lets it go, although
#     it sorts before where the batch's claims had got to.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('claim_order');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'orchestrator'
orchestrator.database = 'postgres'
orchestrator.workers = 1
orchestrator.poll_interval = 200
orchestrator.batch_window = 10000
max_worker_processes = 16
log_min_messages = warning
});
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('slow', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT pg_sleep(1.5)"}]}');
SELECT orchestrator.define_workflow('quick', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
CREATE TABLE started (label text PRIMARY KEY, id uuid NOT NULL);
});

# each start_runs() in one transaction (the statements of one call commit together)
sub start_runs
{
	my ($sql) = @_;
	$node->safe_psql('postgres', $sql);
}

sub wait_running
{
	my ($label) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT count(*) = 1 FROM orchestrator._worker_status() w JOIN started s ON s.id = w.run_id
WHERE s.label = '$label' AND w.step = 'a'});
}

sub wait_done
{
	my ($like) = @_;
	return $node->poll_query_until(
		'postgres', qq{
SELECT bool_and(r.status = 'succeeded') FROM orchestrator.runs r JOIN started s ON s.id = r.id
WHERE s.label LIKE '$like'});
}

# --- a higher priority made ready during the batch comes first ---
# The batch's first claim (4 rows) takes the slow step (priority 5) and three
# of the six quick ones (priority 0); while the slow step runs, a quick run
# of priority 3 starts.  The next claim takes it before the three quick
# ones left.
start_runs(q{
BEGIN;
INSERT INTO started VALUES ('p_slow', orchestrator.start_workflow('slow', '{}', '{"priority": 5}'));
INSERT INTO started SELECT 'p_low_' || i, orchestrator.start_workflow('quick', '{}', '{"priority": 0}')
FROM generate_series(1, 6) i;
COMMIT;
});
ok(wait_running('p_slow'), 'the slow step runs');
start_runs(q{INSERT INTO started VALUES ('p_high', orchestrator.start_workflow('quick', '{}', '{"priority": 3}'))});
ok(wait_done('p_%'), 'all runs succeed');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.workflow_steps l JOIN started s ON s.id = l.run_id
WHERE s.label LIKE 'p_low_%'
  AND l.started_at < (SELECT h.started_at FROM orchestrator.workflow_steps h JOIN started t ON t.id = h.run_id
                      WHERE t.label = 'p_high')}),
	'3',
	'the step of higher priority made ready during the batch comes before the lower ones still due');
is( $node->safe_psql(
		'postgres', q{
SELECT count(DISTINCT e.xmin::text) FROM orchestrator.workflow_events e JOIN started s ON s.id = e.run_id
WHERE s.label LIKE 'p_%' AND e.type = 'step.started'}),
	'1',
	'all in the one batch');

# --- a held row is skipped, and claimed in the same batch once let go ---
# While a slow step (the blocker) runs, five quick runs start: h_first (a
# slow one, priority 1) and h_2..h_5 (priority 0); another transaction
# locks h_3's queue row.  The batch's next claim takes h_first and the
# three free ones; while h_first runs, the lock goes; the claim after
# that finds nothing after h_5, and goes back to the start for h_3.
start_runs(q{INSERT INTO started VALUES ('h_blocker', orchestrator.start_workflow('slow'))});
ok(wait_running('h_blocker'), 'the blocker runs');
start_runs(q{
BEGIN;
INSERT INTO started VALUES ('h_first', orchestrator.start_workflow('slow', '{}', '{"priority": 1}'));
INSERT INTO started SELECT 'h_' || i, orchestrator.start_workflow('quick') FROM generate_series(2, 5) i;
COMMIT;
});
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{
BEGIN;
SELECT q.step FROM orchestrator.work_queue q JOIN started s ON s.id = q.run_id
WHERE s.label = 'h_3' FOR UPDATE OF q;
});
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.workflow_steps l JOIN started s ON s.id = l.run_id
WHERE s.label LIKE 'h\_%' AND s.label <> 'h_blocker' AND l.started_at IS NOT NULL}),
	'0',
	'the runs wait for the blocker');
ok(wait_running('h_first'), 'the slow step of priority 1 runs');
$holder->query_safe('COMMIT');
$holder->quit;
ok(wait_done('h_%'), 'all runs succeed');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM orchestrator.workflow_steps l JOIN started s ON s.id = l.run_id
WHERE s.label IN ('h_2', 'h_4', 'h_5')
  AND l.started_at < (SELECT h.started_at FROM orchestrator.workflow_steps h JOIN started t ON t.id = h.run_id
                      WHERE t.label = 'h_3')}),
	'3',
	'the held row was skipped');
is( $node->safe_psql(
		'postgres', q{
SELECT count(DISTINCT e.xmin::text) FROM orchestrator.workflow_events e JOIN started s ON s.id = e.run_id
WHERE s.label IN ('h_first', 'h_3') AND e.type = 'step.started'}),
	'1',
	'the row let go was claimed in the same batch');

$node->stop;
done_testing();
