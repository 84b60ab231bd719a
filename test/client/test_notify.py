"""A client LISTENs on channel "orchestrator", follows a run through its
NOTIFY payloads, disconnects half way and catches up from the event history
with events(run_id, after_seq), missing nothing.

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "..", "cluster.sh")
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT = 55493 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-notify-")


def connect():
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    conn.autocommit = True
    return conn


def notifications(conn, until, timeout=30):
    """Collect payloads from conn until one satisfies until()."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        if select.select([conn], [], [], 0.5)[0]:
            conn.poll()
            while conn.notifies:
                n = conn.notifies.pop(0)
                payload = json.loads(n.payload)
                got.append(payload)
                if until(payload):
                    return got
    raise AssertionError("timed out; got %r" % got)


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("""SELECT orchestrator.define_workflow('notify_demo', '{"steps": [
            {"name": "one", "kind": "sql", "sql": "SELECT 1 AS one"},
            {"name": "gate", "kind": "wait", "signal": "go", "depends_on": ["one"]},
            {"name": "two", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["gate"]}]}')""")

        listener = connect()
        listener.cursor().execute("LISTEN orchestrator")
        cur.execute("SELECT orchestrator.start_workflow('notify_demo')")
        run_id = cur.fetchone()[0]

        # Follow live until the wait step has started.
        first = notifications(listener, lambda p: p["type"] == "step.started" and p["step"] == "gate")
        mine = [p for p in first if p["run_id"] == run_id]
        assert all(set(p) >= {"run_id", "seq", "type", "step"} for p in mine), mine
        seqs = [p["seq"] for p in mine]
        assert seqs == list(range(1, len(seqs) + 1)), "gap or disorder in live seqs: %r" % seqs
        last_seq = seqs[-1]
        listener.close()            # the client goes away...

        cur.execute("SELECT orchestrator.signal_workflow(%s, 'go')", (run_id,))
        for _ in range(200):        # ...the run finishes meanwhile...
            cur.execute("SELECT status FROM orchestrator.runs WHERE id = %s", (run_id,))
            if cur.fetchone()[0] == "succeeded":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("run did not finish")

        # ...and on reconnecting reads exactly what it missed.
        again = connect()
        c2 = again.cursor()
        c2.execute("LISTEN orchestrator")
        c2.execute("SELECT seq, type, step FROM orchestrator.events(%s, %s)", (run_id, last_seq))
        missed = c2.fetchall()
        assert [s for s, _, _ in missed] == list(range(last_seq + 1, last_seq + 1 + len(missed))), missed
        assert missed[-1][1] == "workflow.succeeded", missed
        c2.execute("SELECT seq, type, step FROM orchestrator.events(%s)", (run_id,))
        history = c2.fetchall()
        assert [(p["seq"], p["type"], p["step"]) for p in mine] + missed == history, (mine, missed, history)
        print("live: %d events, caught up: %d events, history: %d events" % (len(mine), len(missed), len(history)))
        for seq, typ, step in history:
            print("  %3d %-20s %s" % (seq, typ, step or ""))
    finally:
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])


if __name__ == "__main__":
    main()
    sys.exit(0)
