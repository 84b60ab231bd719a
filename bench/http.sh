#!/usr/bin/env bash
# Benchmark of http steps and webhook deliveries against a local sink
# (bench/sink.c, a small epoll server in C; SINK=python for
# test/client/http_sink.py, Python's ThreadingHTTPServer, which is the limit
# on 2 cores), beside the sink's own capacity measured with wrk, in one run
# on one throwaway cluster.
#   bash bench/http.sh        (as root on Debian 12; RUNS=... SLOW_RUNS=... to change sizes,
#                              PORT=... SINK_PORT=... for the server's and the sink's ports,
#                              PG_BINDIR=... for another PostgreSQL installation)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# (SETUP=0: measure the installation in PG_BINDIR as it is, without building this tree into it)
if [ "$(id -u)" = 0 ] && [ "${SETUP:-1}" != 0 ]; then
	bash "$root/test/setup.sh" >/dev/null
fi
if [ "$(id -u)" = 0 ]; then
	command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
runs=${RUNS:-4000}
slow_runs=${SLOW_RUNS:-2000}
port=${PORT:-5532} sink_port=${SINK_PORT:-5533}
bin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
data=$(mktemp -d /tmp/orchestrator-bench-http.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$data"
if [ "${SINK:-c}" = python ]; then
	/usr/bin/python3 "$root/test/client/http_sink.py" "$sink_port" & sink_pid=$!
else
	sink_bin=$(mktemp /tmp/orchestrator-bench-sink.XXXXXX)
	cc -O2 -o "$sink_bin" "$root/bench/sink.c"
	"$sink_bin" "$sink_port" & sink_pid=$!
fi
trap 'kill $sink_pid 2>/dev/null; bash "$root/test/cluster.sh" stop "$data"; rm -rf "$data" ${sink_bin:-}' EXIT
bash "$root/test/cluster.sh" start "$data" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bin/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }
set_conc() { q -c "ALTER SYSTEM SET orchestrator.http_max_concurrency = $1" -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.5; }
sink="http://127.0.0.1:$sink_port"

echo "# orchestrator http benchmark ($(nproc) cores, PostgreSQL $(q -c 'SHOW server_version'), libcurl $(curl-config --version | cut -d' ' -f2), $(date -u +%F))"
echo "# reproduce: bash bench/http.sh   (RUNS=$runs SLOW_RUNS=$slow_runs SINK=${SINK:-c}; orchestrator.workers=2)"
# the sink is the only host the dispatchers may call (the default allows none)
q -c "ALTER SYSTEM SET orchestrator.http_allowed_hosts = '127.0.0.1:$sink_port'" -c "SELECT pg_reload_conf()" >/dev/null
q -c "CREATE EXTENSION orchestrator"

echo
echo "## (1) the sink's own capacity (wrk -t2 -d5s, keep-alive)"
for path in fast slow/100; do
	for c in 10 100 400; do
		rps=$(wrk -t2 -c$c -d5s "$sink/$path" 2>/dev/null | awk '/Requests\/sec/ {printf "%.0f", $2}')
		echo "endpoint=/$path  connections=$c  requests/s=$rps"
	done
done

q <<SQL >/dev/null
SELECT orchestrator.define_workflow('fast', '{"steps": [{"name": "a", "kind": "http", "request": {"method": "POST", "url": "$sink/fast", "body": {"i": {"\$path": "\$.input.i"}}}}]}');
SELECT orchestrator.define_workflow('slow', '{"steps": [{"name": "a", "kind": "http", "timeout": "30 seconds", "request": {"url": "$sink/slow/100"}}]}');
SQL

# one point: start n runs of wf in one statement, wait, report steps/s
point() {	# point(wf, n, concurrency)
	local wf=$1 n=$2 c=$3 t0 t1
	set_conc "$c"
	t0=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
	q -c "SELECT count(orchestrator.start_workflow('$wf', jsonb_build_object('i', g))) FROM generate_series(1, $n) g" >/dev/null
	t1=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
	while [ "$(q -c "SELECT count(*) FROM orchestrator.workflow_runs WHERE name = '$wf' AND status IN ('pending', 'running')")" != 0 ]; do sleep 0.1; done
	q -c "SELECT format('workflow=%s concurrency=%s per dispatcher (x2)  runs=%s  succeeded=%s  http steps/s=%s  (start: %s runs/s)',
		'$wf', $c, count(*), count(*) FILTER (WHERE status = 'succeeded'),
		round(count(*) / extract(epoch FROM max(finished_at) - to_timestamp($t1))), round($n / ($t1 - $t0)))
		FROM orchestrator.workflow_runs WHERE name = '$wf' AND created_at >= to_timestamp($t0)"
}

echo
echo "## (2) http steps, fast endpoint (POST, JSON body; each run: start, claim, send, record)"
for c in 10 100 500; do point fast "$runs" "$c"; done

echo
echo "## (3) http steps, 100 ms endpoint"
for c in 10 100 500; do
	n=$slow_runs; [ "$c" = 10 ] && n=$((slow_runs / 2))
	point slow "$n" "$c"
done

echo
echo "## (4) webhook deliveries (signed), outbox filled in one transaction, fast endpoint"
# (the outbox rows are written directly; the subscription's pattern matches no event here)
hook=$(q -c "SELECT id FROM orchestrator.create_webhook('$sink/fast', '{workflow.bench}')")
for c in 10 100 500; do
	set_conc "$c"
	t0=$(q -c "SELECT extract(epoch FROM clock_timestamp())")
	q -c "INSERT INTO orchestrator.webhook_outbox (id, webhook_id, run_id, seq, type, payload, available_at)
		SELECT orchestrator.uuid_v7(), '$hook', orchestrator.uuid_v7(), g, 'bench.$c',
			jsonb_build_object('type', 'bench.$c', 'timestamp', now(), 'data', jsonb_build_object('i', g)), now()
		FROM generate_series(1, $runs) g" -c "SELECT orchestrator._wake_at_commit()" >/dev/null
	while [ "$(q -c "SELECT count(*) FROM orchestrator.webhook_outbox WHERE type = 'bench.$c' AND status <> 'delivered'")" != 0 ]; do sleep 0.1; done
	q -c "SELECT format('concurrency=%s per dispatcher (x2)  deliveries=%s  deliveries/s=%s  attempts/delivery=%s',
		$c, count(*), round(count(*) / extract(epoch FROM max(delivered_at) - to_timestamp($t0))), round(avg(attempt), 2))
		FROM orchestrator.webhook_outbox WHERE type = 'bench.$c'"
done
