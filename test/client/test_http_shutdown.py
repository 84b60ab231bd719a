"""A fast shutdown while HTTP requests are in flight: the dispatchers stop
claiming, finish the requests in flight (they answer in 300 ms, well within
orchestrator.shutdown_grace) and record them, then exit; after the restart
nothing is sent twice: every run's request reaches the sink exactly once.

Starts its own cluster (test/cluster.sh) on 127.0.0.1 and a sink on 127.0.0.1,
and stops them.
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
PORT, SINK = 5541 + OFFSET, 5542 + OFFSET
RUNS = 200
DATADIR = tempfile.mkdtemp(prefix="orchestrator-http-shutdown-")
SETTINGS = """
orchestrator.http_allowed_hosts = '127.0.0.1:%d'
orchestrator.http_max_concurrency = 40
orchestrator.poll_interval = 200
orchestrator.shutdown_grace = '30s'
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


def succeeded(cur):
    cur.execute("SELECT count(*) FROM orchestrator.workflow_runs WHERE name = 'calls' AND status = 'succeeded'")
    return cur.fetchone()[0]


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    sink = Sink(SINK).start()
    try:
        with open(os.path.join(DATADIR, "postgresql.conf"), "a") as f:
            f.write(SETTINGS)
        cur = connect().cursor()
        cur.execute("SELECT pg_reload_conf()")
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("""SELECT orchestrator.define_workflow('calls', '{"steps": [
            {"name": "call", "kind": "http", "timeout": "10 seconds",
             "request": {"method": "POST", "url": "http://127.0.0.1:%d/slow/300",
                         "body": {"i": {"$path": "$.input.i"}}}}]}')""" % SINK)
        time.sleep(0.3)
        cur.execute("SELECT orchestrator.start_workflow('calls', jsonb_build_object('i', g)) "
                    "FROM generate_series(1, %s) g", (RUNS,))

        # Wait until requests are in flight, then stop fast (SIGTERM to the
        # dispatchers) and start again.
        deadline = time.time() + 30
        while len(sink.requests("/slow/")) < 20:
            assert time.time() < deadline, "no requests reached the sink"
            time.sleep(0.02)
        cur.execute("SELECT count(*) FROM orchestrator.work_queue WHERE queue = '@http' AND lease_token IS NOT NULL")
        leased = cur.fetchone()[0]
        log_size = os.path.getsize(os.path.join(DATADIR, "server.log"))
        pg_ctl("restart", "-m", "fast", "-w")
        with open(os.path.join(DATADIR, "server.log")) as f:
            f.seek(log_size)
            log = f.read()
        assert "finishing" in log and "HTTP requests in flight" in log, log[-3000:]
        cur = connect().cursor()

        deadline = time.time() + 60
        while succeeded(cur) < RUNS:
            assert time.time() < deadline, "%d of %d runs succeeded" % (succeeded(cur), RUNS)
            time.sleep(0.2)

        keys = {}
        for r in sink.requests("/slow/"):
            keys.setdefault(r["headers"]["idempotency-key"], []).append(r)
        twice = {k: len(v) for k, v in keys.items() if len(v) > 1}
        assert len(keys) == RUNS, "%d keys for %d runs" % (len(keys), RUNS)
        assert not twice, "sent again after the restart: %r" % twice
        cur.execute("SELECT count(*) FILTER (WHERE attempt > 1) FROM orchestrator.workflow_steps s "
                    "JOIN orchestrator.workflow_runs r ON r.id = s.run_id WHERE r.name = 'calls'")
        retried = cur.fetchone()[0]
        assert retried == 0, "%d steps were retried" % retried
        print("ok: fast shutdown with %d requests under lease; all %d runs succeeded, each request sent once"
              % (leased, RUNS))
    finally:
        sink.stop()
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR]) if not os.environ.get("KEEP") else print(DATADIR)


if __name__ == "__main__":
    main()
