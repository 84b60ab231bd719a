"""A small external worker: claims steps of one queue over SQL, does the
work, and completes them.  Wakes on NOTIFY orchestrator_queue (sent when a
step becomes ready on a queue) and polls every few seconds as a fallback.

    python3 worker.py "host=127.0.0.1 port=5499 dbname=orchestrator user=postgres" greeter
"""
import json
import select
import socket
import sys
import time

import psycopg2


def work(payload):
    """The task itself: here, greet someone (an LLM call or a tool in real life)."""
    name = payload.get("name") or "world"
    return {"greeting": "Hello, %s!" % name, "cost": 0.0042, "tokens": 12}


def main(dsn, queue, max_seconds=60):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("LISTEN orchestrator_queue")
    me = "%s:%d" % (socket.gethostname(), __import__("os").getpid())
    stop = time.time() + max_seconds
    while time.time() < stop:
        cur.execute("SELECT run_id, step, attempt, lease_token, input FROM "
                    "orchestrator.claim_steps(%s, %s, 10, '1 minute')", (queue, me))
        for run_id, step, attempt, token, payload in cur.fetchall():
            result = work(payload)
            cur.execute("SELECT orchestrator.complete_step(%s, %s, %s, %s)",
                        (run_id, step, token, json.dumps(result)))
            ok = cur.fetchone()[0]
            print("worker: %s step %s attempt %d -> %s (%s)" % (queue, step, attempt, result["greeting"],
                                                             "completed" if ok else "lease lost"), flush=True)
        if select.select([conn], [], [], 2.0)[0]:
            conn.poll()
            conn.notifies.clear()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 60)
