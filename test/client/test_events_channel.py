"""Run events on private channels (orchestrator.notify_channels):

- 'public' (the default): events_channel() is refused (55000), and the events
  go to the channel "orchestrator", which any role can LISTEN to;
- 'private': a run's events reach the channel of the role that started it and
  of its workflow's owner (events_channel(), a keyed hash per role), in seq
  order, and nothing goes to "orchestrator": another orchestrator_user,
  listening on his own channel, the shared ones and every name he can think
  of, learns nothing of alice's runs;
- a role granted start on alice's workflow sees its own runs of it, and alice
  sees them too (she owns the workflow), as the rights of events() say;
- 'both': the private channels and "orchestrator".

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import json
import time

import psycopg2

from cluster_client import Cluster, notifications

CLUSTER = Cluster(55557, "events-channel")
connect = CLUSTER.connect


def drain(conn, seconds):
    """All (channel, payload) that arrive on conn within the given time."""
    return [(n.channel, json.loads(n.payload)) for n in notifications(conn, seconds)]


def wait_done(cur, run):
    for _ in range(300):
        cur.execute("SELECT status FROM orchestrator.runs WHERE id = %s", (run,))
        if cur.fetchone()[0] in ("succeeded", "failed"):
            return
        time.sleep(0.1)
    raise AssertionError("run %s did not finish" % run)


def seqs_of(cur, run):
    cur.execute("SELECT seq FROM orchestrator.events(%s) ORDER BY seq", (run,))
    return [r[0] for r in cur.fetchall()]


def set_channels(cur, value, listeners):
    cur.execute("ALTER SYSTEM SET orchestrator.notify_channels = %s", (value,))
    cur.execute("SELECT pg_reload_conf()")
    # the dispatchers reload at their next turn; every connection at its next command
    time.sleep(1.5)
    for c in listeners:
        c.cursor().execute("SELECT 1")
    cur.execute("SHOW orchestrator.notify_channels")
    assert cur.fetchone()[0] == value


def main():
    CLUSTER.start()
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("CREATE ROLE alice LOGIN IN ROLE orchestrator_user")
        cur.execute("CREATE ROLE bob LOGIN IN ROLE orchestrator_user")
        alice, bob = connect("alice"), connect("bob")
        a, b = alice.cursor(), bob.cursor()
        step = '{"steps": [{"name": "s", "kind": "sql", "sql": "SELECT 1 AS one"}]}'
        a.execute("SELECT orchestrator.define_workflow('alice_flow', %s)", (step,))
        a.execute("SELECT orchestrator.grant_workflow('alice_flow', 'bob', 'start')")
        b.execute("SELECT orchestrator.define_workflow('bob_flow', %s)", (step,))

        # 'public', the default: no private channel to listen to
        try:
            a.execute("SELECT orchestrator.events_channel()")
            raise AssertionError("events_channel() answered with notify_channels = public")
        except psycopg2.Error as e:
            assert e.pgcode == "55000", (e.pgcode, e.pgerror)
            assert e.diag.message_hint and "notify_channels" in e.diag.message_hint, e.diag.message_hint
            print("public: events_channel() refused: %s" % e.diag.message_primary)

        set_channels(cur, "private", [alice, bob])
        a.execute("SELECT orchestrator.events_channel()")
        alice_channel = a.fetchone()[0]
        b.execute("SELECT orchestrator.events_channel()")
        bob_channel = b.fetchone()[0]
        a.execute("SELECT orchestrator.session_channel()")
        alice_session = a.fetchone()[0]
        assert alice_channel != bob_channel
        assert alice_channel[-32:] != alice_session[-32:], "event and session channels share a name"
        a.execute('LISTEN "%s"' % alice_channel)
        cur.execute("SELECT 'alice'::regrole::oid")
        alice_oid = cur.fetchone()[0]
        guesses = [bob_channel, "orchestrator", "orchestrator_queue", "orchestrator_events",
                   "orchestrator_events_alice", "orchestrator_events_%d" % alice_oid, "alice",
                   "orchestrator_events_" + bob_channel[-32:]]
        for ch in guesses:
            b.execute('LISTEN "%s"' % ch)
        admin.cursor().execute("LISTEN orchestrator")

        # alice's own run: on her channel only
        a.execute("SELECT orchestrator.start_workflow('alice_flow')")
        mine = a.fetchone()[0]
        wait_done(cur, mine)
        got = drain(alice, 1.0)
        assert [ch for ch, _ in got] == [alice_channel] * len(got), got
        assert [p["seq"] for _, p in got if p["run_id"] == mine] == seqs_of(cur, mine), got
        assert drain(bob, 0.5) == [], "bob heard alice's run"
        assert drain(admin, 0.2) == [], "the public channel carried events with notify_channels = private"
        print("private: alice's run, %d events on her channel in seq order; bob, listening on %d "
              "channels, and the public channel heard nothing" % (len(got), len(guesses)))

        # bob's run of alice's workflow: bob (he started it) and alice (she owns it)
        b.execute("SELECT orchestrator.start_workflow('alice_flow')")
        granted = b.fetchone()[0]
        wait_done(cur, granted)
        expected = seqs_of(cur, granted)
        got_b = [p["seq"] for ch, p in drain(bob, 1.0) if ch == bob_channel and p["run_id"] == granted]
        got_a = [p["seq"] for ch, p in drain(alice, 0.5) if ch == alice_channel and p["run_id"] == granted]
        assert got_b == expected and got_a == expected, (expected, got_b, got_a)
        print("bob's run of alice's workflow: %d events to bob and to alice" % len(expected))

        # bob's run of his own workflow: bob only
        b.execute("SELECT orchestrator.start_workflow('bob_flow')")
        own = b.fetchone()[0]
        wait_done(cur, own)
        got_b = [p["seq"] for ch, p in drain(bob, 1.0) if ch == bob_channel and p["run_id"] == own]
        assert got_b == seqs_of(cur, own), got_b
        assert drain(alice, 0.5) == [], "alice heard bob's own run"
        print("bob's own run: to bob only")

        # 'both': private and public
        set_channels(cur, "both", [alice, bob, admin])
        a.execute("SELECT orchestrator.start_workflow('alice_flow')")
        run = a.fetchone()[0]
        wait_done(cur, run)
        expected = seqs_of(cur, run)
        got_a = [p["seq"] for ch, p in drain(alice, 1.0) if ch == alice_channel and p["run_id"] == run]
        got_pub = [p["seq"] for ch, p in drain(admin, 0.5) if ch == "orchestrator" and p["run_id"] == run]
        assert got_a == expected and got_pub == expected, (expected, got_a, got_pub)
        print("both: %d events on alice's channel and on \"orchestrator\"" % len(expected))
    finally:
        CLUSTER.stop()


if __name__ == "__main__":
    main()
