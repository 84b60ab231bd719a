"""Notifications go through the relay worker, after commit, in per-run order:

- a run's events reach a LISTENing client with gap-free, increasing seq, sent by
  the relay (none directly in the committing transaction);
- the notifications of a rolled-back subtransaction, or of a rolled-back
  transaction, are never sent;
- many concurrent runs: each run's notifications arrive in seq order;
- commits within orchestrator.notify_interval of the last batch go out
  together in the next one; the first after a quiet spell goes at once;
- a start whose commit callback runs late (a test library sleeps between the
  commit becoming visible and orchestrator's callback, as a preempted backend
  would) still has its run's first notification arrive first, although a
  dispatcher ran the run's steps meanwhile; a commit that holds its place
  longer than a second is passed over, so it does not hold back the others;
- a run's events are numbered after those of a transaction whose commit
  callback runs late: the run's last number, remembered in shared memory by
  that transaction (src/seq_cache.c), is marked usable only by its callback,
  so meanwhile the history is read;
- a transaction that produced notifications cannot be PREPAREd;
- with the relay gone (terminated), notifications are sent directly, and the
  relay comes back.

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import json
import os
import select
import subprocess
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER = os.path.join(HERE, "..", "cluster.sh")
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT = 55539 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-relay-")


def connect(autocommit=True, dbname="orchestrator"):
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname=dbname, user="postgres")
    conn.autocommit = autocommit
    return conn


def drain(conn, seconds):
    """All payloads that arrive on conn within the given time."""
    got = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        if select.select([conn], [], [], 0.1)[0]:
            conn.poll()
            while conn.notifies:
                got.append(json.loads(conn.notifies.pop(0).payload))
    return got


def until(conn, pred, seconds=30):
    got = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        if select.select([conn], [], [], 0.1)[0]:
            conn.poll()
            while conn.notifies:
                p = json.loads(conn.notifies.pop(0).payload)
                got.append(p)
                if pred(p):
                    return got
    raise AssertionError("timed out; got %d notifications" % len(got))


def status(cur):
    cur.execute("SELECT pid, queued, sent, dropped, direct, unheard FROM orchestrator._relay_status()")
    return dict(zip(["pid", "queued", "sent", "dropped", "direct", "unheard"], cur.fetchone()))


def wait_finished(cur, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        cur.execute("SELECT count(*) FROM orchestrator.workflow_runs WHERE finished_at IS NULL AND name = 'relay3'")
        if cur.fetchone()[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("runs did not finish")


def build_commit_delay(cur):
    """Build test/client/commit_delay.c against the server's headers and
    create its function; returns nothing (raises when it cannot build)."""
    pg_config = os.path.join(BINDIR, "pg_config")
    inc = subprocess.run([pg_config, "--includedir-server"], check=True,
                         capture_output=True, text=True).stdout.strip()
    # in the cluster's directory, removed with it
    lib = os.path.join(DATADIR, "commit_delay.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-I", inc, "-o", lib,
                    os.path.join(HERE, "commit_delay.c")], check=True)
    cur.execute("CREATE OR REPLACE FUNCTION public.commit_delay(int) RETURNS void "
                "LANGUAGE C AS %s, 'commit_delay_arm'", (lib,))


def late_start(delay_ms, other_conn):
    """Start a relay3 run whose commit sleeps delay_ms after it became
    visible and before orchestrator's commit callback; meanwhile start
    another run from other_conn, which wakes the dispatchers: they take
    both.  Returns (late run, other run, time the late commit began)."""
    c = connect(autocommit=False)
    cc = c.cursor()
    # orchestrator's callbacks (the relay's, and the dispatchers' wake-up,
    # which releases the notifications first) are registered by the first
    # start of a run with sql steps in this backend, commit_delay's after
    # them: it runs first at commit
    cc.execute("SELECT orchestrator.start_workflow('relay3')")
    c.commit()
    cc.execute("SELECT public.commit_delay(0)")
    c.commit()
    cc.execute("SELECT orchestrator.start_workflow('relay3')")
    late = cc.fetchone()[0]
    cc.execute("SELECT public.commit_delay(%s)", (delay_ms,))
    th = threading.Thread(target=c.commit)
    began = time.time()
    th.start()
    time.sleep(0.15)
    oc = other_conn.cursor()
    oc.execute("SELECT orchestrator.start_workflow('relay3')")
    other = oc.fetchone()[0]
    return late, other, began, th, c


def late_append(cur):
    """A worker's heartbeat appends step.progress to a run while another
    transaction, which appended to the same run, has become visible but not
    yet run orchestrator's commit callback (commit_delay sleeps between the
    two): the second takes the number after the first's, not the one the
    run's slot held before.  commit_delay must be built."""
    cur.execute("""SELECT orchestrator.define_workflow('held_seq', '{"steps": [
        {"name": "a", "kind": "external", "queue": "held_seq"}]}')""")
    cur.execute("SELECT orchestrator.start_workflow('held_seq')")
    cur.execute("SELECT run_id, step, lease_token FROM orchestrator.claim_steps('held_seq', 'w', 1, '1 hour')")
    run, step, token = cur.fetchone()
    beat = "SELECT orchestrator.heartbeat_step(%s, %s, %s, NULL, %s)"
    c = connect(autocommit=False)
    cc = c.cursor()
    # orchestrator's callbacks first (registered by this backend's first
    # append), commit_delay's after them: it runs first at commit
    cc.execute(beat, (run, step, token, '{"n": 1}'))
    c.commit()
    cc.execute("SELECT public.commit_delay(0)")
    c.commit()
    cc.execute(beat, (run, step, token, '{"n": 2}'))
    cc.execute("SELECT public.commit_delay(1500)")
    th = threading.Thread(target=c.commit)
    th.start()
    time.sleep(0.4)
    other = connect()
    oc = other.cursor()
    oc.execute(beat, (run, step, token, '{"n": 3}'))
    assert oc.fetchone()[0] is True
    done_during = th.is_alive()
    th.join()
    c.close()
    other.close()
    cur.execute("SELECT array_agg(data->'progress'->>'n' ORDER BY seq), count(*) = max(seq) "
                "FROM orchestrator.workflow_events WHERE run_id = %s AND type = 'step.progress'", (run,))
    order, _ = cur.fetchone()
    cur.execute("SELECT count(*) = max(seq) AND count(DISTINCT seq) = count(*) "
                "FROM orchestrator.workflow_events WHERE run_id = %s", (run,))
    assert cur.fetchone()[0] is True, "run %s: numbers with a gap or a repeat" % run
    assert done_during, "the other heartbeat did not run while the late commit slept"
    assert order == ["1", "2", "3"], order
    print("late commit callback: the next transaction's event numbered after it (progress %s)" % order)


def late_commit(cur, listener):
    build_commit_delay(cur)
    other_conn = connect()
    drain(listener, 0.3)

    # within RELAY_HELD_MAX: the relay waits for the held entry
    late, other, began, th, c = late_start(600, other_conn)
    got = until(listener, lambda p: p["run_id"] == late and p["type"] == "workflow.succeeded", 20)
    th.join()
    c.close()
    got += drain(listener, 0.5)
    seqs = [p["seq"] for p in got if p["run_id"] == late]
    assert seqs == list(range(1, 10)), "late commit: seq order %s" % seqs
    cur.execute("""SELECT extract(epoch FROM max(at) - min(at))
                   FROM orchestrator.workflow_events WHERE run_id = %s""", (late,))
    span = float(cur.fetchone()[0])
    assert span < 0.5, "the dispatchers did not run the late run during its commit (%.3f s)" % span
    print("a start whose commit callback ran 600 ms late: its 9 notifications in seq order, "
          "although its steps ran %.3f s after its start" % span)

    # longer than RELAY_HELD_MAX: passed over, the others are not held back
    late, other, began, th, c = late_start(3000, other_conn)
    got = until(listener, lambda p: p["run_id"] == other and p["type"] == "workflow.succeeded", 20)
    other_done = time.time() - began
    got += until(listener, lambda p: p["run_id"] == late and p["seq"] == 1, 20)
    th.join()
    c.close()
    got += drain(listener, 0.5)
    assert other_done < 2.5, "another run's notifications waited %.3f s behind a 3 s commit" % other_done
    seqs = sorted(p["seq"] for p in got if p["run_id"] == late)
    assert seqs == list(range(1, 10)), "passed-over commit lost notifications: %s" % seqs
    other_conn.close()
    print("a commit held 3 s: passed over after the relay's limit; another run's notifications "
          "arrived %.3f s after it began, and the late run's first notification afterwards" % other_done)


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("""SELECT orchestrator.define_workflow('relay3', '{"steps": [
            {"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
            {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]},
            {"name": "c", "kind": "sql", "sql": "SELECT 3 AS three", "depends_on": ["b"]}]}')""")
        cur.execute("""SELECT orchestrator.define_workflow('relay_wait', '{"steps": [
            {"name": "w", "kind": "wait", "signal": "go"}]}')""")
        for _ in range(100):
            if status(cur)["pid"]:
                break
            time.sleep(0.1)
        assert status(cur)["pid"], "no relay running"

        # 0. nobody listens in the database: nothing is copied or sent, all
        #    is counted as unheard (a listener in another database does not count)
        other = connect(dbname="postgres")
        other.cursor().execute("LISTEN orchestrator")
        before = status(cur)
        cur.execute("SELECT orchestrator.start_workflow('relay3')")
        wait_finished(cur)
        after = status(cur)
        assert after["unheard"] == before["unheard"] + 9, (before, after)
        assert (after["sent"], after["direct"], after["queued"]) == (before["sent"], before["direct"], 0), (before, after)
        assert drain(other, 0.5) == []
        other.close()
        print("nobody listening: 9 notifications unheard, none sent (%d -> %d)"
              % (before["unheard"], after["unheard"]))

        listener = connect()
        listener.cursor().execute("LISTEN orchestrator")

        # 1. one run, through the relay
        before = status(cur)
        cur.execute("SELECT orchestrator.start_workflow('relay3')")
        run = cur.fetchone()[0]
        got = [p for p in until(listener, lambda p: p["run_id"] == run and p["type"] == "workflow.succeeded")
               if p["run_id"] == run]
        assert [p["seq"] for p in got] == list(range(1, 10)), got
        # the relay counts a batch once its transaction committed, which
        # is when the listener may already have it: give the count a moment
        for _ in range(50):
            after = status(cur)
            if after["sent"] >= before["sent"] + 9:
                break
            time.sleep(0.1)
        assert after["sent"] >= before["sent"] + 9, (before, after)
        assert after["direct"] == before["direct"], (before, after)
        print("one run: 9 notifications in order, all by the relay (sent %d -> %d, direct %d)"
              % (before["sent"], after["sent"], after["direct"]))

        # 2. rolled back: a subtransaction, and a whole transaction
        tx = connect(autocommit=False)
        t = tx.cursor()
        t.execute("SELECT orchestrator.start_workflow('relay_wait')")
        kept = t.fetchone()[0]
        t.execute("SAVEPOINT s")
        t.execute("SELECT orchestrator.start_workflow('relay_wait')")
        undone = t.fetchone()[0]
        t.execute("ROLLBACK TO SAVEPOINT s")
        tx.commit()
        t.execute("SELECT orchestrator.start_workflow('relay_wait')")
        aborted = t.fetchone()[0]
        tx.rollback()
        got = until(listener, lambda p: p["run_id"] == kept and p["type"] == "step.started")
        got += drain(listener, 1.0)
        runs = {p["run_id"] for p in got}
        assert kept in runs and undone not in runs and aborted not in runs, got
        print("rolled back subtransaction and transaction: nothing sent; committed run: sent")

        # 3. PREPARE of a transaction with notifications is refused
        t.execute("SELECT orchestrator.start_workflow('relay_wait')")
        try:
            t.execute("PREPARE TRANSACTION 'p1'")
            raise AssertionError("PREPARE TRANSACTION was accepted")
        except psycopg2.Error as e:
            assert e.pgcode == "0A000", (e.pgcode, e.pgerror)
            print("PREPARE refused: %s" % e.pgerror.splitlines()[0])
        tx.rollback()

        # 4. many concurrent runs: each run's notifications in seq order
        def starter(n):
            c = connect()
            for _ in range(n):
                c.cursor().execute("SELECT orchestrator.start_workflow('relay3')")
            c.close()
        threads = [threading.Thread(target=starter, args=(50,)) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wait_finished(cur)
        got = drain(listener, 2.0)
        by_run = {}
        for p in got:
            by_run.setdefault(p["run_id"], []).append(p["seq"])
        concurrent = [r for r, s in by_run.items() if len(s) == 9]
        assert len(concurrent) >= 200, len(concurrent)
        bad = {r: s for r, s in by_run.items() if s != sorted(s)}
        assert not bad, bad
        print("200 runs from 4 clients: %d runs complete, each in seq order" % len(concurrent))

        # 4b. gathered: after a batch the relay waits orchestrator.notify_interval
        #     before the next; what commits meanwhile goes out in one batch, in
        #     order, and a notification after a quiet spell goes at once
        cur.execute("ALTER SYSTEM SET orchestrator.notify_interval = '1s'")
        cur.execute("SELECT pg_reload_conf()")
        time.sleep(1.5)  # the relay reloads at its next turn (within its 1 s wait)
        drain(listener, 0.2)
        starter_conn = connect()
        sc = starter_conn.cursor()
        t0 = time.time()
        sc.execute("SELECT orchestrator.start_workflow('relay_wait')")
        first = sc.fetchone()[0]
        got = until(listener, lambda p: p["run_id"] == first)
        quiet = time.time() - t0
        sent_at = time.time()
        later = []
        for _ in range(3):
            sc.execute("SELECT orchestrator.start_workflow('relay_wait')")
            later.append(sc.fetchone()[0])
        arrivals = {}
        deadline = time.time() + 10
        while len(arrivals) < 3 and time.time() < deadline:
            if select.select([listener], [], [], 0.05)[0]:
                listener.poll()
                while listener.notifies:
                    p = json.loads(listener.notifies.pop(0).payload)
                    if p["run_id"] in later and p["run_id"] not in arrivals:
                        arrivals[p["run_id"]] = time.time()
        assert len(arrivals) == 3, arrivals
        waited = min(arrivals.values()) - sent_at
        spread = max(arrivals.values()) - min(arrivals.values())
        assert quiet < 0.9, "a notification after a quiet spell waited %.3f s" % quiet
        assert waited > 0.5, "the next batch came %.3f s after the last, interval 1 s" % waited
        assert spread < 0.2, "three commits of one interval arrived %.3f s apart" % spread
        cur.execute("ALTER SYSTEM RESET orchestrator.notify_interval")
        cur.execute("SELECT pg_reload_conf()")
        starter_conn.close()
        drain(listener, 1.5)
        print("notify_interval 1 s: first notification after %.3f s, the next three commits "
              "gathered into one batch %.3f s later (spread %.3f s)" % (quiet, waited, spread))

        # 4c. a late commit callback: the start's notifications hold their
        #     place in the ring from before its commit
        late_commit(cur, listener)
        late_append(cur)

        # 5. relay terminated: direct notifications meanwhile, then it is back
        pid = status(cur)["pid"]
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(50):
            if status(cur)["pid"] != pid:
                break
            time.sleep(0.1)
        direct0 = status(cur)["direct"]
        cur.execute("SELECT orchestrator.start_workflow('relay_wait')")
        r = cur.fetchone()[0]
        until(listener, lambda p: p["run_id"] == r and p["type"] == "step.started")
        s = status(cur)
        if not s["pid"]:
            assert s["direct"] > direct0, s
            print("relay gone: notifications sent directly (%d)" % (s["direct"] - direct0))
        for _ in range(150):
            s = status(cur)
            if s["pid"] and s["pid"] != pid:
                break
            time.sleep(0.1)
        assert s["pid"] and s["pid"] != pid, s
        print("relay restarted (pid %d -> %d)" % (pid, s["pid"]))

    finally:
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])


if __name__ == "__main__":
    main()
