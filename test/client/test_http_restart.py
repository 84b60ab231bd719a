"""1,000 HTTP steps in flight, the server restarted in the middle, first
with a fast shutdown, then with an immediate one: every run completes.  Requests that were in flight
are sent again after the restart with the same Idempotency-Key (their
leases, held by dispatchers that no longer exist, are recovered when the
new dispatchers start); nothing queued is lost.

Starts its own cluster (test/cluster.sh) on 127.0.0.1:5537 and a sink on
5538, and stops them.
"""
import os
import subprocess
import sys
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from http_sink import Sink  # noqa: E402

CLUSTER = os.path.join(HERE, "..", "cluster.sh")
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT, SINK = 5537 + OFFSET, 5538 + OFFSET
RUNS = 1000
DATADIR = tempfile.mkdtemp(prefix="orchestrator-http-restart-")
# shutdown_grace = 0: a fast shutdown abandons the requests in flight, which
# are then sent again after the restart (test_http_shutdown.py covers the
# grace, in which they finish and are recorded instead).
SETTINGS = """
orchestrator.http_allowed_hosts = '127.0.0.1:%d'
orchestrator.http_max_concurrency = 300
orchestrator.poll_interval = 200
orchestrator.shutdown_grace = 0
""" % SINK


def connect(retries=100):
    for i in range(retries):
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError:
            if i == retries - 1:
                raise
            time.sleep(0.1)


def pg_ctl(*args):
    cmd = [os.path.join(BINDIR, "pg_ctl"), "-D", DATADIR, "-l", os.path.join(DATADIR, "server.log")] + list(args)
    if os.getuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def counts(cur):
    cur.execute("SELECT status, count(*) FROM orchestrator.workflow_runs WHERE name = 'many' GROUP BY 1")
    return dict(cur.fetchall())


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    sink = Sink(SINK).start()
    t0 = time.time()
    try:
        with open(os.path.join(DATADIR, "postgresql.conf"), "a") as f:
            f.write(SETTINGS)
        cur = connect().cursor()
        cur.execute("SELECT pg_reload_conf()")
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("""SELECT orchestrator.define_workflow('many', '{"steps": [
            {"name": "call", "kind": "http", "timeout": "10 seconds",
             "request": {"method": "POST", "url": "http://127.0.0.1:%d/slow/300",
                         "body": {"i": {"$path": "$.input.i"}}}}]}')""" % SINK)
        time.sleep(0.3)
        cur.execute("SELECT orchestrator.start_workflow('many', jsonb_build_object('i', g)) "
                    "FROM generate_series(1, %s) g", (RUNS,))

        # Restart twice while requests are in flight: a fast shutdown (the
        # dispatchers exit on SIGTERM, abandoning their transfers) at a quarter,
        # an immediate one (crash recovery) at a half.
        for mode, share in (("fast", 4), ("immediate", 2)):
            deadline = time.time() + 30
            while counts(cur).get("succeeded", 0) < RUNS // share:
                assert time.time() < deadline, counts(cur)
                time.sleep(0.05)
            before = counts(cur)
            cur.execute("SELECT count(*) FROM orchestrator.work_queue WHERE queue = '@http' AND lease_token IS NOT NULL")
            leased = cur.fetchone()[0]
            pg_ctl("restart", "-m", mode, "-w")
            print("restarted (%s) with %r, %d requests under lease" % (mode, before, leased))
            cur = connect().cursor()

        deadline = time.time() + 45
        while True:
            c = counts(cur)
            if c.get("succeeded", 0) == RUNS:
                break
            assert time.time() < deadline, "not all runs completed: %r" % c
            time.sleep(0.2)

        cur.execute("SELECT max(attempt), count(*) FILTER (WHERE attempt > 1) FROM orchestrator.workflow_steps s "
                    "JOIN orchestrator.workflow_runs r ON r.id = s.run_id WHERE r.name = 'many'")
        max_attempt, retried = cur.fetchone()
        reqs = sink.requests("/slow/")
        keys = {}
        for r in reqs:
            keys.setdefault(r["headers"]["idempotency-key"], []).append(r["body"])
        cur.execute("SELECT id FROM orchestrator.workflow_runs WHERE name = 'many'")
        expected = {"%s/call" % row[0] for row in cur.fetchall()}
        assert set(keys) == expected, "requests missing for %d runs" % len(expected - set(keys))
        assert all(len(set(bodies)) == 1 for bodies in keys.values()), "a retry changed its body"
        assert retried > 0, "the restarts interrupted no request"
        print("ok: %d runs succeeded in %.1f s; %d requests for %d keys; %d steps retried after the restarts "
              "(max attempt %d)" % (RUNS, time.time() - t0, len(reqs), len(keys), retried, max_attempt))
    finally:
        sink.stop()
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR]) if not os.environ.get("KEEP") else print(DATADIR)


if __name__ == "__main__":
    main()
    sys.exit(0)
