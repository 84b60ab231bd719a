#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 15 cluster with orchestrator and
# pg_cron preloaded, owned by the postgres OS user, listening on 127.0.0.1.
#   test/cluster.sh start DIR PORT [DBNAME]   (creates DIR when missing)
#   test/cluster.sh stop DIR
set -euo pipefail
bin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
cmd=$1 dir=$2
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
	port=$3 db=${4:-orchestrator}
	if [ ! -f "$dir/PG_VERSION" ]; then
		mkdir -p "$dir"
		[ "$(id -u)" = 0 ] && chown postgres: "$dir"
		as_pg $bin/initdb -D "$dir" -A trust -U postgres >/dev/null
		cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/tmp'
shared_preload_libraries = 'orchestrator,pg_cron'
orchestrator.database = '$db'
cron.database_name = '$db'
max_worker_processes = 16
CONF
	fi
	as_pg $bin/pg_ctl -D "$dir" -l "$dir/server.log" -w start >/dev/null
	if ! as_pg $bin/psql -h /tmp -p "$port" -U postgres -d postgres -qAtc \
		"SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
		as_pg $bin/createdb -h /tmp -p "$port" -U postgres "$db"
		# The dispatchers connect to orchestrator.database at start: restart
		# so that they find the new database at once.
		as_pg $bin/pg_ctl -D "$dir" -l "$dir/server.log" -w restart >/dev/null
	fi
	;;
stop)
	[ -f "$dir/postmaster.pid" ] && as_pg $bin/pg_ctl -D "$dir" -m fast -w stop >/dev/null || true
	;;
esac
