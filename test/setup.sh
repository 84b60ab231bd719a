#!/usr/bin/env bash
# Install what orchestrator needs on Debian 12 (as root), then build and
# install the extension.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
          libpq-dev libcurl4-openssl-dev libssl-dev libyaml-dev build-essential clang-14 llvm-14 libipc-run-perl
          perl python3 python3-psycopg2 python3-psycopg python3-yaml rsync procps openssl
          prometheus-postgres-exporter prometheus)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node.js and npm for the Node example worker (docs/examples/worker_pg.js):
# Debian's packages, unless a node with its npm is installed already.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The exporter and Prometheus (installed for test/client/test_exporter.py and
# promtool) come with services listening on all addresses; the tests start
# their own on 127.0.0.1.
for svc in prometheus prometheus-postgres-exporter; do
	if [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
	fi
done
# The Debian package starts a cluster on 5432; nothing here needs it.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
	pg_ctlcluster 15 main stop 2>/dev/null || true
fi

# pg from npm, for the Node example worker's test (test/client/package.json)
if [ ! -f test/client/node_modules/pg/package.json ]; then
	echo "== installing the Node packages of the client tests"
	npm install --prefix test/client --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null
fi

bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH=$bindir:$PATH
echo "== building orchestrator"
make -s PG_CONFIG="$bindir/pg_config"
make -s PG_CONFIG="$bindir/pg_config" install
