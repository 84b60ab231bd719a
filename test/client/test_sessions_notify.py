"""Session changes are announced on a channel private to the owner role:

- the owner, LISTENing on orchestrator.session_channel(), receives
  {"op", "key", "version"} for set, create, unlock and delete, in commit
  order, never the value; short payloads go through the relay, long keys
  directly, both on the same channel;
- a rolled-back change announces nothing;
- another orchestrator_user (bob), LISTENing on his own channel, the shared
  channels and every name he can think of, receives none of alice's keys,
  and his own changes reach only him.

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import json
import time

from cluster_client import Cluster, notifications

CLUSTER = Cluster(55545, "sessions")
connect = CLUSTER.connect
SECRET = "value-that-must-not-leak"


def drain(conn, seconds):
    """All (channel, payload, pid) that arrive on conn within the given time."""
    return [(n.channel, n.payload, n.pid) for n in notifications(conn, seconds)]


def until(conn, count, seconds=30):
    got = []
    deadline = time.time() + seconds
    while len(got) < count and time.time() < deadline:
        got += drain(conn, 0.2)
    assert len(got) >= count, "timed out; got %r" % got
    return got


def main():
    CLUSTER.start()
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute("CREATE ROLE alice LOGIN IN ROLE orchestrator_user")
        cur.execute("CREATE ROLE bob LOGIN IN ROLE orchestrator_user")
        for _ in range(100):
            cur.execute("SELECT pid FROM orchestrator._relay_status()")
            relay_pid = cur.fetchone()[0]
            if relay_pid:
                break
            time.sleep(0.1)
        assert relay_pid, "no relay running"

        alice = connect("alice")
        a = alice.cursor()
        a.execute("SELECT orchestrator.session_channel()")
        alice_channel = a.fetchone()[0]
        a.execute('LISTEN "%s"' % alice_channel)

        bob = connect("bob")
        b = bob.cursor()
        b.execute("SELECT orchestrator.session_channel()")
        bob_channel = b.fetchone()[0]
        assert bob_channel != alice_channel
        # every channel bob could guess: his own, the shared ones, names made
        # of alice's name or OID
        cur.execute("SELECT 'alice'::regrole::oid")
        alice_oid = cur.fetchone()[0]
        guesses = [bob_channel, "orchestrator", "orchestrator_queue", "orchestrator_session",
                   "orchestrator_session_alice", "orchestrator_session_%d" % alice_oid, "alice",
                   "orchestrator_session_" + bob_channel[-32:]]
        for ch in guesses:
            b.execute('LISTEN "%s"' % ch)

        # alice's changes
        a.execute("SELECT orchestrator.session_set('cart:1', %s)", (json.dumps({"secret": SECRET}),))
        a.execute("SELECT orchestrator.session_create('cart:2', %s)", (json.dumps(SECRET),))
        a.execute("SELECT orchestrator.session_set('cart:1', %s, expected_version => 1)", (json.dumps(SECRET),))
        a.execute("SELECT orchestrator.session_lock('cart:1', '00000000-0000-0000-0000-000000000001', '1 minute')")
        a.execute("SELECT orchestrator.session_unlock('cart:1', '00000000-0000-0000-0000-000000000001')")
        a.execute("SELECT orchestrator.session_delete('cart:2')")
        long_key = "k" * 300
        a.execute("SELECT orchestrator.session_set(%s, %s)", (long_key, json.dumps(SECRET)))
        # rolled back: nothing
        tx = connect("alice", autocommit=False)
        tx.cursor().execute("SELECT orchestrator.session_set('rolled-back', '1')")
        tx.rollback()
        tx.close()

        got = until(alice, 6)
        got += drain(alice, 0.5)
        assert all(ch == alice_channel for ch, _, _ in got), got
        assert all(SECRET not in p for _, p, _ in got), got
        # the relay's, in commit order; the long key's went directly (and
        # may overtake them: order holds per key, which takes one path)
        relayed = [json.loads(p) for _, p, pid in got if pid == relay_pid]
        direct = [json.loads(p) for _, p, pid in got if pid != relay_pid]
        assert relayed == [
            {"op": "set", "key": "cart:1", "version": 1},
            {"op": "set", "key": "cart:2", "version": 1},
            {"op": "set", "key": "cart:1", "version": 2},
            {"op": "unlock", "key": "cart:1", "version": 2},
            {"op": "delete", "key": "cart:2", "version": 1},
        ], relayed
        assert direct == [{"op": "set", "key": long_key, "version": 1}], direct
        print("alice: %d announcements on her channel in commit order, no values; "
              "the rolled-back set announced nothing" % len(got))

        # bob: nothing of alice's
        seen = drain(bob, 1.0)
        assert all("cart:" not in p and long_key not in p for _, p, _ in seen), seen
        assert not [n for n in seen if n[0] != "orchestrator" and n[0] != "orchestrator_queue"], seen
        print("bob, listening on %d channels, learned none of alice's keys" % len(guesses))

        # bob's own change reaches bob, not alice
        b.execute("SELECT orchestrator.session_set('cart:1', %s)", (json.dumps("bob's"),))
        mine = until(bob, 1)
        assert [(ch, json.loads(p)) for ch, p, _ in mine] == [
            (bob_channel, {"op": "set", "key": "cart:1", "version": 1})], mine
        assert drain(alice, 1.0) == [], "alice received bob's change"
        print("bob's change reached bob only")
    finally:
        CLUSTER.stop()


if __name__ == "__main__":
    main()
