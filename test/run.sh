#!/usr/bin/env bash
# Run every orchestrator test: pg_regress (SQL surface, pgTAP), isolation
# (concurrent claims), TAP (restarts, crashes, killed workers) and client
# tests (LISTEN/NOTIFY).  Sets everything up first (Debian 12, as root).
# Each suite starts its own throwaway servers on 127.0.0.1 and stops them.
# Ends with a line "N passed, N failed".
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" = 0 ]; then
	bash "$src/test/setup.sh" || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
# PG_BINDIR: another installation (for two suites at once on one machine).
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PG_BINDIR=$bindir PATH=$bindir:$PATH
libdir=$("$bindir/pg_config" --pkglibdir)

# PostgreSQL will not run as root: run the suites as postgres in a copy.
work=$(mktemp -d /tmp/orchestrator-test.XXXXXX)
rsync -a --exclude .git --exclude tmp_check --exclude tmp_check_iso "$src/" "$work/"
if [ "$(id -u)" = 0 ]; then
	chown -R postgres: "$work"
	as_pg() { runuser -u postgres -- env PATH="$PATH" PG_BINDIR="$PG_BINDIR" ORCH_PORT_OFFSET="${ORCH_PORT_OFFSET:-0}" "$@"; }
else
	as_pg() { "$@"; }
fi
log=$work/test-output.log
passed=0 failed=0
count() {	# count(passed_pattern, failed_pattern, file, label)
	local p f
	[ -f "$3" ] || return 0
	p=$(grep -cE "$1" "$3" || true); f=$(grep -cE "$2" "$3" || true)
	passed=$((passed + p)); failed=$((failed + f))
	echo "-- $4: $p passed, $f failed"
}

echo "== pg_regress and isolation tests"
(cd "$work" && as_pg make -s installcheck PG_CONFIG="$bindir/pg_config") 2>&1 | tee "$work/regress.log"
regress_rc=${PIPESTATUS[0]}
before=$failed
count '^(test |     |ok )?.* \.\.\. ok' '\.\.\. FAILED|\.\.\. failed' "$work/regress.log" "pg_regress/isolation"
for f in "$work"/test/regression.diffs "$work"/test/isolation/regression.diffs; do
	[ -s "$f" ] && { echo "== $f"; head -c 20000 "$f"; }
done
# make failed without a failing test to show for it (a server that did not
# start, a crashed isolation tester): that is a failure too.
if [ "$regress_rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then failed=$((failed + 1)); fi

echo "== TAP tests"
tap_lib=$libdir/pgxs/src/test/perl
for t in "$work"/test/t/*.pl; do
	[ -e "$t" ] || continue
	name=test/t/$(basename "$t")
	if (cd "$work" && as_pg env TESTDIR="$work" PG_REGRESS=$libdir/pgxs/src/test/regress/pg_regress \
			PGPORT=$((56432 + ${ORCH_PORT_OFFSET:-0})) prove -I "$tap_lib" -I "$work/test/t" "$name") > "$work/tap.log" 2>&1; then
		passed=$((passed + 1)); echo "ok     $name"
	else
		failed=$((failed + 1)); echo "FAILED $name"; cat "$work/tap.log"
		for f in "$work"/tmp_check/log/regress_log_*; do [ -f "$f" ] && tail -60 "$f"; done
	fi
done

echo "== client tests"
for t in "$work"/test/client/test_*.py; do
	[ -e "$t" ] || continue
	if as_pg /usr/bin/python3 "$t" > "$work/client.log" 2>&1; then
		passed=$((passed + 1)); echo "ok     $(basename "$t")"
	else
		failed=$((failed + 1)); echo "FAILED $(basename "$t")"; cat "$work/client.log"
	fi
done

# Keep the copy (with logs and diffs) only when something failed.
[ "$failed" -eq 0 ] && rm -rf "$work" || echo "logs kept in $work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
