#!/usr/bin/env bash
# Instructions a backend executes per start_workflow() of a three-step run,
# and per one-step external run (started in bulk, claimed 50 at a time and
# completed with complete_steps()), counted by valgrind (callgrind's Ir) in
# a single-user backend.  Unlike CPU time on a shared 2-core machine, the
# count repeats to within about 1.5% (the tables grow between counts), so a
# change of a few percent in the backend's work shows in one round.  The
# dispatchers' share (sql steps) is not counted here: they are background
# workers, and a single-user backend has none.
#
#   bash bench/instructions.sh                        (as root on Debian 12)
#   A_BINDIR=<installation> B_BINDIR=<another> ROUNDS=2 bash bench/instructions.sh
# Both installations must hold the same extension version (the cluster is
# made with A's and counted with each in turn, alternating).
#   SETUP_SQL='<statements>': run after CREATE EXTENSION (a what-if: an index
#   added or dropped, a setting)
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

echo "# orchestrator instructions per start and per external run ($(date -u +%F), valgrind $(valgrind --version | sed 's/valgrind-//'), N=$n)"
echo "# reproduce: A_BINDIR=$a_bin${b_bin:+ B_BINDIR=$b_bin}${SETUP_SQL:+ SETUP_SQL=\"$SETUP_SQL\"} ROUNDS=$rounds N=$n bash bench/instructions.sh"
printf '%-6s %-6s %-28s %s\n' round build 'start_workflow(noop3)' 'external run (bulk start, claim 50, complete_steps)'
for r in $(seq "$rounds"); do
	for build in A ${b_bin:+B}; do
		bin=$a_bin; [ "$build" = B ] && bin=$b_bin
		printf '%-6s %-6s %-28s %s\n' "$r" "$build" "$(per "$bin" starts)" "$(per "$bin" external)"
	done
done
