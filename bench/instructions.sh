#!/usr/bin/env bash
# Instructions a backend executes per start_workflow() of a three-step run,
# and per one-step external run (started in bulk, claimed 50 at a time and
# completed with complete_steps()), counted by valgrind (callgrind's Ir) in
# a single-user backend; and the dispatchers' instructions per sql step of
# three-step runs and per one-step sql run, started in bulk, counted with
# the whole server under callgrind.  The one-step sql run is the external
# run's counterpart: the same run, its step done by a dispatcher.  Unlike CPU time on a shared 2-core machine, the counts repeat
# to within about 1.5% (the tables grow between counts), so a change of a few
# percent shows in one round.
#
#   bash bench/instructions.sh                        (as root on Debian 12)
#   A_BINDIR=<installation> B_BINDIR=<another> ROUNDS=2 bash bench/instructions.sh
# Both installations must hold the same extension version (the cluster is
# made with A's and counted with each in turn, alternating).
#   SETUP_SQL='<statements>': run after CREATE EXTENSION (a what-if: an index
#   added or dropped, a setting)
#   TRICKLE=K: also the dispatchers' instructions per three-step run when
#   runs come one at a time (K and 2K starts, one every TRICKLE_GAP seconds,
#   0.2 by default), beside the bulk figure per run
#
# Each figure is a difference: the count of a session doing 2N of a thing
# minus that of one doing N, over N, so that the backend's start and exit
# cancel out.  Commits write and flush WAL: their user-space part counts,
# the kernel's does not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
a_bin=${A_BINDIR:-${PG_BINDIR:-/usr/lib/postgresql/15/bin}}
b_bin=${B_BINDIR:-}
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && PG_BINDIR=$a_bin bash "$root/test/setup.sh" >/dev/null
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq valgrind >/dev/null; }
rounds=${ROUNDS:-2}
n=${N:-300}
# the external sessions claim 50 at a time: other runs would be left unclaimed
[ $((n % 50)) -eq 0 ] && [ "$n" -gt 0 ] || { echo "N must be a positive multiple of 50 (got $n)" >&2; exit 2; }
session=${SESSION_SECONDS:-45}
port=${PORT:-55540}
data=$(mktemp -d /tmp/orchestrator-instructions.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'PG_BINDIR=$a_bin bash "$root/test/cluster.sh" stop "$data/pg"; [ -n "${KEEP:-}" ] || rm -rf "$data"' EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PG_BINDIR=$a_bin bash "$root/test/cluster.sh" start "$data/pg" "$port" bench
as_pg "$a_bin/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION orchestrator;
SELECT orchestrator.define_workflow('noop3', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}');
SELECT orchestrator.define_workflow('noop1', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
SELECT orchestrator.define_workflow('ext1', '{"steps": [{"name": "a", "kind": "external", "queue": "bench"}]}');
SQL
if [ -n "${SETUP_SQL:-}" ]; then
	as_pg "$a_bin/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 -c "$SETUP_SQL" >/dev/null
fi
PG_BINDIR=$a_bin bash "$root/test/cluster.sh" stop "$data/pg"

# the sessions: k starts, one per statement (each its own transaction);
# k external runs started in one statement, then claimed and completed
for k in "$n" $((2 * n)); do
	awk -v k="$k" 'BEGIN {for (i = 0; i < k; i++) print "SELECT orchestrator.start_workflow(\x27noop3\x27);"}' > "$data/starts.$k.sql"
	{
		echo "SELECT count(orchestrator.start_workflow('ext1')) FROM generate_series(1, $k);"
		for _ in $(seq $((k / 50))); do
			echo "WITH c AS MATERIALIZED (SELECT * FROM orchestrator.claim_steps('bench', 'w', 50)) SELECT count(*) FROM orchestrator.complete_steps((SELECT array_agg(run_id) FROM c), (SELECT array_agg(step) FROM c), (SELECT array_agg(lease_token) FROM c), (SELECT array_agg('{}'::jsonb) FROM c));"
		done
	} > "$data/external.$k.sql"
done
chmod a+r "$data"/*.sql

# instructions of one single-user session running a file, after a VACUUM
# (not counted: a single-user server has no autovacuum, and the dead queue
# rows of earlier sessions would otherwise pile up under the claims)
count() {
	echo "VACUUM" | as_pg "$1/postgres" --single -D "$data/pg" bench >/dev/null 2>&1
	as_pg valgrind --tool=callgrind --callgrind-out-file="$data/callgrind.out" \
		"$1/postgres" --single -D "$data/pg" bench < "$2" 2>&1 >/dev/null | awk '/Collected/ {print $4}'
}
per() { local x y; x=$(count "$1" "$data/$2.$n.sql"); y=$(count "$1" "$data/$2.$((2 * n)).sql"); echo $(((y - x) / n)); }

# instructions of the two dispatchers running k three-step runs: the whole
# server runs under callgrind (each process counted in a file of its own),
# and the dispatchers' files are summed after a fast shutdown.  Their idle
# passes count too (about 1.2 million instructions a second under valgrind,
# for both), so every session lasts the same time from the dispatchers'
# start (SESSION_SECONDS), and the idle part cancels out of the difference.
#   bulk: the k runs started in one statement;
#   trickle: started one at a time, TRICKLE_GAP seconds apart, each in its
#   own transaction, with orchestrator.poll_interval at an hour so that the
#   dispatchers make no idle passes (at a trickle, turns for runs replace
#   idle passes: with them, the difference of two sessions would take the
#   replaced passes off the runs' count)
count_dispatch() {
	local bin=$1 k=$2 how=$3 wf=${4:-noop3} pids t0 options=""
	local psql=("$bin/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench)
	[ "$how" = trickle ] && options="-c orchestrator.poll_interval=1h"
	rm -f "$data"/cg.*
	as_pg bash -c "valgrind --tool=callgrind --callgrind-out-file='$data/cg.%p' '$bin/postgres' -D '$data/pg' $options > '$data/valgrind.log' 2>&1 &"
	until [ "$(as_pg "${psql[@]}" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'orchestrator dispatcher'" 2>/dev/null)" = 2 ]; do sleep 1; done
	t0=$(date +%s)
	pids=$(as_pg "${psql[@]}" -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE backend_type = 'orchestrator dispatcher'")
	if [ "$how" = bulk ]; then
		as_pg "${psql[@]}" -c "SELECT count(orchestrator.start_workflow('$wf')) FROM generate_series(1, $k)" >/dev/null
	else
		# one session, so that no backend starts between the runs
		awk -v k="$k" -v gap="${TRICKLE_GAP:-0.2}" 'BEGIN {for (i = 0; i < k; i++) print "SELECT orchestrator.start_workflow(\x27noop3\x27);\n\\! sleep " gap}' > "$data/trickle.sql"
		chmod a+r "$data/trickle.sql"
		as_pg "${psql[@]}" -v ON_ERROR_STOP=1 -f "$data/trickle.sql" >/dev/null
	fi
	until [ "$(as_pg "${psql[@]}" -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL")" = 0 ]; do sleep 1; done
	if [ $(($(date +%s) - t0)) -ge "$session" ]; then
		echo "the runs took longer than SESSION_SECONDS=$session to finish: raise it" >&2; exit 1
	fi
	sleep $((session - ($(date +%s) - t0)))
	as_pg "$bin/pg_ctl" -D "$data/pg" -m fast -w stop >/dev/null
	for p in $pids; do awk '/^totals:/ {print $2}' "$data/cg.$p"; done | awk '{s += $1} END {print s}'
}
per_trickle_run() {
	local x y k=$TRICKLE
	drain_backlog "$1"; x=$(count_dispatch "$1" "$k" trickle)
	drain_backlog "$1"; y=$(count_dispatch "$1" $((2 * k)) trickle)
	echo $(((y - x) / k))
}

# the runs the single-user sessions started are drained first, uncounted
drain_backlog() {
	PG_BINDIR=$1 bash "$root/test/cluster.sh" start "$data/pg" "$port" bench
	until [ "$(as_pg "$1/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL")" = 0 ]; do sleep 1; done
	as_pg "$1/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -c "VACUUM" >/dev/null
	PG_BINDIR=$1 bash "$root/test/cluster.sh" stop "$data/pg"
}
per_step() {
	local x y
	drain_backlog "$1"; x=$(count_dispatch "$1" "$n" bulk)
	drain_backlog "$1"; y=$(count_dispatch "$1" $((2 * n)) bulk)
	echo $(((y - x) / (3 * n)))
}
per_one_step_run() {
	local x y
	drain_backlog "$1"; x=$(count_dispatch "$1" "$n" bulk noop1)
	drain_backlog "$1"; y=$(count_dispatch "$1" $((2 * n)) bulk noop1)
	echo $(((y - x) / n))
}

echo "# orchestrator instructions per start, per sql step and per external run ($(date -u +%F), valgrind $(valgrind --version | sed 's/valgrind-//'), N=$n)"
echo "# reproduce: A_BINDIR=$a_bin${b_bin:+ B_BINDIR=$b_bin}${SETUP_SQL:+ SETUP_SQL=\"$SETUP_SQL\"}${TRICKLE:+ TRICKLE=$TRICKLE} ROUNDS=$rounds N=$n SESSION_SECONDS=$session bash bench/instructions.sh"
printf '%-6s %-6s %-24s %-24s %-28s %-52s %s\n' round build 'start_workflow(noop3)' 'dispatchers, sql step' 'dispatchers, one-step run' 'external run (bulk start, claim 50, complete_steps)' "${TRICKLE:+dispatchers per run: bulk, trickle}"
for r in $(seq "$rounds"); do
	for build in A ${b_bin:+B}; do
		bin=$a_bin; [ "$build" = B ] && bin=$b_bin
		step=$(per_step "$bin")
		printf '%-6s %-6s %-24s %-24s %-28s %-52s %s\n' "$r" "$build" "$(per "$bin" starts)" "$step" "$(per_one_step_run "$bin")" "$(per "$bin" external)" \
			"${TRICKLE:+$((3 * step)), $(per_trickle_run "$bin")}"
	done
done
