"""HTTP steps and webhooks against a live sink (test/client/http_sink.py):

  - JSON bodies, templated URLs and headers reach the sink; the result is
    {status, headers, body}; Idempotency-Key and traceparent (the run's
    trace, the attempt's span) are sent;
  - retries follow the policy: 503 retried, 429 honours Retry-After, 404
    fails at once, a refused connection is retried until dead; every
    attempt is a step.http event;
  - a host outside orchestrator.http_allowed_hosts is refused at definition
    (42501) and, for a templated URL, when sending (step failed); the
    default (empty) list allows nothing;
  - the egress policy when connecting: a name entry ("localhost") does not
    lead to a loopback address (the step fails, not retried, nothing is
    sent) while an IP entry ("127.0.0.1:PORT") or a CIDR range
    ("127.0.0.0/8:*", "[::1/128]:*") does; "*:*" never reaches loopback;
    an entry without a port allows the scheme's default port only;
  - Host and Transfer-Encoding request headers from a template are refused
    when sending (nothing is sent);
  - the circuit breaker opens after N failures, holds steps back, probes
    after the cool-down and closes (events circuit.opened/closed);
  - every webhook delivery carries a Standard Webhooks signature that
    verifies with the secret (checked here with hmac/hashlib), and failing
    deliveries are retried until the sink accepts them;
  - https certificates are verified (a self-signed one fails, not retried);
  - a for_each step of kind http sends a request per element, retries each
    on its own and keeps the results in order;
  - a step of a run that another step of the same claim failed (a request
    that could not be sent) is cancelled with the run, not started again;
  - a response over the owner's max_result_bytes fails its own attempt
    (54000, internal) when its batch is redone item by item; the others of
    the batch succeed;
  - the queue rows of http steps count towards the first dispatcher's
    VACUUM of work_queue.

Starts its own cluster (test/cluster.sh) on 127.0.0.1:5534 and sinks on
5535/5536 (and [::1]:5539), and stops them.
"""
import base64
import hashlib
import hmac
import json
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
PORT, SINK, SINK2, SINK6 = 5534 + OFFSET, 5535 + OFFSET, 5536 + OFFSET, 5539 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-http-")
ALLOWED = "127.0.0.1:%d, 127.0.0.1:%d" % (SINK, SINK2)
SETTINGS = """
orchestrator.http_allowed_hosts = '%s'
orchestrator.http_breaker_threshold = 3
orchestrator.http_breaker_cooldown = '2s'
orchestrator.webhook_retry_schedule = '1 second, 1 second, 1 second'
orchestrator.poll_interval = 200
""" % ALLOWED


def connect():
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    conn.autocommit = True
    return conn


def wait_runs(cur, ids, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        cur.execute("SELECT count(*) FROM orchestrator.workflow_runs WHERE id = ANY(%s::uuid[]) "
                    "AND status IN ('pending', 'running')", (list(ids),))
        if cur.fetchone()[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("runs did not finish: %r" % (ids,))


def run_of(cur, run_id):
    cur.execute("SELECT orchestrator.get_workflow(%s)", (run_id,))
    return cur.fetchone()[0]


def events(cur, run_id, prefix=""):
    cur.execute("SELECT type, step, data FROM orchestrator.events(%s) WHERE type LIKE %s",
                (run_id, prefix + "%"))
    return cur.fetchall()


def start(cur, name, inp):
    cur.execute("SELECT orchestrator.start_workflow(%s, %s)", (name, json.dumps(inp)))
    return cur.fetchone()[0]


def test_requests(cur, sink):
    cur.execute("""SELECT orchestrator.define_workflow('post_item', %s)""", (json.dumps({"steps": [
        {"name": "fetch", "kind": "http",
         "request": {"method": "POST", "url": {"$path": "$.input.url"},
                     "headers": {"x-team": {"$path": "$.input.team"}},
                     "body": {"q": {"$path": "$.input.query"}, "n": [1, 2]}}},
        {"name": "store", "kind": "sql", "depends_on": ["fetch"],
         "sql": "SELECT ($1 ->> 'q') AS q", "args": [{"$path": "$.steps.fetch.result.body.body"}]},
        {"name": "text", "kind": "http", "request": {"url": "http://127.0.0.1:%d/text" % SINK}}],
        "result": {"status": {"$path": "$.steps.fetch.result.status"},
                   "q": {"$path": "$.steps.store.result.q"},
                   "text": {"$path": "$.steps.text.result.body"}}}),))
    run_id = start(cur, "post_item", {"url": "http://127.0.0.1:%d/items/42" % SINK,
                                      "team": "blue", "query": "héllo"})
    wait_runs(cur, [run_id])
    run = run_of(cur, run_id)
    assert run["status"] == "succeeded", run
    assert run["result"] == {"status": 200, "q": "héllo", "text": "hello"}, run["result"]
    fetch = run["steps"]["fetch"]["result"]
    assert fetch["status"] == 200 and fetch["headers"]["content-type"] == "application/json", fetch
    reqs = sink.requests("/items/42")
    assert len(reqs) == 1, reqs
    r = reqs[0]
    assert r["method"] == "POST" and json.loads(r["body"]) == {"q": "héllo", "n": [1, 2]}, r
    assert r["headers"]["content-type"] == "application/json" and r["headers"]["x-team"] == "blue", r
    assert r["headers"]["idempotency-key"] == "%s/fetch" % run_id, r
    # the run's trace (a random one: no traceparent given), the attempt's span
    tp = r["headers"]["traceparent"].split("-")
    cur.execute("SELECT trace_id, orchestrator._span_id(id, 'fetch', 1) FROM orchestrator.runs WHERE id = %s", (run_id,))
    trace, span = cur.fetchone()
    assert tp == ["00", trace, span, "01"] and trace != run_id.replace("-", ""), (tp, trace, span)
    print("ok: JSON body, templated URL and header, result, Idempotency-Key, traceparent")


def test_retries(cur, sink):
    cur.execute("""SELECT orchestrator.define_workflow('retrying', %s)""", (json.dumps({"steps": [
        {"name": "call", "kind": "http", "timeout": "2 seconds",
         "request": {"url": {"$path": "$.input.url"}},
         "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}),))
    base = "http://127.0.0.1:%d" % SINK
    flaky = start(cur, "retrying", {"url": base + "/flaky/r1/2"})
    limited = start(cur, "retrying", {"url": base + "/limited/r2/1"})
    missing = start(cur, "retrying", {"url": base + "/status/404"})
    always = start(cur, "retrying", {"url": base + "/status/502"})
    wait_runs(cur, [flaky, limited, missing, always])

    run = run_of(cur, flaky)
    assert run["status"] == "succeeded" and run["steps"]["call"]["attempt"] == 3, run
    assert [d["status"] for _, _, d in events(cur, flaky, "step.http")] == [503, 503, 200]
    assert len(sink.requests("/flaky/r1/")) == 3
    keys = {r["headers"]["idempotency-key"] for r in sink.requests("/flaky/r1/")}
    assert keys == {"%s/call" % flaky}, keys      # the same key on every attempt

    run = run_of(cur, limited)
    assert run["status"] == "succeeded" and run["steps"]["call"]["attempt"] == 2, run
    times = [r["at"] for r in sink.requests("/limited/r2/")]
    assert times[1] - times[0] >= 0.95, "Retry-After: 1 not honoured: %r" % times

    run = run_of(cur, missing)
    assert run["status"] == "failed" and run["steps"]["call"]["status"] == "failed", run
    assert run["steps"]["call"]["attempt"] == 1 and run["steps"]["call"]["error"]["status"] == 404, run

    run = run_of(cur, always)
    assert run["status"] == "failed" and run["steps"]["call"]["status"] == "dead", run
    assert run["steps"]["call"]["attempt"] == 3, run
    ev = [t for t, _, _ in events(cur, always, "step.")]
    assert ev.count("step.retrying") == 2 and ev[-1] == "step.dead", ev
    print("ok: 503 retried, 429 Retry-After honoured, 404 fails at once, 502 dead after 3 attempts")


def test_allow_list(cur):
    try:
        cur.execute("""SELECT orchestrator.define_workflow('evil', '{"steps": [
            {"name": "a", "kind": "http", "request": {"url": "http://169.254.169.254/latest/meta-data"}}]}')""")
        raise AssertionError("disallowed host accepted")
    except psycopg2.Error as e:
        assert e.pgcode == "42501", e.pgcode
        assert "169.254.169.254" in e.diag.message_detail and e.diag.message_hint, e.diag.message_detail
    cur.execute("""SELECT orchestrator.define_workflow('templated', '{"steps": [
        {"name": "a", "kind": "http", "request": {"url": {"$path": "$.input.url"}}}]}')""")
    run_id = start(cur, "templated", {"url": "http://10.0.0.1/admin"})
    wait_runs(cur, [run_id])
    run = run_of(cur, run_id)
    step = run["steps"]["a"]
    assert run["status"] == "failed" and step["status"] == "failed" and step["attempt"] == 1, run
    assert "not in orchestrator.http_allowed_hosts" in step["error"]["message"], step
    run_id = start(cur, "templated", {"url": "file:///etc/passwd"})
    wait_runs(cur, [run_id])
    step = run_of(cur, run_id)["steps"]["a"]
    assert step["status"] == "failed" and "only http and https" in step["error"]["message"], step
    print("ok: disallowed host refused at definition (42501) and before sending")


def test_default_refuses_all(cur):
    """Before any setting, nothing is allowed, not even 127.0.0.1."""
    cur.execute("SHOW orchestrator.http_allowed_hosts")
    assert cur.fetchone()[0] == "", "the default allow-list is not empty"
    try:
        cur.execute("""SELECT orchestrator.define_workflow('nowhere', %s)""", (json.dumps({"steps": [
            {"name": "a", "kind": "http", "request": {"url": "http://127.0.0.1:%d/x" % SINK}}]}),))
        raise AssertionError("127.0.0.1 allowed by the default allow-list")
    except psycopg2.Error as e:
        assert e.pgcode == "42501", e.pgcode
        assert "loopback" in e.diag.message_detail and "is empty" in e.diag.message_hint, e.diag
    print("ok: the default (empty) allow-list refuses 127.0.0.1")


def set_allowed(cur, value):
    """Change orchestrator.http_allowed_hosts for the server (ALTER SYSTEM,
    reload) and wait until this session sees it; the dispatchers reload at
    the same signal."""
    cur.execute("ALTER SYSTEM SET orchestrator.http_allowed_hosts = %s", (value,))
    cur.execute("SELECT pg_reload_conf()")
    deadline = time.time() + 10
    while True:
        cur.execute("SHOW orchestrator.http_allowed_hosts")
        if cur.fetchone()[0] == value:
            break
        assert time.time() < deadline, "the new allow-list was not loaded"
        time.sleep(0.05)
    time.sleep(0.5)


def call_step(cur, url, headers=None):
    """Run the 'egress' workflow (one http step) for url; return the run."""
    run_id = start(cur, "egress", {"url": url, "headers": headers or {}})
    wait_runs(cur, [run_id])
    return run_of(cur, run_id)


def assert_refused(run, *fragments, kind="refused"):
    step = run["steps"]["call"]
    assert run["status"] == "failed" and step["status"] == "failed" and step["attempt"] == 1, run
    assert step["error"]["kind"] == kind, step["error"]
    for f in fragments:
        assert f in step["error"]["message"], (f, step["error"])


def test_egress(cur, sink):
    """The egress policy when connecting: the addresses a host resolves to
    are judged in curl's open-socket callback."""
    cur.execute("""SELECT orchestrator.define_workflow('egress', %s)""", (json.dumps({"steps": [
        {"name": "call", "kind": "http", "timeout": "5 seconds",
         "request": {"url": {"$path": "$.input.url"}, "headers": {"$path": "$.input.headers"}},
         "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}),))
    by_name = "http://localhost:%d/egress" % SINK
    by_ip = "http://127.0.0.1:%d/egress" % SINK
    try:
        # a name entry passes the URL check, but localhost is 127.0.0.1:
        # refused when connecting, not retried, nothing sent
        set_allowed(cur, "localhost:%d" % SINK)
        run = call_step(cur, by_name + "/name-only")
        assert_refused(run, 'address 127.0.0.1:%d (loopback) of host "localhost" is not allowed' % SINK)
        ev = [d for _, _, d in events(cur, run["id"], "step.http")]
        assert len(ev) == 1 and ev[0]["error_kind"] == "refused", ev
        assert sink.requests("/egress/name-only") == []

        # an IP entry for the address and port allows it
        set_allowed(cur, "localhost:%d, 127.0.0.1:%d" % (SINK, SINK))
        for url in (by_name + "/both", by_ip + "/ip"):
            run = call_step(cur, url)
            assert run["status"] == "succeeded", run
        assert len(sink.requests("/egress/both")) == 1 and len(sink.requests("/egress/ip")) == 1
        assert sink.requests("/egress/both")[0]["headers"]["host"] == "localhost:%d" % SINK

        # a CIDR range: a name no name entry allows is judged by its address
        set_allowed(cur, "127.0.0.0/8:*")
        assert call_step(cur, by_name + "/range")["status"] == "succeeded"
        assert len(sink.requests("/egress/range")) == 1

        # "*" (even with any port) never reaches loopback, by name or by
        # address; nor does the connection to localhost that the requests
        # above kept open for reuse (every request is checked against the
        # address of its connection before it is sent)
        set_allowed(cur, "*:*")
        assert_refused(call_step(cur, by_name + "/star"), '(loopback) of host "localhost" is not allowed')
        assert_refused(call_step(cur, by_ip + "/star"), "address 127.0.0.1:%d (loopback) is not allowed" % SINK)
        assert sink.requests("/egress/star") == []

        # without a port, an entry allows the scheme's default port only
        set_allowed(cur, "localhost, 127.0.0.1")
        assert_refused(call_step(cur, by_name + "/port"),
                       'host "localhost:%d" is not in orchestrator.http_allowed_hosts' % SINK)
        set_allowed(cur, "127.0.0.1:%d" % SINK)
        try:
            cur.execute("""SELECT orchestrator.define_workflow('other_port', %s)""", (json.dumps({"steps": [
                {"name": "a", "kind": "http", "request": {"url": "http://127.0.0.1:%d/x" % SINK2}}]}),))
            raise AssertionError("a port not in the allow-list was accepted")
        except psycopg2.Error as e:
            assert e.pgcode == "42501" and "127.0.0.1:%d" % SINK2 in e.diag.message_detail, e.diag.message_detail
        assert sink.requests("/egress/port") == []

        # Host and Transfer-Encoding from a template: refused when sending
        for headers in ({"Host": "internal.example"}, {"transfer-encoding": "chunked"}):
            assert_refused(call_step(cur, by_ip + "/header", headers), "may not be set", kind="invalid")
        assert sink.requests("/egress/header") == []

        # IPv6: a CIDR range entry covers [::1] (when the machine has IPv6)
        try:
            sink6 = Sink(SINK6, host="::1").start()
        except OSError as e:
            print("skipped: IPv6 egress checks (no [::1]: %s)" % e)
        else:
            try:
                v6 = "http://[::1]:%d/egress" % SINK6
                set_allowed(cur, "[::1/128]:*")
                assert call_step(cur, v6 + "/v6")["status"] == "succeeded"
                assert len(sink6.requests("/egress/v6")) == 1
                set_allowed(cur, "*:*, [fd00::/8]:*")
                assert_refused(call_step(cur, v6 + "/v6-star"), "(loopback) is not allowed")
                assert sink6.requests("/egress/v6-star") == []
            finally:
                sink6.stop()
    finally:
        set_allowed(cur, ALLOWED)
    print("ok: egress policy when connecting: name entries never reach loopback, IP and CIDR "
          "entries do, port rule, Host/Transfer-Encoding refused")


def test_circuit_breaker(cur):
    cur.execute("""SELECT orchestrator.define_workflow('breaker', %s)""", (json.dumps({"steps": [
        {"name": "call", "kind": "http", "timeout": "2 seconds",
         "request": {"url": "http://127.0.0.1:%d/echo" % SINK2},
         "retry": {"max_attempts": 20, "backoff": "100 milliseconds", "multiplier": 1, "jitter": 0}}]}),))
    first = start(cur, "breaker", {})
    # nobody listens on SINK2 yet: three refused connections open the circuit
    deadline = time.time() + 15
    while time.time() < deadline:
        cur.execute("SELECT state FROM orchestrator.circuit_breakers WHERE host = %s",
                    ("127.0.0.1:%d" % SINK2,))
        row = cur.fetchone()
        if row and row[0] in ("open", "half_open"):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("circuit did not open")
    opened = events(cur, first, "circuit.opened")
    assert opened and opened[0][2]["failures"] == 3, opened
    cur.execute("SELECT count(*) FROM orchestrator.events(%s) WHERE type = 'step.http'", (first,))
    attempts_at_open = cur.fetchone()[0]
    second = start(cur, "breaker", {})
    time.sleep(1.0)
    # while open, nothing is sent and no attempt is counted
    cur.execute("SELECT count(*) FROM orchestrator.events(%s) WHERE type = 'step.http'", (first,))
    assert cur.fetchone()[0] == attempts_at_open
    cur.execute("SELECT status FROM orchestrator.workflow_steps WHERE run_id = %s", (second,))
    assert cur.fetchone()[0] == "ready"
    sink2 = Sink(SINK2).start()
    try:
        wait_runs(cur, [first, second], timeout=20)
        for r in (first, second):
            assert run_of(cur, r)["status"] == "succeeded", run_of(cur, r)
        cur.execute("SELECT state, failures FROM orchestrator.circuit_breakers WHERE host = %s",
                    ("127.0.0.1:%d" % SINK2,))
        assert cur.fetchone() == ("closed", 0)
        cur.execute("SELECT count(*) FROM orchestrator.events(%s) WHERE type = 'circuit.closed'", (first,))
        closed_first = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM orchestrator.events(%s) WHERE type = 'circuit.closed'", (second,))
        assert closed_first + cur.fetchone()[0] == 1
        # the second run never got an attempt while the circuit was open
        cur.execute("SELECT attempt FROM orchestrator.workflow_steps WHERE run_id = %s", (second,))
        assert cur.fetchone()[0] == 1
    finally:
        sink2.stop()
    print("ok: circuit opened after 3 failures, held steps back, probed and closed")


def test_tls_verified(cur):
    """https to a server with a self-signed certificate fails verification
    (certificates are checked; not retried)."""
    import shutil
    import ssl
    if shutil.which("openssl") is None:
        print("skipped: https check (no openssl command to make a certificate)")
        return
    certdir = tempfile.mkdtemp(prefix="orchestrator-tls-")
    cert, key = os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tls = Sink(SINK2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls.server.socket = ctx.wrap_socket(tls.server.socket, server_side=True)
    tls.start()
    try:
        cur.execute("""SELECT orchestrator.define_workflow('tls', %s)""", (json.dumps({"steps": [
            {"name": "a", "kind": "http", "request": {"url": "https://127.0.0.1:%d/echo" % SINK2}}]}),))
        run_id = start(cur, "tls", {})
        wait_runs(cur, [run_id])
        step = run_of(cur, run_id)["steps"]["a"]
        assert step["status"] == "failed" and step["attempt"] == 1, step
        assert step["error"]["kind"] == "tls", step["error"]
    finally:
        tls.stop()
        subprocess.run(["rm", "-rf", certdir])
    print("ok: https with an untrusted certificate fails verification, not retried")


def verify_signature(secret, headers, body):
    """Standard Webhooks verification, independent of the extension's code."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = "%s.%s.%s" % (headers["webhook-id"], headers["webhook-timestamp"], body)
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ") if s.startswith("v1,")]
    return any(hmac.compare_digest(expected, s) for s in sigs)


def test_webhooks(cur, sink):
    # a generated secret is returned once, by create_webhook; one's own is
    # passed as a bound parameter (not spelled out in the statement text)
    cur.execute("SELECT id, generated_secret FROM orchestrator.create_webhook(%s, '{workflow.*}')",
                ("http://127.0.0.1:%d/fail-webhook/2" % SINK,))
    hook, generated = cur.fetchone()
    own = "whsec_" + base64.b64encode(b"k" * 32).decode()
    cur.execute("SELECT id, generated_secret FROM orchestrator.create_webhook(%s, '{step.succeeded}', %s)",
                ("http://127.0.0.1:%d/hooks/steps" % SINK, own))
    hook2, nothing = cur.fetchone()
    assert generated.startswith("whsec_") and len(base64.b64decode(generated[6:])) == 24, generated
    assert nothing is None, "a secret of one's own is not echoed back"
    secrets = {hook: generated, hook2: own}
    # stored sealed, never as it was given
    cur.execute("SELECT webhook_id, sealed_secret FROM orchestrator.webhook_secrets")
    for webhook_id, sealed in cur.fetchall():
        assert sealed.startswith("v1:"), sealed
        assert secrets[webhook_id][6:] not in sealed and secrets[webhook_id] not in sealed, sealed

    cur.execute("""SELECT orchestrator.define_workflow('hooked', '{"steps": [
        {"name": "one", "kind": "sql", "sql": "SELECT 1 AS one"}]}')""")
    runs = [start(cur, "hooked", {}) for _ in range(5)]
    wait_runs(cur, runs)
    deadline = time.time() + 20
    while time.time() < deadline:
        cur.execute("SELECT status, count(*) FROM orchestrator.webhook_deliveries "
                    "WHERE run_id = ANY(%s::uuid[]) GROUP BY 1", (runs,))
        counts = dict(cur.fetchall())
        if set(counts) == {"delivered"}:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("deliveries not done: %r" % counts)
    # workflow.created, .started, .succeeded per run, and one step.succeeded
    assert counts["delivered"] == 5 * 3 + 5, counts
    cur.execute("SELECT attempts, count(*) FROM orchestrator.webhook_deliveries "
                "WHERE run_id = ANY(%s::uuid[]) AND webhook_id = %s GROUP BY 1", (runs, hook))
    assert cur.fetchall() == [(3, 15)], "each delivery to the failing hook takes 3 attempts"

    got = sink.requests("/fail-webhook/") + sink.requests("/hooks/steps")
    assert len(got) == 15 * 3 + 5, len(got)
    by_id = {}
    for r in got:
        h = r["headers"]
        secret = secrets[hook] if r["path"].startswith("/fail-webhook") else secrets[hook2]
        assert verify_signature(secret, h, r["body"]), h
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 120, h
        body = json.loads(r["body"])
        assert set(body) == {"type", "timestamp", "data"} and body["data"]["run_id"] in runs, body
        by_id.setdefault(h["webhook-id"], set()).add(r["body"])
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a retry changed the body"
    # a wrong secret does not verify
    r = got[0]
    assert not verify_signature("whsec_" + base64.b64encode(b"x" * 24).decode(), r["headers"], r["body"])
    cur.execute("SELECT orchestrator.drop_webhook(%s), orchestrator.drop_webhook(%s)", (hook, hook2))
    print("ok: %d webhook requests, every signature verified; failing deliveries retried until accepted"
          % len(got))


def test_fan_out(cur, sink):
    """for_each over http steps: a request per element ($.item, $.index in
    the templates), each element retried on its own (a 503 once), the
    results in the array's order, at most max_parallel at once."""
    cur.execute("""SELECT orchestrator.define_workflow('fan_http', %s)""", (json.dumps({"steps": [
        {"name": "calls", "kind": "http", "for_each": {"$path": "$.input.items"}, "max_parallel": 2,
         "request": {"method": "POST", "url": {"$path": "$.item.url"}, "body": {"i": {"$path": "$.index"}}},
         "retry": {"max_attempts": 3, "backoff": "100 milliseconds", "jitter": 0}}]}),))
    base = "http://127.0.0.1:%d" % SINK
    items = [{"url": base + "/fan/0"}, {"url": base + "/flaky/fan1/1"}, {"url": base + "/fan/2"}]
    run_id = start(cur, "fan_http", {"items": items})
    wait_runs(cur, [run_id])
    run = run_of(cur, run_id)
    assert run["status"] == "succeeded", run
    calls = run["result"]["calls"]
    assert [c["status"] for c in calls] == [200, 200, 200], calls
    assert [c["body"]["body"]["i"] for c in calls] == [0, 1, 2], calls
    assert run["steps"]["calls[1]"]["attempt"] == 2, run["steps"]["calls[1]"]
    assert run["steps"]["calls[0]"]["attempt"] == 1, run["steps"]["calls[0]"]
    assert len(sink.requests("/fan/")) == 2 and len(sink.requests("/flaky/fan1/")) == 2
    # at most 2 elements between their first step.started and their end
    cur.execute("""WITH spans AS (SELECT step, min(seq) FILTER (WHERE type = 'step.started') s,
                         max(seq) FILTER (WHERE type = 'step.succeeded') f
                       FROM orchestrator.events(%s) WHERE step LIKE 'calls[%%' GROUP BY step)
                   SELECT max((SELECT count(*) FROM spans o WHERE o.s <= x.s AND o.f > x.s)) FROM spans x""",
                (run_id,))
    assert cur.fetchone()[0] <= 2
    print("ok: for_each over http steps, per-element retry, results in order, max_parallel")


def test_run_ended_by_claim(cur, sink):
    """Two http steps of one run claimed together, the first of which
    cannot be sent (its URL renders to null: failed, not retried, the run
    fails): the second is cancelled with the run, and stays cancelled; it
    is not started again on the failed run (before the claim took its steps
    together, it was: 'running' in a failed run, with a step.started after
    workflow.failed)."""
    cur.execute("""SELECT orchestrator.define_workflow('ended_by_claim', %s)""", (json.dumps({"steps": [
        {"name": "a", "kind": "http", "request": {"url": {"$path": "$.input.missing"}}},
        {"name": "b", "kind": "http", "request": {"url": "http://127.0.0.1:%d/ended/b" % SINK}}]}),))
    ids = [start(cur, "ended_by_claim", {}) for _ in range(5)]
    wait_runs(cur, ids)
    for run_id in ids:
        run = run_of(cur, run_id)
        assert run["status"] == "failed", run
        assert run["steps"]["a"]["status"] == "failed", run["steps"]["a"]
        assert run["steps"]["b"]["status"] == "cancelled", (run_id, run["steps"]["b"])
        cur.execute("""SELECT count(*) FROM orchestrator.events(%s) e
                       WHERE e.step = 'b' AND e.seq > (SELECT seq FROM orchestrator.events(%s)
                                                       WHERE type = 'workflow.failed')""", (run_id, run_id))
        assert cur.fetchone()[0] == 0, events(cur, run_id)
    # both sent; the 404 fails the run, whose other response (usually in the
    # same recording batch) is then dropped: the step stays cancelled
    cur.execute("""SELECT orchestrator.define_workflow('ended_by_response', %s)""", (json.dumps({"steps": [
        {"name": "a", "kind": "http", "request": {"url": "http://127.0.0.1:%d/status/404" % SINK}},
        {"name": "b", "kind": "http", "request": {"url": "http://127.0.0.1:%d/ended/b2" % SINK}}]}),))
    ids = [start(cur, "ended_by_response", {}) for _ in range(5)]
    wait_runs(cur, ids)
    for run_id in ids:
        run = run_of(cur, run_id)
        assert run["status"] == "failed" and run["steps"]["a"]["status"] == "failed", run
        assert run["steps"]["b"]["status"] in ("cancelled", "succeeded"), run["steps"]["b"]
        cur.execute("""SELECT count(*) FROM orchestrator.events(%s) e
                       WHERE e.step = 'b' AND e.seq > (SELECT seq FROM orchestrator.events(%s)
                                                       WHERE type = 'workflow.failed')""", (run_id, run_id))
        assert cur.fetchone()[0] == 0, events(cur, run_id)
    print("ok: a step of a run that another step of the same claim failed is cancelled, not started again; "
          "a response of a run that ended is dropped")


def test_batch_redone_item_by_item(cur, sink):
    """A response whose result is over the owner's max_result_bytes makes
    the recording of its batch fail: the batch (its runs locked and leases
    taken together) is rolled back and redone item by item; that step's
    attempt fails (54000, internal, not retried), the others of the batch
    succeed."""
    cur.execute("SELECT orchestrator.set_owner_limits('postgres', '{\"max_result_bytes\": 3000}')")
    try:
        cur.execute("""SELECT orchestrator.define_workflow('echo_size', %s)""", (json.dumps({"steps": [
            {"name": "e", "kind": "http",
             "request": {"method": "POST", "url": "http://127.0.0.1:%d/echo/size" % SINK,
                         "body": {"pad": {"$path": "$.input.pad"}}}}]}),))
        cur.execute("SELECT orchestrator.start_workflow('echo_size', jsonb_build_object('pad', repeat('x', n))) "
                    "FROM unnest(ARRAY[10, 10, 10, 10, 10000, 10, 10, 10, 10, 10]) n")
        ids = [r[0] for r in cur.fetchall()]
        wait_runs(cur, ids)
        statuses = [run_of(cur, i)["status"] for i in ids]
        assert statuses == ["succeeded"] * 4 + ["failed"] + ["succeeded"] * 5, statuses
        step = run_of(cur, ids[4])["steps"]["e"]
        assert step["status"] == "failed" and step["attempt"] == 1, step
        assert step["error"]["sqlstate"] == "54000" and step["error"]["internal"] is True, step["error"]
    finally:
        cur.execute("SELECT orchestrator.set_owner_limits('postgres', '{\"max_result_bytes\": null}')")
    print("ok: a response over max_result_bytes fails its own attempt (54000, internal); the rest of its "
          "batch is recorded")


def test_queue_vacuumed(cur, sink):
    """HTTP steps' queue rows count towards the first dispatcher's own
    VACUUM of work_queue (decision 63: "deleted or leased by anyone"): 2,100
    one-step http runs lease and delete 4,200 queue rows, and the queue is
    vacuumed afterwards, not only when autovacuum comes by (before, the
    HTTP claim's leases and the recording's deletions were statements that
    counted nothing: an HTTP-only workload never had it vacuumed).  Their
    histories keep their order: created, started, step started, step.http,
    step succeeded, succeeded."""
    cur.execute("SELECT vacuum_count FROM pg_stat_user_tables "
                "WHERE schemaname = 'orchestrator' AND relname = 'work_queue'")
    before = cur.fetchone()[0]
    cur.execute("""SELECT orchestrator.define_workflow('churn_http', %s)""", (json.dumps({"steps": [
        {"name": "a", "kind": "http",
         "request": {"method": "POST", "url": "http://127.0.0.1:%d/fast" % SINK,
                     "body": {"i": {"$path": "$.input.i"}}}}]}),))
    cur.execute("SELECT orchestrator.start_workflow('churn_http', jsonb_build_object('i', g)) "
                "FROM generate_series(1, 2100) g")
    ids = [r[0] for r in cur.fetchall()]
    wait_runs(cur, ids, timeout=120)
    cur.execute("SELECT count(*) FROM orchestrator.workflow_runs WHERE name = 'churn_http' AND status = 'succeeded'")
    assert cur.fetchone()[0] == 2100
    for run_id in ids[:3] + ids[-3:]:
        assert [(t, s) for t, s, _ in events(cur, run_id)] == [
            ("workflow.created", None), ("workflow.started", None), ("step.started", "a"),
            ("step.http", "a"), ("step.succeeded", "a"), ("workflow.succeeded", None)], events(cur, run_id)
        started = events(cur, run_id, "step.started")[0][2]
        assert started["attempt"] == 1 and started["worker"].startswith("http:"), started
    deadline = time.time() + 30
    after = before
    while time.time() < deadline:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT vacuum_count FROM pg_stat_user_tables "
                    "WHERE schemaname = 'orchestrator' AND relname = 'work_queue'")
        after = cur.fetchone()[0]
        if after > before:
            break
        time.sleep(0.2)
    assert after > before, "work_queue was not vacuumed by the dispatcher (vacuum_count %d)" % after
    print("ok: 2,100 http steps' queue rows get work_queue vacuumed by the first dispatcher; "
          "their histories in order")


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    sink = Sink(SINK).start()
    try:
        with open(os.path.join(DATADIR, "postgresql.conf"), "a") as f:
            f.write(SETTINGS)
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        test_default_refuses_all(cur)
        cur.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)
        test_requests(cur, sink)
        test_retries(cur, sink)
        test_allow_list(cur)
        test_egress(cur, sink)
        test_circuit_breaker(cur)
        test_webhooks(cur, sink)
        test_tls_verified(cur)
        test_fan_out(cur, sink)
        test_run_ended_by_claim(cur, sink)
        test_batch_redone_item_by_item(cur, sink)
        test_queue_vacuumed(cur, sink)
    finally:
        sink.stop()
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])


if __name__ == "__main__":
    main()
    sys.exit(0)
