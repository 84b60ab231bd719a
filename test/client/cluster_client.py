"""What the client tests share: a throwaway cluster of their own
(test/cluster.sh, on 127.0.0.1), connections to it, and the notifications a
connection receives.  ORCH_PORT_OFFSET moves every port, to run two suites
at once on one machine.  Not a test itself (test/run.sh runs test_*.py).
"""
import os
import select
import subprocess
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_SCRIPT = os.path.join(HERE, "..", "cluster.sh")
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))


class Cluster:
    """A cluster on port (plus ORCH_PORT_OFFSET) with database orchestrator,
    in a temporary directory named after the test."""

    def __init__(self, port, name):
        self.port = port + OFFSET
        self.datadir = tempfile.mkdtemp(prefix="orchestrator-%s-" % name)

    def start(self):
        subprocess.run(["bash", CLUSTER_SCRIPT, "start", self.datadir, str(self.port), "orchestrator"],
                       check=True)

    def stop(self):
        """Stop the server and remove its directory."""
        subprocess.run(["bash", CLUSTER_SCRIPT, "stop", self.datadir])
        subprocess.run(["rm", "-rf", self.datadir])

    def connect(self, user="postgres", autocommit=True):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="orchestrator", user=user)
        conn.autocommit = autocommit
        return conn


def notifications(conn, seconds):
    """The notifications (psycopg2's Notify: channel, payload, pid) that
    arrive on conn within the given time."""
    got = []
    deadline = time.time() + seconds
    while True:
        # psycopg2 also collects notifications while the connection runs
        # statements of its own: take those first
        conn.poll()
        while conn.notifies:
            got.append(conn.notifies.pop(0))
        if time.time() >= deadline:
            return got
        select.select([conn], [], [], 0.1)
