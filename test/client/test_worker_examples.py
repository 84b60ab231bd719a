"""The example workers of docs/examples, run against a real cluster: the
Python one (psycopg 3, worker_psycopg.py) and the Node one (pg from npm,
worker_pg.js, with test/client/node_modules, which test/setup.sh installs).
For each: a step made ready after the worker started is claimed on its
NOTIFY (the poll interval is an hour), a task that raises fails its step, and
SIGTERM lets the running task finish and be completed, claims nothing more,
and exits 0.

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CLUSTER = os.path.join(HERE, "..", "cluster.sh")
EXAMPLES = os.path.join(ROOT, "docs", "examples")
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
PORT = 55551 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-examples-")
TIMEOUT = 60


def connect():
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    conn.autocommit = True
    return conn


def one(cur, sql, *args):
    cur.execute(sql, args)
    return cur.fetchone()[0]


def wait_for(cur, sql, args, expected):
    deadline = time.time() + TIMEOUT
    got = None
    while time.time() < deadline:
        cur.execute(sql, args)
        got = cur.fetchone()[0]
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError("%s %r: got %r, expected %r" % (sql, args, got, expected))


class Worker:
    """An example worker as a subprocess, its output lines in a queue."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError("no line with %r; got %r" % (text, self.seen))


def check(cur, name, worker):
    queue_name = "q_" + name
    workflow = "greet_" + name
    cur.execute("""SELECT orchestrator.define_workflow(%s, jsonb_build_object('steps', jsonb_build_array(
        jsonb_build_object('name', 'greet', 'kind', 'external', 'queue', %s::text,
                           'input', '{"$path": "$.input"}'::jsonb, 'retry', '{"max_attempts": 1}'::jsonb))))""",
                (workflow, queue_name))
    w = worker(queue_name)
    try:
        w.expect("listening on queue " + queue_name)

        run = one(cur, "SELECT orchestrator.start_workflow(%s, %s)", workflow, json.dumps({"name": "Ada"}))
        wait_for(cur, "SELECT status FROM orchestrator.runs WHERE id = %s", (run,), "succeeded")
        result = one(cur, "SELECT result FROM orchestrator.runs WHERE id = %s", run)
        assert result == {"greet": {"greeting": "Hello, Ada!", "by": name}}, result
        print("ok - %s: a step announced by NOTIFY is claimed and completed" % name)

        run = one(cur, "SELECT orchestrator.start_workflow(%s, %s)", workflow, json.dumps({"fail": "no name"}))
        wait_for(cur, "SELECT status FROM orchestrator.runs WHERE id = %s", (run,), "failed")
        error = one(cur, "SELECT error FROM orchestrator.run_steps WHERE run_id = %s", run)
        assert error["message"] == "cannot greet: no name" and error["worker"].endswith(":%d" % w.proc.pid), error
        print("ok - %s: a task that raises fails its step" % name)

        slow = one(cur, "SELECT orchestrator.start_workflow(%s, %s)", workflow, json.dumps({"name": "Slow", "sleep": 2}))
        wait_for(cur, "SELECT status FROM orchestrator.run_steps WHERE run_id = %s", (slow,), "running")
        w.proc.send_signal(signal.SIGTERM)
        w.expect("stopping")
        late = one(cur, "SELECT orchestrator.start_workflow(%s, %s)", workflow, json.dumps({"name": "Late"}))
        assert w.proc.wait(timeout=TIMEOUT) == 0, w.proc.returncode
        w.expect("stopped")
        assert one(cur, "SELECT status FROM orchestrator.runs WHERE id = %s", slow) == "succeeded"
        assert one(cur, "SELECT result->'greet'->>'greeting' FROM orchestrator.runs WHERE id = %s", slow) == "Hello, Slow!"
        assert one(cur, "SELECT status || ' ' || attempt FROM orchestrator.run_steps WHERE run_id = %s", late) == "ready 0"
        print("ok - %s: SIGTERM: the running task is completed, nothing more claimed, exit 0" % name)
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")

        dsn = "host=127.0.0.1 port=%d dbname=orchestrator user=postgres" % PORT
        check(cur, "python", lambda q: Worker(
            ["/usr/bin/python3", "-u", os.path.join(EXAMPLES, "worker_psycopg.py"), dsn, q,
             "--poll-interval", "3600", "--lease", "5"]))

        env = dict(os.environ, NODE_PATH=os.path.join(HERE, "node_modules"))
        uri = "postgresql://postgres@127.0.0.1:%d/orchestrator" % PORT
        check(cur, "node", lambda q: Worker(
            ["node", os.path.join(EXAMPLES, "worker_pg.js"), uri, q,
             "--poll-interval", "3600", "--lease", "5"], env=env))
    finally:
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])
    print("examples: all passed")


if __name__ == "__main__":
    main()
