#!/usr/bin/env bash
# What hard limits per owner cost a start (start_workflow of a one external
# step workflow, one run per transaction, dispatchers off), by the owner's
# active runs: without a limit (the baseline, before and after) and with a
# max_active_runs limit (a count of the owner's active runs per start, under
# a lock per owner).  Prints every figure and the command that reproduces it.
#   bash bench/quota.sh          (as root on Debian 12; ACTIVE="500 5000" STARTS=500)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# PG_BINDIR: another installation; SKIP_SETUP=1: measure it as it is
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
[ "$(id -u)" = 0 ] && [ -z "${SKIP_SETUP:-}" ] && bash "$root/test/setup.sh" >/dev/null
active=${ACTIVE:-500 5000}
starts=${STARTS:-500}
port=${PORT:-55530}
data=$(mktemp -d /tmp/orchestrator-bench.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
trap 'bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
ms() { q -c '\timing on' -c "CALL starts($1)" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'; }
limit() { q -c "SELECT orchestrator.set_owner_limits('postgres', '{\"max_active_runs\": $1}')" >/dev/null; }

echo "# orchestrator quota benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), $(date -u +%F))"
echo "# reproduce: bash bench/quota.sh   (ACTIVE=\"$active\" STARTS=$starts)"
q -c "ALTER SYSTEM SET orchestrator.workers = 0" -c "SELECT pg_reload_conf()" >/dev/null
q -c "CREATE EXTENSION orchestrator" >/dev/null
q >/dev/null <<'SQL'
SELECT orchestrator.define_workflow('one', '{"steps": [{"name": "a", "kind": "external", "queue": "q"}]}');
CREATE PROCEDURE starts(n integer) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. n LOOP
		PERFORM orchestrator.start_workflow('one');
		COMMIT;
	END LOOP;
END $$;
SQL
for a in $active; do
	have=$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL")
	[ "$a" -gt "$have" ] && q -c "CALL starts($((a - have)))"
	limit null; base1=$(ms "$starts")
	limit 1000000000; with=$(ms "$starts")
	limit null; base2=$(ms "$starts")
	printf 'active runs of the owner ~%s: %s starts  no limit %s ms, with max_active_runs %s ms, no limit again %s ms (%.2f ms more per start)\n' \
		"$a" "$starts" "$base1" "$with" "$base2" "$(awk -v w="$with" -v a="$base1" -v b="$base2" -v n="$starts" 'BEGIN {print (w - (a + b) / 2) / n}')"
done
