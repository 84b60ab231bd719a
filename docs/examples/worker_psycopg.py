"""An external worker in Python with psycopg 3: claims the steps of one
queue when NOTIFY orchestrator_queue announces them (and every
--poll-interval seconds, for retries that become due unannounced), runs up to
--concurrency tasks at once in threads, renews their leases while they run,
and completes or fails each step.  SIGTERM or SIGINT: no more claims, the
running tasks finish and are reported, then it exits 0.

    python3 worker_psycopg.py "host=127.0.0.1 dbname=app user=worker" greeter

The task is work() below.  Without a worker of your own, the
orchestrator-worker command does all this for a handler in any language
(docs/workers.md).
"""
import argparse
import concurrent.futures
import json
import os
import select
import signal
import socket
import sys
import time

import psycopg


def work(payload):
    """The task: here, greet someone.  An exception fails the step."""
    if payload.get("sleep"):
        time.sleep(float(payload["sleep"]))
    if payload.get("fail"):
        raise ValueError("cannot greet: %s" % payload["fail"])
    return {"greeting": "Hello, %s!" % (payload.get("name") or "world"), "by": "python"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dsn")
    ap.add_argument("queue")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--lease", type=float, default=60.0, help="seconds")
    ap.add_argument("--poll-interval", type=float, default=5.0, help="seconds")
    args = ap.parse_args()
    me = "%s:%d" % (socket.gethostname(), os.getpid())

    # Signals wake the select() below through this socket pair.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    conn = psycopg.connect(args.dsn, autocommit=True, application_name="worker_psycopg")
    state = {"want_claim": True}

    def on_notify(n):
        if n.channel == "orchestrator_queue" and n.payload == args.queue:
            state["want_claim"] = True

    # Notifications that arrive during a query go to the handler; those that
    # arrive while waiting are read below.
    conn.add_notify_handler(on_notify)
    conn.execute("LISTEN orchestrator_queue")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency)
    running = {}  # future -> (run_id, step, lease_token, next heartbeat)
    next_poll = 0.0
    said = set()

    def say(what):
        if what not in said:
            said.add(what)
            print("worker_psycopg: " + what, flush=True)

    while True:
        now = time.monotonic()
        if stopping:
            say("stopping")
        # Claim while there is room, on a notification or on the poll.
        free = args.concurrency - len(running)
        if not stopping and free > 0 and (state["want_claim"] or now >= next_poll):
            rows = conn.execute(
                "SELECT run_id, step, lease_token, input FROM orchestrator.claim_steps(%s, %s, %s, %s * interval '1 second')",
                (args.queue, me, free, args.lease)).fetchall()
            for run_id, step, token, payload in rows:
                fut = pool.submit(work, payload or {})
                fut.add_done_callback(lambda _: wake_w.send(b"."))  # wakes select()
                running[fut] = (run_id, step, token, now + args.lease / 3)
            state["want_claim"] = len(rows) == free
            next_poll = now + args.poll_interval
            say("listening on queue %s as %s" % (args.queue, me))

        # Report the tasks that ended.
        for fut in [f for f in running if f.done()]:
            run_id, step, token, _ = running.pop(fut)
            try:
                result = fut.result()
                ok = conn.execute("SELECT orchestrator.complete_step(%s, %s, %s, %s)",
                                  (run_id, step, token, json.dumps(result))).fetchone()[0]
            except Exception as e:  # the task failed: retryable
                error = {"message": str(e), "type": type(e).__name__, "worker": me}
                ok = conn.execute("SELECT orchestrator.fail_step(%s, %s, %s, %s, true)",
                                  (run_id, step, token, json.dumps(error))).fetchone()[0]
            if not ok:
                print("worker_psycopg: lease of %s/%s was lost" % (run_id, step), file=sys.stderr, flush=True)
            state["want_claim"] = True

        # Renew the leases of the tasks still running.
        for fut, (run_id, step, token, due) in list(running.items()):
            if now >= due:
                alive = conn.execute("SELECT orchestrator.heartbeat_step(%s, %s, %s)",
                                     (run_id, step, token)).fetchone()[0]
                # A lost lease (run cancelled, lease expired): the result will not count.
                running[fut] = (run_id, step, token, now + args.lease / 3)
                if not alive:
                    print("worker_psycopg: lease of %s/%s was lost" % (run_id, step), file=sys.stderr, flush=True)

        if stopping and not running:
            break
        # Wait for a notification, a signal, a task or a timer.
        due = [d for (_, _, _, d) in running.values()]
        if not stopping and len(running) < args.concurrency:
            due.append(now if state["want_claim"] else next_poll)
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        ready, _, _ = select.select([conn.fileno(), wake_r], [], [], timeout)
        if wake_r in ready:
            try:
                while wake_r.recv(64):
                    pass
            except BlockingIOError:
                pass
        if conn.fileno() in ready:
            conn.pgconn.consume_input()
            while True:
                n = conn.pgconn.notifies()
                if n is None:
                    break
                on_notify(psycopg.Notify(n.relname.decode(), n.extra.decode(), n.be_pid))

    pool.shutdown()
    conn.close()
    print("worker_psycopg: stopped", flush=True)


if __name__ == "__main__":
    main()
