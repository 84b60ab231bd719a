#!/usr/bin/env bash
# Quick start: set up everything on Debian 12 (as root), start a throwaway
# PostgreSQL 15 cluster with orchestrator and pg_cron preloaded, run an
# example workflow driven by the background worker and a small external
# worker, print its events and result, and stop the cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" = 0 ] && bash "$root/test/setup.sh"

port=${PORT:-55499}
data=$(mktemp -d /tmp/orchestrator-demo.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
cleanup() { bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data"; }
trap cleanup EXIT
bash "$root/test/cluster.sh" start "$data" "$port" orchestrator
echo "== cluster on 127.0.0.1:$port (shared_preload_libraries = 'orchestrator,pg_cron')"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_() { as_pg /usr/lib/postgresql/15/bin/psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d orchestrator -v ON_ERROR_STOP=1 "$@"; }

psql_ <<'SQL'
CREATE EXTENSION orchestrator;
CREATE TABLE greetings (id serial PRIMARY KEY, name text, greeting text, at timestamptz DEFAULT now());

-- record (sql) -> greet (external worker) -> pause (durable timer) -> save (sql)
SELECT orchestrator.define_workflow('greet', $$
{"steps": [
  {"name": "record", "kind": "sql",
   "sql": "INSERT INTO greetings(name) VALUES ($1 #>> '{}') RETURNING id",
   "args": [{"$path": "$.input.name"}]},
  {"name": "greet", "kind": "external", "queue": "greeter", "depends_on": ["record"],
   "input": {"name": {"$path": "$.input.name"}}, "retry": {"max_attempts": 3, "backoff": "1 second"}},
  {"name": "pause", "kind": "sleep", "duration": "1 second", "depends_on": ["greet"]},
  {"name": "save", "kind": "sql", "depends_on": ["pause"],
   "sql": "UPDATE greetings SET greeting = $2 #>> '{}' WHERE id = ($1 #>> '{}')::int RETURNING id, greeting",
   "args": [{"$path": "$.steps.record.result.id"}, {"$path": "$.steps.greet.result.greeting"}]}
 ],
 "result": {"id": {"$path": "$.steps.save.result.id"}, "greeting": {"$path": "$.steps.save.result.greeting"}}}
$$) AS version;
SQL

as_pg /usr/bin/python3 "$root/docs/examples/worker.py" \
	"host=127.0.0.1 port=$port dbname=orchestrator user=postgres" greeter 30 &
worker=$!

run=$(psql_ -Atc "SELECT orchestrator.start_workflow('greet', '{\"name\": \"Ada\"}', '{\"tenant\": \"demo\"}')")
echo "== started run $run"
for _ in $(seq 1 300); do
	status=$(psql_ -Atc "SELECT status FROM orchestrator.runs WHERE id = '$run'")
	case "$status" in pending|running) sleep 0.1 ;; *) break ;; esac
done
# only the worker itself (runuser, its parent, would announce "Session terminated")
pkill -TERM -f "^/usr/bin/python3 .*worker.py host=127.0.0.1 port=$port" 2>/dev/null || true
wait "$worker" 2>/dev/null || true

echo "== events"
psql_ -c "SELECT seq, to_char(at, 'HH24:MI:SS.MS') AS at, type, step, data FROM orchestrator.events('$run')"
echo "== steps"
psql_ -c "SELECT step, kind, status, attempt, duration, result FROM orchestrator.run_steps WHERE run_id = '$run' ORDER BY position"
echo "== run"
psql_ -c "SELECT name, status, tenant, cost, finished_at - created_at AS took, result FROM orchestrator.runs WHERE id = '$run'"
[ "$status" = succeeded ] || { echo "run ended as $status"; exit 1; }
echo "== workflow succeeded"
