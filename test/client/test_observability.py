"""Counters, histograms, trace context and span export against a live cluster:

  - metrics(): exact counts of runs by workflow and status, steps by
    workflow, kind and status, HTTP and webhook attempts by outcome; the
    histograms' buckets, counts and sums agree; a fourth workflow beyond
    orchestrator.metrics_max_workflows = 3 is counted as "other";
  - only committed transitions count: a backend terminated in the middle of
    a transaction that completed a run adds nothing; a backend killed with
    SIGKILL makes the server reinitialise shared memory, so every counter
    starts again from zero (Prometheus counter semantics);
  - trace context: a run started with option traceparent keeps the caller's
    trace id; HTTP requests and webhook deliveries carry a traceparent of the
    run's trace, claim_steps() returns one;
  - OTLP export: with orchestrator.otlp_endpoint set, a sink on 127.0.0.1
    receives one span per run and per step attempt, checked against the
    OTLP/HTTP JSON encoding of ExportTraceServiceRequest field by field
    (Debian 12 packages no opentelemetry-proto for Python, so the test
    validates the JSON by hand: field names, types, hex ids, nanosecond
    strings, enums); each run is one trace whose attempt spans are children
    of the run span; a caller's unsampled trace is not exported; spans that
    cannot be delivered (collector refusing connections, or answering 503)
    are dropped and counted in orchestrator_otlp_spans_dropped_total.

Starts its own cluster (test/cluster.sh) on 127.0.0.1:5545 and sinks on
5546 (HTTP steps, webhooks) and 5547 (OTLP collector), and stops them.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from http_sink import Sink, refusing_port  # noqa: E402

CLUSTER = os.path.join(HERE, "..", "cluster.sh")
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
PORT, SINK, OTLP = 5545 + OFFSET, 5546 + OFFSET, 5547 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-obs-")
SETTINGS = """
orchestrator.http_allowed_hosts = '127.0.0.1:%d'
orchestrator.otlp_endpoint = 'http://127.0.0.1:%d/'
orchestrator.metrics_max_workflows = 3
orchestrator.webhook_retry_schedule = '1 second'
orchestrator.poll_interval = 200
restart_after_crash = on
""" % (SINK, OTLP)
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def connect():
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    conn.autocommit = True
    return conn


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def wait_runs(cur, ids):
    def done():
        cur.execute("SELECT count(*) FROM orchestrator.workflow_runs WHERE id = ANY(%s::uuid[]) "
                    "AND status IN ('pending', 'running', 'compensating')", (list(ids),))
        return cur.fetchone()[0] == 0
    wait_for("runs %r" % (ids,), done)


def metrics(cur):
    """{(family, frozenset(labels)): value} of every sample of metrics()."""
    cur.execute("SELECT orchestrator.metrics()")
    out = {}
    for line in cur.fetchone()[0].splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_0-9]+)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-z]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(ms, family, **labels):
    return ms.get((family, frozenset(labels.items())), 0)


def start(cur, name, options=None):
    cur.execute("SELECT orchestrator.start_workflow(%s, '{}', %s)", (name, json.dumps(options or {})))
    return cur.fetchone()[0]


def work_external(cur, queue, n):
    """Claim and complete n steps of a queue; returns the claimed rows."""
    rows = []
    def claim():
        cur.execute("SELECT run_id, step, attempt, lease_token, traceparent FROM orchestrator.claim_steps(%s, 'obs', 10)",
                    (queue,))
        got = cur.fetchall()
        for run_id, step, _, token, _ in got:
            cur.execute("SELECT orchestrator.complete_step(%s, %s, %s, '{}')", (run_id, step, token))
            assert cur.fetchone()[0]
        rows.extend(got)
        return len(rows) >= n
    wait_for("%d steps on %s" % (n, queue), claim)
    assert len(rows) == n, rows
    return rows


def span_id(run_id, step=None, attempt=0):
    return hashlib.md5(("%s/%s/%d" % (run_id, step or "", attempt if step else 0)).encode()).hexdigest()[:16]


def define(cur):
    cur.execute("SELECT orchestrator.define_workflow('obs_ok', %s)", (json.dumps({"steps": [
        {"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
        {"name": "b", "kind": "http", "depends_on": ["a"],
         "request": {"url": "http://127.0.0.1:%d/echo" % SINK}},
        {"name": "c", "kind": "external", "queue": "obs", "depends_on": ["b"]}]}),))
    cur.execute("SELECT orchestrator.define_workflow('obs_fail', %s)", (json.dumps({"steps": [
        {"name": "boom", "kind": "sql", "sql": "SELECT 1 / 0",
         "retry": {"max_attempts": 2, "backoff": "100 milliseconds", "jitter": 0}}]}),))
    cur.execute("SELECT orchestrator.define_workflow('obs_cancel', %s)", (json.dumps({"steps": [
        {"name": "held", "kind": "external", "queue": "obs_held"}]}),))
    cur.execute("SELECT orchestrator.define_workflow('obs_extra', %s)", (json.dumps({"steps": [
        {"name": "x", "kind": "sql", "sql": "SELECT 2 AS two"}]}),))


def test_counters(cur, sink):
    # one workflow after the other: the first three names seen get series
    ok = [start(cur, "obs_ok", {"traceparent": CALLER}), start(cur, "obs_ok"), start(cur, "obs_ok")]
    claimed = work_external(cur, "obs", 3)
    wait_runs(cur, ok)
    fail = [start(cur, "obs_fail"), start(cur, "obs_fail")]
    wait_runs(cur, fail)
    held = start(cur, "obs_cancel")
    cur.execute("SELECT orchestrator.cancel_workflow(%s)", (held,))
    extra = start(cur, "obs_extra")
    wait_runs(cur, [extra])
    for r in ok:
        cur.execute("SELECT orchestrator.get_workflow(%s) ->> 'status'", (r,))
        assert cur.fetchone()[0] == "succeeded"

    ms = metrics(cur)
    expect = {
        ("orchestrator_runs_total", (("workflow", "obs_ok"), ("status", "succeeded"))): 3,
        ("orchestrator_runs_total", (("workflow", "obs_ok"), ("status", "failed"))): 0,
        ("orchestrator_runs_total", (("workflow", "obs_fail"), ("status", "failed"))): 2,
        ("orchestrator_runs_total", (("workflow", "obs_cancel"), ("status", "cancelled"))): 1,
        ("orchestrator_runs_total", (("workflow", "other"), ("status", "succeeded"))): 1,
        ("orchestrator_steps_total", (("workflow", "obs_ok"), ("kind", "sql"), ("status", "succeeded"))): 3,
        ("orchestrator_steps_total", (("workflow", "obs_ok"), ("kind", "http"), ("status", "succeeded"))): 3,
        ("orchestrator_steps_total", (("workflow", "obs_ok"), ("kind", "external"), ("status", "succeeded"))): 3,
        ("orchestrator_steps_total", (("workflow", "obs_fail"), ("kind", "sql"), ("status", "retrying"))): 2,
        ("orchestrator_steps_total", (("workflow", "obs_fail"), ("kind", "sql"), ("status", "dead"))): 2,
        ("orchestrator_steps_total", (("workflow", "obs_cancel"), ("kind", "external"), ("status", "cancelled"))): 1,
        ("orchestrator_steps_total", (("workflow", "other"), ("kind", "sql"), ("status", "succeeded"))): 1,
        ("orchestrator_http_attempts_total", (("outcome", "success"),)): 3,
        ("orchestrator_http_attempts_total", (("outcome", "server_error"),)): 0,
        ("orchestrator_step_duration_seconds_count", (("kind", "sql"),)): 3 + 4 + 1,
        ("orchestrator_step_duration_seconds_count", (("kind", "http"),)): 3,
        ("orchestrator_step_duration_seconds_count", (("kind", "external"),)): 3,
        # every attempt of sql, http and external steps came through a queue
        ("orchestrator_dispatch_latency_seconds_count", ()): 3 + 4 + 1 + 3 + 3,
    }
    for (family, labels), n in expect.items():
        got = value(ms, family, **dict(labels))
        assert got == n, (family, labels, got, n)
    # no series for obs_extra: it is "other"
    assert not [k for k in ms if ("workflow", "obs_extra") in k[1]
                and k[0] in ("orchestrator_runs_total", "orchestrator_steps_total")], ms
    # every steps_total series is one of the expected ones
    steps = {k: v for k, v in ms.items() if k[0] == "orchestrator_steps_total"}
    assert sum(steps.values()) == 3 + 3 + 3 + 2 + 2 + 1 + 1, steps
    check_histograms(ms)
    print("ok: exact run, step, HTTP counters; histogram counts; 'other' beyond metrics_max_workflows")
    return ok, claimed, fail


def check_histograms(ms):
    """Buckets cumulative, +Inf = count, and the sum within what the buckets allow."""
    for family in ("orchestrator_step_duration_seconds", "orchestrator_dispatch_latency_seconds"):
        series = {}
        for (f, labels), v in ms.items():
            if f == family + "_bucket":
                le = dict(labels)["le"]
                rest = frozenset(l for l in labels if l[0] != "le")
                series.setdefault(rest, []).append((float("inf") if le == "+Inf" else float(le), v))
        assert series, family
        for rest, buckets in series.items():
            buckets.sort()
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), (family, rest, buckets)
            count = ms[(family + "_count", rest)]
            total = ms[(family + "_sum", rest)]
            assert buckets[-1][1] == count, (family, rest, buckets, count)
            low = high = 0.0
            prev_le, prev_n = 0.0, 0
            for le, n in buckets:
                if n > prev_n:
                    low += (n - prev_n) * prev_le
                    high += (n - prev_n) * le
                prev_le, prev_n = le, n
            assert low - 1e-6 <= total <= high + 1e-6, (family, rest, low, total, high)


def test_trace_context(cur, sink, ok, claimed):
    cur.execute("SELECT id, trace_id FROM orchestrator.runs WHERE id = ANY(%s::uuid[])", (ok,))
    traces = dict(cur.fetchall())
    assert traces[ok[0]] == CALLER.split("-")[1], traces
    assert len(set(traces.values())) == 3
    # HTTP requests: the run's trace, the span of the attempt
    seen = set()
    for r in sink.requests("/echo"):
        v, trace, span, flags = r["headers"]["traceparent"].split("-")
        run = [x for x, t in traces.items() if t == trace]
        assert v == "00" and flags == "01" and len(run) == 1, r["headers"]
        assert span == span_id(run[0], "b", 1), (span, run)
        seen.add(run[0])
    assert seen == set(ok), seen
    # claim_steps(): the same for the external step
    for run_id, step, attempt, _, tp in claimed:
        assert tp == "00-%s-%s-01" % (traces[run_id], span_id(run_id, step, attempt)), (tp, run_id)
    print("ok: caller's trace kept, traceparent in HTTP requests and claim_steps()")
    return traces


HEX = re.compile(r'^[0-9a-f]+$')


def check_any_value(v):
    assert isinstance(v, dict) and len(v) == 1, v
    (k, x), = v.items()
    assert k in ("stringValue", "intValue", "boolValue", "doubleValue"), k
    if k == "stringValue":
        assert isinstance(x, str)
    if k == "intValue":
        assert isinstance(x, str) and re.match(r'^-?[0-9]+$', x), x   # int64: a JSON string


def check_attributes(attrs):
    assert isinstance(attrs, list)
    keys = []
    for a in attrs:
        assert set(a) == {"key", "value"}, a
        assert isinstance(a["key"], str) and a["key"]
        check_any_value(a["value"])
        keys.append(a["key"])
    assert len(keys) == len(set(keys)), keys
    return {a["key"]: list(a["value"].values())[0] for a in attrs}


def check_request(body):
    """An ExportTraceServiceRequest in the OTLP/HTTP JSON encoding; its spans."""
    req = json.loads(body)
    assert set(req) == {"resourceSpans"}, req.keys()
    spans = []
    for rs in req["resourceSpans"]:
        assert set(rs) <= {"resource", "scopeSpans", "schemaUrl"}, rs.keys()
        assert set(rs["resource"]) <= {"attributes", "droppedAttributesCount"}
        res = check_attributes(rs["resource"]["attributes"])
        assert res["service.name"] == "orchestrator", res
        for ss in rs["scopeSpans"]:
            assert set(ss) <= {"scope", "spans", "schemaUrl"}, ss.keys()
            assert set(ss["scope"]) <= {"name", "version", "attributes"} and ss["scope"]["name"] == "orchestrator"
            for s in ss["spans"]:
                assert set(s) <= {"traceId", "spanId", "parentSpanId", "traceState", "name", "kind",
                                  "startTimeUnixNano", "endTimeUnixNano", "attributes", "events",
                                  "links", "status", "flags", "droppedAttributesCount"}, s.keys()
                assert len(s["traceId"]) == 32 and HEX.match(s["traceId"]) and s["traceId"] != "0" * 32, s
                assert len(s["spanId"]) == 16 and HEX.match(s["spanId"]), s
                assert "parentSpanId" not in s or (len(s["parentSpanId"]) == 16 and HEX.match(s["parentSpanId"])), s
                assert isinstance(s["name"], str) and s["name"]
                assert s["kind"] in (0, 1, 2, 3, 4, 5), s            # SpanKind, an enum as its number
                for t in ("startTimeUnixNano", "endTimeUnixNano"):   # fixed64: a JSON string
                    assert isinstance(s[t], str) and re.match(r'^[0-9]{19}$', s[t]), s[t]
                assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"]), s
                assert abs(int(s["endTimeUnixNano"]) / 1e9 - time.time()) < 600, s
                s["attrs"] = check_attributes(s["attributes"])
                assert set(s["status"]) <= {"code", "message"} and s["status"]["code"] in (0, 1, 2), s
                spans.append(s)
    return spans


def received(otlp):
    spans = []
    for r in otlp.requests("/v1/traces"):
        assert r["method"] == "POST" and r["headers"]["content-type"] == "application/json", r["headers"]
        spans.extend(check_request(r["body"]))
    return spans


def test_spans(cur, otlp, traces, fail):
    # 3 obs_ok runs (3 attempts each), 2 obs_fail runs (2 attempts each),
    # the cancelled run (no attempt ended), the obs_extra run (1 attempt)
    expected = 3 + 9 + 2 + 4 + 1 + 1 + 1
    spans = wait_for("%d spans" % expected, lambda: len(received(otlp)) >= expected and received(otlp))
    assert len(spans) == expected, len(spans)
    ms = metrics(cur)
    assert value(ms, "orchestrator_otlp_spans_exported_total") == expected
    assert value(ms, "orchestrator_otlp_spans_dropped_total") == 0
    for run_id, trace in traces.items():
        mine = [s for s in spans if s["traceId"] == trace]
        runs = [s for s in mine if "orchestrator.step" not in s["attrs"]]
        assert len(runs) == 1 and len(mine) == 4, mine
        root = runs[0]
        assert root["spanId"] == span_id(run_id) and root["name"] == "obs_ok", root
        assert root["attrs"]["orchestrator.run_id"] == run_id and root["status"] == {"code": 1}, root
        if trace == CALLER.split("-")[1]:
            assert root["parentSpanId"] == CALLER.split("-")[2], root
        else:
            assert "parentSpanId" not in root, root
        kinds = {}
        for s in mine:
            if s is root:
                continue
            a = s["attrs"]
            assert s["parentSpanId"] == root["spanId"], s
            assert s["spanId"] == span_id(run_id, a["orchestrator.step"], int(a["orchestrator.attempt"])), s
            assert a["orchestrator.workflow"] == "obs_ok" and a["orchestrator.run_id"] == run_id, a
            assert s["name"] == "obs_ok." + a["orchestrator.step"] and s["status"] == {"code": 1}, s
            assert int(root["startTimeUnixNano"]) <= int(s["startTimeUnixNano"]) <= int(root["endTimeUnixNano"])
            kinds[a["orchestrator.step"]] = a["orchestrator.step.kind"]
        assert kinds == {"a": "sql", "b": "http", "c": "external"}, kinds
    for run_id in fail:
        cur.execute("SELECT trace_id FROM orchestrator.runs WHERE id = %s", (run_id,))
        trace = cur.fetchone()[0]
        mine = [s for s in spans if s["traceId"] == trace]
        assert sorted((s["attrs"].get("orchestrator.attempt", ""), s["attrs"]["orchestrator.status"], s["status"]["code"])
                      for s in mine) == [("", "failed", 2), ("1", "retrying", 2), ("2", "dead", 2)], mine
        assert all(s["status"].get("message") for s in mine), mine
    # the caller's unsampled trace: no spans
    unsampled = start(cur, "obs_extra", {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    marker = start(cur, "obs_extra")
    wait_runs(cur, [unsampled, marker])
    wait_for("spans of the marker run", lambda: [s for s in received(otlp)
                                                 if s["attrs"]["orchestrator.run_id"] == marker])
    assert not [s for s in received(otlp) if s["attrs"]["orchestrator.run_id"] == unsampled]
    print("ok: %d spans, valid OTLP JSON; one trace per run, attempt spans under the run span; "
          "caller's parent span; unsampled trace not exported" % expected)


def test_dropped(cur, otlp, exported):
    # everything so far was delivered before the collector goes away
    wait_for("%d spans exported" % exported,
             lambda: value(metrics(cur), "orchestrator_otlp_spans_exported_total") == exported)
    before = value(metrics(cur), "orchestrator_otlp_spans_dropped_total")
    assert before == 0
    for endpoint in ("http://127.0.0.1:%d" % refusing_port(), "http://127.0.0.1:%d/status/503" % OTLP):
        cur.execute("ALTER SYSTEM SET orchestrator.otlp_endpoint = %s", (endpoint,))
        cur.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        run = start(cur, "obs_extra")
        wait_runs(cur, [run])
        before += 2      # the run and its attempt
        wait_for("dropped spans", lambda: value(metrics(cur), "orchestrator_otlp_spans_dropped_total") == before)
        assert not [s for s in received(otlp) if s["attrs"]["orchestrator.run_id"] == run]
    cur.execute("ALTER SYSTEM RESET orchestrator.otlp_endpoint")
    cur.execute("SELECT pg_reload_conf()")
    assert otlp.requests("/status/503/v1/traces"), "the 503 collector was asked"
    print("ok: spans dropped and counted while the collector refuses connections or answers 503")


def test_webhooks(cur, sink):
    cur.execute("SELECT orchestrator.create_webhook(%s, '{workflow.succeeded}')",
                ("http://127.0.0.1:%d/echo-hook" % SINK,))
    run = start(cur, "obs_extra")
    wait_runs(cur, [run])
    hooks = wait_for("webhook delivery", lambda: sink.requests("/echo-hook"))
    cur.execute("SELECT trace_id FROM orchestrator.runs WHERE id = %s", (run,))
    trace = cur.fetchone()[0]
    tp = hooks[0]["headers"]["traceparent"].split("-")
    assert tp[0] == "00" and tp[1] == trace and len(tp[2]) == 16 and tp[3] == "01", tp
    wait_for("webhook counted", lambda: value(metrics(cur), "orchestrator_webhook_attempts_total", outcome="success") == 1)
    print("ok: webhook delivery carries the run's traceparent and is counted")


def backend_pid(conn):
    c = conn.cursor()
    c.execute("SELECT pg_backend_pid()")
    return c.fetchone()[0]


def test_uncommitted(cur):
    """A transition in a transaction that never commits is not counted."""
    def succeeded():
        return value(metrics(cur), "orchestrator_runs_total", workflow="obs_cancel", status="succeeded")
    base = succeeded()
    run = start(cur, "obs_cancel")

    # terminated mid-transaction (FATAL: the transaction aborts)
    victim = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    vc = victim.cursor()
    vc.execute("SELECT run_id, step, lease_token FROM orchestrator.claim_steps('obs_held', 'victim')")
    rid, step, token = vc.fetchone()
    vc.execute("SELECT orchestrator.complete_step(%s, %s, %s, '{}')", (rid, step, token))
    assert vc.fetchone()[0]
    cur.execute("SELECT orchestrator.get_workflow(%s) ->> 'status'", (run,))
    assert cur.fetchone()[0] == "pending"
    cur.execute("SELECT pg_terminate_backend(%s)", (backend_pid(victim),))
    time.sleep(0.5)
    assert succeeded() == base, "an aborted completion was counted"

    # killed with SIGKILL mid-transaction: the server reinitialises, counters restart
    victim = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    vc = victim.cursor()
    vc.execute("SELECT run_id, step, lease_token FROM orchestrator.claim_steps('obs_held', 'victim')")
    rid, step, token = vc.fetchone()
    vc.execute("SELECT orchestrator.complete_step(%s, %s, %s, '{}')", (rid, step, token))
    os.kill(backend_pid(victim), signal.SIGKILL)

    def reset():        # the postmaster ends every other backend too
        try:
            cur.execute("SELECT pg_sleep(0.1)")
            return False
        except psycopg2.Error:
            return True
    wait_for("the crash restart", reset)

    def back():
        try:
            c = connect()
            c.cursor().execute("SELECT 1")
            return c
        except psycopg2.OperationalError:
            return None
    conn = wait_for("the server after the crash", back)
    cur2 = conn.cursor()
    ms = metrics(cur2)
    assert value(ms, "orchestrator_runs_total", workflow="obs_cancel", status="succeeded") == 0, ms
    assert not [k for k in ms if k[0] in ("orchestrator_runs_total", "orchestrator_steps_total")], \
        "counters survived a crash restart"
    cur2.execute("SELECT orchestrator.get_workflow(%s) ->> 'status'", (run,))
    assert cur2.fetchone()[0] == "pending"

    # committed now: counted once (the rolled-back claims took no attempt)
    rows = work_external(cur2, "obs_held", 1)
    assert rows[0][0] == run and rows[0][2] == 1, rows
    assert value(metrics(cur2), "orchestrator_runs_total", workflow="obs_cancel", status="succeeded") == 1
    print("ok: uncommitted transitions not counted (terminated, killed: counters restart at zero)")
    return conn


def main():
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    with open(os.path.join(DATADIR, "postgresql.conf"), "a") as f:
        f.write(SETTINGS)
    subprocess.run(["bash", CLUSTER, "stop", DATADIR], check=True)
    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    sink = Sink(SINK).start()
    otlp = Sink(OTLP).start()
    try:
        admin = connect()
        cur = admin.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        define(cur)
        ok, claimed, fail = test_counters(cur, sink)
        traces = test_trace_context(cur, sink, ok, claimed)
        test_spans(cur, otlp, traces, fail)
        test_webhooks(cur, sink)
        # 21 + the marker run's 2 + the webhook test's run 2
        test_dropped(cur, otlp, 25)
        test_uncommitted(cur)
    finally:
        sink.stop()
        otlp.stop()
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])


if __name__ == "__main__":
    main()
    sys.exit(0)
