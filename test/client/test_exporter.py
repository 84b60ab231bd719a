"""Prometheus through the standard exporter: prometheus-postgres-exporter
(Debian's) with docs/prometheus/queries.yaml, connected as the role that
docs/prometheus/exporter.sql creates, serves every series of
orchestrator.metrics() under the same name, labels, type and value, plus
today's aggregates of the analytics views; that role can do nothing else.
The alert rules pass promtool's check and unit tests.

Then Prometheus (Debian's, when installed) scrapes the exporter with the
alert rules loaded, and every query of the Grafana dashboard for that data
source (docs/grafana/orchestrator-prometheus.json) returns series.

Starts its own throwaway cluster (test/cluster.sh), the exporter and
Prometheus on 127.0.0.1, and stops them.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import psycopg2
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CLUSTER = os.path.join(HERE, "..", "cluster.sh")
PROM = os.path.join(ROOT, "docs", "prometheus")
EXPORTER = "/usr/bin/prometheus-postgres-exporter"
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT, HTTP_PORT, PROM_PORT = 5547 + OFFSET, 5548 + OFFSET, 5550 + OFFSET
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "orchestrator-prometheus.json")
DATADIR = tempfile.mkdtemp(prefix="orchestrator-exporter-")
ROLE = "orchestrator_exporter"

failures = []


def check(cond, what, hint=""):
    print("%s %s%s" % ("ok    " if cond else "FAILED", what, "" if cond or not hint else ": " + hint), flush=True)
    if not cond:
        failures.append(what)


def connect(user="postgres"):
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user=user)
    conn.autocommit = True
    return conn


def psql_file(path):
    subprocess.run([os.path.join(BINDIR, "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres",
                    "-d", "orchestrator", "-v", "ON_ERROR_STOP=1", "-f", path], check=True)


LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Exposition text -> ({(name, frozenset(labels)): value}, {family: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, typ = line.split(None, 3)
            types[family] = typ.strip()
            continue
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, "unparsable exposition line %r" % line
        labels = frozenset((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                           for k, v in LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


def scrape():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % HTTP_PORT, timeout=30) as r:
        return r.read().decode()


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return found[0] if len(found) == 1 else (None if not found else found)


def sqlstate_of(conn, sql):
    cur = conn.cursor()
    try:
        cur.execute(sql)
        cur.fetchall()
        return None
    except psycopg2.Error as e:
        return e.pgcode


def check_alerts():
    """promtool when Debian's prometheus is installed, else a structural check."""
    rules = yaml.safe_load(open(os.path.join(PROM, "alerts.yaml")))
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    check(len(names) == len(set(names)) and all("expr" in r and "severity" in r.get("labels", {})
                                                for g in rules["groups"] for r in g["rules"]),
          "alerts.yaml: %d rules, each with expr and severity" % len(names))
    promtool = shutil.which("promtool")
    if not promtool:
        print("(promtool not installed: alerts.yaml checked as YAML only)")
        return
    r = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=PROM, capture_output=True, text=True)
    check(r.returncode == 0, "promtool check rules alerts.yaml\n" + r.stdout + r.stderr)
    r = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=PROM, capture_output=True, text=True)
    check(r.returncode == 0, "promtool test rules alerts.test.yaml\n" + r.stdout + r.stderr)
    tested = set(re.findall(r"alertname: (\w+)", open(os.path.join(PROM, "alerts.test.yaml")).read()))
    check(set(names) <= tested, "every alert has a unit test (untested: %s)" % sorted(set(names) - tested))


def check_dashboard(dash):
    """The parts of the dashboard model Grafana needs to import it; returns its queries."""
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in dash, "dashboard has no %r" % key
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids %r" % ids
    assert {"datasource", "server"} <= {v["name"] for v in dash["templating"]["list"]}
    exprs = []
    for p in dash["panels"]:
        assert p["datasource"]["type"] == "prometheus", p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, g
        for t in p["targets"]:
            exprs.append((p["title"], t["expr"]))
    return exprs


def prom_query(expr):
    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (PROM_PORT, urllib.parse.quote(expr))
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read().decode())
    assert body["status"] == "success", body
    return body["data"]["result"]


def check_prometheus(got):
    """Prometheus scrapes the exporter with the rules loaded; the dashboard's queries return series."""
    binary = shutil.which("prometheus")
    exprs = check_dashboard(json.load(open(DASHBOARD)))
    names = {n for n, _ in got}
    for title, expr in exprs:
        used = set(re.findall(r"\b(orchestrator_[a-z0-9_]+)", expr))
        check(used <= names, "dashboard panel %r uses series the exporter serves (missing: %s)"
              % (title, sorted(used - names)))
    if not binary:
        print("(prometheus not installed: the dashboard's queries were not run)")
        return
    tsdb = tempfile.mkdtemp(prefix="orchestrator-prometheus-")
    config = os.path.join(tsdb, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "rule_files: [%s]\n"
                "scrape_configs:\n  - job_name: orchestrator\n"
                "    static_configs: [{targets: ['127.0.0.1:%d']}]\n"
                % (json.dumps(os.path.join(PROM, "alerts.yaml")), HTTP_PORT))
    log = open(os.path.join(tsdb, "prometheus.log"), "w")
    prom = subprocess.Popen([binary, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(tsdb, "data"),
                             "--web.listen-address=127.0.0.1:%d" % PROM_PORT], stdout=log, stderr=subprocess.STDOUT)
    try:
        ok = False
        for _ in range(300):  # until rate() over the steps counter has two samples
            try:
                if prom_query("count_over_time(orchestrator_up[1m]) >= 3"):
                    ok = True
                    break
            except OSError:
                pass
            time.sleep(0.1)
        check(ok, "Prometheus scrapes the exporter")
        for title, expr in exprs:
            result = prom_query(expr.replace("$server", ".*"))
            check(len(result) > 0, "dashboard panel %r: %s returns %d series" % (title, expr, len(result)))
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/rules" % PROM_PORT, timeout=10) as r:
            rules = [x for g in json.loads(r.read().decode())["data"]["groups"] for x in g["rules"]]
        check(len(rules) > 0 and all(x["health"] == "ok" for x in rules),
              "Prometheus evaluates the %d alert rules without error %s"
              % (len(rules), [(x["name"], x.get("lastError")) for x in rules if x["health"] != "ok"]))
        firing = [x["name"] for x in rules if x.get("alerts")]
        print("alerts pending or firing on the test cluster: %s" % firing)
    finally:
        prom.terminate()
        prom.wait(10)
        if failures:
            print(open(os.path.join(tsdb, "prometheus.log")).read()[-3000:])
        shutil.rmtree(tsdb, ignore_errors=True)


def main():
    check_alerts()
    queries = yaml.safe_load(open(os.path.join(PROM, "queries.yaml")))
    check(all(q.get("master") is True and q.get("query") and q.get("metrics") for q in queries.values()),
          "queries.yaml: every entry has master, query and metrics")

    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    exporter = None
    try:
        conn = connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION orchestrator")
        psql_file(os.path.join(PROM, "exporter.sql"))
        psql_file(os.path.join(PROM, "exporter.sql"))  # again: harmless
        cur.execute("""
            CREATE ROLE app LOGIN IN ROLE orchestrator_user;
            GRANT CREATE ON SCHEMA public TO app""")
        app = connect("app")
        a = app.cursor()
        a.execute("""
            SELECT orchestrator.define_workflow('exp_ok', '{"steps": [{"name": "one", "kind": "sql", "sql": "SELECT 1 AS x"}]}');
            SELECT orchestrator.define_workflow('exp_fail', '{"steps": [{"name": "one", "kind": "sql", "sql": "SELECT * FROM no_such_table"}]}');
            SELECT orchestrator.define_workflow('exp_ext', '{"steps": [{"name": "call", "kind": "external", "queue": "exp_queue"}]}');
            SELECT count(orchestrator.start_workflow('exp_ok')) FROM generate_series(1, 5);
            SELECT count(orchestrator.start_workflow('exp_fail')) FROM generate_series(1, 2);
            SELECT count(orchestrator.start_workflow('exp_ext')) FROM generate_series(1, 3)""")
        for _ in range(300):
            a.execute("SELECT count(*) FROM orchestrator.runs WHERE name IN ('exp_ok', 'exp_fail') AND finished_at IS NULL")
            if a.fetchone()[0] == 0:
                break
            time.sleep(0.1)
        a.execute("SELECT name, status, count(*) FROM orchestrator.runs GROUP BY 1, 2 ORDER BY 1, 2")
        print("runs:", a.fetchall())
        # An open breaker of app's http steps (the row the dispatchers write
        # after orchestrator.http_breaker_threshold failures).
        cur.execute("""INSERT INTO orchestrator.http_circuits (owner, host, state, failures, opened_at, retry_at)
                       VALUES ('app', 'api.example.com:443', 'open', 5, now(), now() + interval '30 seconds')""")

        # The helpers parse the exposition format, escapes and histograms included.
        x = connect(ROLE).cursor()
        text = ('# TYPE h histogram\n'
                'h_bucket{kind="a\\\\b\\"c\\nd",le="0.5"} 1\nh_bucket{kind="a\\\\b\\"c\\nd",le="1"} 3\n'
                'h_bucket{kind="a\\\\b\\"c\\nd",le="+Inf"} 4\nh_sum{kind="a\\\\b\\"c\\nd"} 7.5\n'
                'h_count{kind="a\\\\b\\"c\\nd"} 4\ng 2.5\n')
        x.execute("SELECT labels, bounds, buckets, sum, count FROM orchestrator_exporter.histogram('h', %s)", (text,))
        check(x.fetchall() == [({"kind": 'a\\b"c\nd'}, [0.5, 1.0], [1, 3], 7.5, 4)],
              "orchestrator_exporter.histogram() reads a histogram family, label escapes undone")
        x.execute("SELECT name, labels, value FROM orchestrator_exporter.samples(%s) WHERE name = 'g'", (text,))
        check(x.fetchall() == [("g", {}, 2.5)], "orchestrator_exporter.samples() reads a sample without labels")

        # The exporter's role: least rights.
        xc = connect(ROLE)
        for what, sql in [
                ("read the runs", "SELECT * FROM orchestrator.runs"),
                ("read the history tables", "SELECT * FROM orchestrator.workflow_runs"),
                ("read the analytics views directly", "SELECT * FROM orchestrator.runs_per_day"),
                ("start a workflow", "SELECT orchestrator.start_workflow('exp_ok')"),
                ("cancel a run", "SELECT orchestrator.cancel_workflow(orchestrator.uuid_v7())"),
                ("claim steps", "SELECT * FROM orchestrator.claim_steps('exp_queue', 'x')"),
                ("run maintenance", "SELECT orchestrator.maintain()"),
                ("read the webhooks", "SELECT * FROM orchestrator.webhooks")]:
            state = sqlstate_of(xc, sql)
            check(state == "42501", "the exporter's role may not %s (got %s)" % (what, state))
        cur.execute("""SELECT pg_has_role('%s', 'orchestrator_user', 'USAGE'),
                              pg_has_role('%s', 'orchestrator_admin', 'USAGE')""" % (ROLE, ROLE))
        check(cur.fetchone() == (False, False), "the exporter's role is no orchestrator user or admin")

        # The real exporter, as that role.
        env = dict(os.environ, DATA_SOURCE_NAME="host=127.0.0.1 port=%d user=%s dbname=orchestrator sslmode=disable"
                   % (PORT, ROLE))
        log = open(os.path.join(DATADIR, "exporter.log"), "w")
        exporter = subprocess.Popen([EXPORTER, "--extend.query-path=" + os.path.join(PROM, "queries.yaml"),
                                     "--web.listen-address=127.0.0.1:%d" % HTTP_PORT], env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
        text = None
        for _ in range(100):
            try:
                text = scrape()
                break
            except OSError:
                time.sleep(0.1)
        check(text is not None, "the exporter answers on 127.0.0.1:%d" % HTTP_PORT)
        text = scrape()  # a second scrape: cached entries served too
        got, got_types = parse(text)
        cur.execute("SELECT orchestrator.metrics()")
        direct, direct_types = parse(cur.fetchone()[0])

        check(value(got, "pg_up") == 1, "pg_up 1")
        check(value(got, "pg_exporter_last_scrape_error") == 0, "no query failed (pg_exporter_last_scrape_error 0)")
        check(value(got, "pg_exporter_user_queries_load_error") == 0, "queries.yaml loaded")
        server = "127.0.0.1:%d" % PORT

        # Every family and every sample of metrics(), same name, labels, type and value.
        yaml_text = open(os.path.join(PROM, "queries.yaml")).read()
        for family, typ in sorted(direct_types.items()):
            if any(n == family or n.startswith(family + "_") for n, _ in direct):
                check(got_types.get(family) == typ,
                      "metrics() family %s (%s) is exported with its type (exporter: %s)"
                      % (family, typ, got_types.get(family)),
                      "add an entry for it to docs/prometheus/queries.yaml (templates at its end)")
            else:  # no sample in this cluster: at least named by an entry
                check("'%s" % family in yaml_text,
                      "metrics() family %s (%s, no sample here) is selected in queries.yaml" % (family, typ),
                      "add an entry for it to docs/prometheus/queries.yaml (templates at its end)")
        for (name, labels), v in sorted(direct.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
            key = (name, labels | {("server", server)})
            ok = key in got and (got[key] == v or name.endswith("_age_seconds") or name.endswith("_steps_total"))
            check(ok, "sample %s%s %s is exported as is (exporter: %s)"
                  % (name, dict(labels), v, got.get(key)))

        # Real values of this cluster's work.
        check(value(got, "orchestrator_workers_alive") == 2, "orchestrator_workers_alive 2")
        check(value(got, "orchestrator_live") == 1 and value(got, "orchestrator_ready") == 1, "live and ready")
        check(value(got, "orchestrator_active_runs") == 3, "orchestrator_active_runs 3 (the external steps)")
        check(value(got, "orchestrator_queue_ready", queue="exp_queue") == 3, "3 steps ready on exp_queue")
        check(value(got, "orchestrator_runs_finished_5m", workflow="exp_ok", status="succeeded") == 5,
              "5 runs of exp_ok succeeded in the last 5 minutes")
        check(value(got, "orchestrator_runs_finished_5m", workflow="exp_fail", status="failed") == 2,
              "2 runs of exp_fail failed in the last 5 minutes")
        check(got_types.get("orchestrator_worker_steps_total") == "counter", "steps per dispatcher is a counter")
        check(value(got, "orchestrator_http_circuit_open", owner="app", host="api.example.com:443", state="open") == 1,
              "the open breaker of app for api.example.com:443")
        cur.execute("SELECT min(created_at AT TIME ZONE 'UTC')::date = (now() AT TIME ZONE 'UTC')::date "
                    "FROM orchestrator.workflow_runs")
        if not cur.fetchone()[0]:
            print("(the UTC day changed since the runs were created: today's series are not compared)")
        else:
            check(value(got, "orchestrator_today_finished", workflow="exp_ok") == 5
                  and value(got, "orchestrator_today_succeeded", workflow="exp_ok") == 5,
                  "today: 5 runs of exp_ok finished and succeeded")
            check(value(got, "orchestrator_today_failed", workflow="exp_fail") == 2
                  and value(got, "orchestrator_today_error_rate", workflow="exp_fail") == 1,
                  "today: exp_fail failed twice, error rate 1")
            check(value(got, "orchestrator_today_step_samples", workflow="exp_ok", step="one", kind="sql") == 5,
                  "today: 5 samples of step exp_ok/one")
            p95 = value(got, "orchestrator_today_step_p95_seconds", workflow="exp_ok", step="one", kind="sql")
            check(isinstance(p95, float) and p95 >= 0, "today: p95 of step exp_ok/one is %r" % p95)
        print("\n".join(l for l in text.splitlines() if l.startswith("orchestrator_")))
        check_prometheus(got)
    finally:
        if exporter:
            exporter.terminate()
            exporter.wait(10)
            if failures:
                print(open(os.path.join(DATADIR, "exporter.log")).read()[-4000:])
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])
    if failures:
        print("%d checks failed" % len(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
