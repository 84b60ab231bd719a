#!/usr/bin/env bash
# The session store beside Redis on the same machine, in one run: GET/SET of
# a 100-byte value under 10,000 random keys, 1, 8 and 32 clients, each point
# REPS times (interleaved, so that noise from other load spreads over all of
# them).  Prints ops/s, p50 and p99 per point, the medians, and the command
# that reproduces them.
#
#   bash bench/sessions.sh          (as root on Debian 12: installs redis-server)
#   REPS=3 SECONDS_PER_POINT=5 CLIENTS="1 8 32" PORT=55512 REDIS_PORT=56512 bash bench/sessions.sh
#   OPS=set PG_SETTINGS="commit_delay=200" bash bench/sessions.sh   (only the sets, with
#     server settings applied by ALTER SYSTEM: a setting docs/sessions.md discusses)
#
# Like with like: both clients are C programs (pgbench, redis-benchmark) on
# 127.0.0.1 over TCP, one request in flight per connection (no pipelining),
# 2 client threads from 8 clients on; the server and the clients share the
# machine's cores.
#   PostgreSQL: SELECT orchestrator.session_get(key) / session_set(key, value)
#     through pgbench -M prepared, synchronous_commit = on, fsync = on (each
#     set is a committed transaction flushed to the WAL before it returns);
#     baselines: the same row read by a plain SELECT, and written by a plain
#     INSERT ... ON CONFLICT DO UPDATE, as the table owner (one statement,
#     without the entry point, the checks and the announcement).
#   Redis: GET / SET key value, appendonly yes with appendfsync everysec (a
#     second of writes may be lost) and with appendfsync always (each write
#     is fsynced before the reply, the durable setting), no RDB snapshots.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir
if [ "$(id -u)" = 0 ] && ! command -v redis-server >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)"; exit 1; }
reps=${REPS:-3}
secs=${SECONDS_PER_POINT:-5}
clients=${CLIENTS:-1 8 32}
port=${PORT:-55512}
rport=${REDIS_PORT:-56512}
ops=${OPS:-get set}
settings=${PG_SETTINGS:-}
keys=10000

data=$(mktemp -d /tmp/orchestrator-bench-sessions.XXXXXX)
mkdir -p "$data/redis" "$data/logs"
[ "$(id -u)" = 0 ] && chown -R postgres: "$data"
redis_pid=
cleanup() {
	[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
	bash "$root/test/cluster.sh" stop "$data/pg" || true
	rm -rf "$data"
}
trap cleanup EXIT
bash "$root/test/cluster.sh" start "$data/pg" "$port" bench
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
q() { as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d bench -v ON_ERROR_STOP=1 "$@"; }

value='{"user": 4242, "cart": [1, 2, 3], "token": "abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"}'
q -c "CREATE EXTENSION orchestrator" -c "CREATE ROLE bench LOGIN IN ROLE orchestrator_user"
as_pg "$bindir/psql" -X -qAt -h 127.0.0.1 -p "$port" -U bench -d bench -v ON_ERROR_STOP=1 \
	-c "SELECT count(orchestrator.session_set('session:' || i, '$value')) FROM generate_series(1, $keys) i" >/dev/null
q -c "VACUUM ANALYZE orchestrator.session_store"
for kv in $settings; do q -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'"; done
[ -n "$settings" ] && q -c "SELECT pg_reload_conf()" >/dev/null
cat > "$data/get.sql" <<EOF
\set id random(1, $keys)
SELECT orchestrator.session_get('session:' || :id);
EOF
cat > "$data/set.sql" <<EOF
\set id random(1, $keys)
SELECT orchestrator.session_set('session:' || :id, '$value');
EOF
cat > "$data/raw_get.sql" <<EOF
\set id random(1, $keys)
SELECT value FROM orchestrator.session_store WHERE owner = 'bench'::regrole AND key = 'session:' || :id AND (expires_at IS NULL OR expires_at > now());
EOF
cat > "$data/raw_set.sql" <<EOF
\set id random(1, $keys)
INSERT INTO orchestrator.session_store AS s (owner, key, value, version, updated_at) VALUES ('bench'::regrole, 'session:' || :id, '$value', 1, now()) ON CONFLICT ON CONSTRAINT session_store_pkey DO UPDATE SET value = excluded.value, version = s.version + 1, updated_at = excluded.updated_at WHERE s.lock_expires_at IS NULL RETURNING s.version;
EOF
chmod a+r "$data"/*.sql

# pgbench_point(script, user, clients): "ops/s p50_ms p99_ms" from the per-transaction log
pgbench_point() {
	local script=$1 user=$2 c=$3 j=1 tps
	[ "$c" -ge 8 ] && j=2
	rm -f "$data"/logs/pgbench_log.*
	tps=$(cd "$data/logs" && as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -U "$user" -n -M prepared \
		-c "$c" -j "$j" -T "$secs" -l -f "$data/$script.sql" bench 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}')
	cat "$data"/logs/pgbench_log.* | awk '{print $3}' | sort -n | awk -v tps="$tps" '
		{ v[NR] = $1 } END { printf "%s %.3f %.3f", tps, v[int(NR * 0.50)] / 1000, v[int(NR * 0.99)] / 1000 }'
}

# redis_point(op, clients, n): "ops/s p50_ms p99_ms" (redis-benchmark --csv)
redis_point() {
	local op=$1 c=$2 n=$3 threads=1
	[ "$c" -ge 8 ] && threads=2
	redis-benchmark -h 127.0.0.1 -p "$rport" -c "$c" -n "$n" -r "$keys" -d 100 -t "$op" --threads "$threads" --csv 2>/dev/null |
		awk -F'"' -v op="${op^^}" '$2 == op { printf "%.0f %.3f %.3f", $4, $10, $14 }'
}

redis_start() {	# appendfsync mode
	[ -n "$redis_pid" ] && { kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; }
	rm -rf "$data/redis"/*
	redis-server --port "$rport" --bind 127.0.0.1 --dir "$data/redis" --save '' \
		--appendonly yes --appendfsync "$1" --daemonize no --logfile "$data/redis/log" &
	redis_pid=$!
	for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
	# the same keys as PostgreSQL holds
	redis-benchmark -h 127.0.0.1 -p "$rport" -c 8 -n $((keys * 3)) -r "$keys" -d 100 -t set -q >/dev/null 2>&1
}

echo "# orchestrator session store vs Redis ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $(q -c 'SHOW server_version'), $(redis-server --version | awk '{print $3}'), $(date -u +'%F %H:%M UTC'))"
echo "# reproduce: REPS=$reps SECONDS_PER_POINT=$secs CLIENTS=\"$clients\" OPS=\"$ops\" PG_SETTINGS=\"$settings\" bash bench/sessions.sh"
echo "# PostgreSQL: synchronous_commit=$(q -c 'SHOW synchronous_commit'), fsync=$(q -c 'SHOW fsync'), wal_sync_method=$(q -c 'SHOW wal_sync_method'), shared_buffers=$(q -c 'SHOW shared_buffers'), commit_delay=$(q -c 'SHOW commit_delay'), commit_siblings=$(q -c 'SHOW commit_siblings')"
echo
printf '%-34s %7s %4s %9s %8s %8s\n' system op clients ops/s p50_ms p99_ms
results=$data/results
: > "$results"
row() {	# system op clients "ops p50 p99"
	printf '%-34s %7s %4s %9s %8s %8s\n' "$1" "$2" "$3" $4
	echo "$1|$2|$3|$4" >> "$results"
}
for rep in $(seq "$reps"); do
	for c in $clients; do
		if [[ " $ops " == *" get "* ]]; then
			row "postgres session_get (C)" get "$c" "$(pgbench_point get bench "$c")"
			row "postgres plain SELECT (baseline)" get "$c" "$(pgbench_point raw_get postgres "$c")"
		fi
		if [[ " $ops " == *" set "* ]]; then
			row "postgres session_set (durable)" set "$c" "$(pgbench_point set bench "$c")"
			row "postgres plain upsert (baseline)" set "$c" "$(pgbench_point raw_set postgres "$c")"
		fi
	done
	for mode in everysec always; do
		# the reads do not depend on the AOF setting: once is enough with only sets
		if [[ " $ops " != *" get "* && $mode = everysec ]]; then continue; fi
		redis_start "$mode"
		for c in $clients; do
			# about SECONDS_PER_POINT seconds each, from what this machine does
			if [[ " $ops " == *" get "* ]]; then
				row "redis appendfsync $mode" get "$c" "$(redis_point get "$c" $((secs * 40000)))"
			fi
			n=$((secs * 30000)); [ "$mode" = always ] && n=$((secs * 6000))
			if [[ " $ops " == *" set "* ]]; then
				row "redis appendfsync $mode" set "$c" "$(redis_point set "$c" "$n")"
			fi
		done
	done
done
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=

echo
echo "## medians of $reps runs (min-max of ops/s)"
printf '%-34s %7s %4s %9s %15s %8s %8s\n' system op clients ops/s range p50_ms p99_ms
sort -t'|' -k1,1 -k2,2 -k3,3n "$results" | awk -F'|' '
	function median(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t } return a[int((n + 1) / 2)] }
	function lo(s,   a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
	function hi(s,   a, n, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
	{ k = $1 "|" $2 "|" $3; split($4, v, " "); ops[k] = ops[k] " " v[1]; p50[k] = p50[k] " " v[2]; p99[k] = p99[k] " " v[3]; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
	END { for (i = 1; i <= n; i++) { k = order[i]; split(k, f, "|")
		printf "%-34s %7s %4s %9s %15s %8s %8s\n", f[1], f[2], f[3], median(ops[k]), lo(ops[k]) "-" hi(ops[k]), median(p50[k]), median(p99[k]) } }' | tee "$data/medians"

echo
echo "## targets (medians)"
med() { awk -v s="$1" -v o="$2" -v c="$3" '$0 ~ "^" s && $(NF-5) == o && $(NF-4) == c { print $(NF-3) }' "$data/medians" | head -1; }
for c in $clients; do
	pg_get=$(med "postgres session_get" get "$c"); r_get=$(med "redis appendfsync everysec" get "$c")
	pg_set=$(med "postgres session_set" set "$c"); r_set=$(med "redis appendfsync always" set "$c")
	if [ -z "$pg_get" ]; then pg_get=0 r_get=1; fi
	if [ -z "$pg_set" ]; then pg_set=0 r_set=1; fi
	echo "clients=$c  session_get/redis GET = $pg_get/$r_get = $(awk -v a="$pg_get" -v b="$r_get" 'BEGIN { printf "%.0f%%", 100 * a / b }') (target >= 50% at 8 clients)   session_set/redis SET always = $pg_set/$r_set = $(awk -v a="$pg_set" -v b="$r_set" 'BEGIN { printf "%.0f%%", 100 * a / b }') (target >= 100%)"
done
echo "# load after the run: $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these cores: compare within one run)"
