"""The Grafana dashboard docs/grafana/orchestrator.json is a valid dashboard
model, and every query in it (panels and template variables) runs against a
database with history, after substituting Grafana's macros and variables the
way the PostgreSQL data source does, and returns rows with the expected
columns.

Starts its own throwaway cluster (test/cluster.sh) on 127.0.0.1 and stops it.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CLUSTER = os.path.join(HERE, "..", "cluster.sh")
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "orchestrator.json")
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT = 5524 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-grafana-")

# Columns each panel must return, by title.  Time series: the first column
# is "time" (or the alias $__timeGroupAlias makes).
EXPECTED = {
    "Runs by status per day": ["time", "metric", "runs"],
    "Throughput (runs finished)": ["time", "metric", "runs"],
    "Step latency p95 (seconds)": ["time", "metric", "p95"],
    "Step latency percentiles": ["workflow", "step", "kind", "samples", "p50_worst_day",
                                 "p95_worst_day", "p99_worst_day", "max"],
    "Error rate": ["time", "metric", "error_rate"],
    "Most common errors": ["workflow", "step", "message", "sqlstate", "occurrences", "last_seen"],
    "Queue depth": ["queue", "ready", "scheduled", "running", "oldest_ready_age_seconds"],
    "Cost per day": ["time", "metric", "cost"],
    "Cost and tokens by tenant": ["tenant", "workflow", "runs", "cost", "tokens"],
}

# History: 3 workflows x 3 tenants (one of them none) over the last 10 days,
# with failures, costs and tokens, plus work waiting on a queue.
HISTORY = r"""
SELECT orchestrator.define_workflow('gf_' || w, '{"steps": [{"name": "call", "kind": "external", "queue": "gf_queue"}]}')
FROM unnest(ARRAY['a', 'b', 'c']) w;
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 11, 12);
WITH gen AS (
  SELECT i, now() - (i % 10) * interval '1 day' - (i % 1440) * interval '1 minute' - interval '10 minutes' AS created
  FROM generate_series(1, 3000) i)
INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at,
  started_at, finished_at, cost)
SELECT orchestrator.uuid_v7_boundary(created + (i % 997) * interval '1 microsecond' * 1000),
       'gf_' || (ARRAY['a', 'b', 'c'])[i % 3 + 1], 1,
       CASE WHEN i % 7 = 0 THEN 'failed' WHEN i % 11 = 0 THEN 'cancelled' ELSE 'succeeded' END,
       (ARRAY['acme', 'globex', NULL])[i % 3 + 1], 'postgres', 'postgres', '{}', created, created,
       created + (i % 60) * interval '1 second', (i % 100) / 1000.0
FROM gen
ON CONFLICT DO NOTHING;
INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, result, error, started_at, finished_at)
SELECT r.id, 'call', 0, 'external', CASE WHEN r.status = 'failed' THEN 'dead' ELSE 'succeeded' END, 0,
       CASE WHEN r.status <> 'failed' THEN jsonb_build_object('cost', r.cost, 'tokens', 42) END,
       CASE WHEN r.status = 'failed' THEN jsonb_build_object('message', 'upstream timeout', 'sqlstate', '57014') END,
       r.started_at, r.finished_at
FROM orchestrator.workflow_runs r WHERE r.name LIKE 'gf\_%';
SELECT count(orchestrator.start_workflow('gf_a', '{}', '{"tenant": "acme"}')) FROM generate_series(1, 5);
"""


def connect():
    conn = psycopg2.connect(host="127.0.0.1", port=PORT, dbname="orchestrator", user="postgres")
    conn.autocommit = True
    return conn


def check_model(dash):
    """The parts of the dashboard model Grafana needs to import it."""
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert key in dash, "dashboard has no %r" % key
    assert isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids %r" % ids
    names = [v["name"] for v in dash["templating"]["list"]]
    assert {"datasource", "definition", "tenant"} <= set(names), names
    for p in dash["panels"]:
        for key in ("type", "title", "gridPos", "datasource", "targets"):
            assert key in p, "panel %r has no %r" % (p.get("title"), key)
        assert p["datasource"]["type"] == "grafana-postgresql-datasource"
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, g
        for t in p["targets"]:
            assert t["rawQuery"] and t["format"] in ("time_series", "table") and t["rawSql"].strip()
    assert set(EXPECTED) == {p["title"] for p in dash["panels"]}, "panels without expected columns"


def sql_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(interval):
    m = re.fullmatch(r"(\d+)([smhd])", interval.strip().strip("'"))
    assert m, "unsupported interval %r" % interval
    return int(m.group(1)) * INTERVALS[m.group(2)]


def expand(sql, time_from, time_to, variables, interval="1m"):
    """Substitute macros and variables as Grafana's PostgreSQL data source does."""
    frm = time_from.strftime("%Y-%m-%dT%H:%M:%SZ")
    to = time_to.strftime("%Y-%m-%dT%H:%M:%SZ")
    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: "%s BETWEEN '%s' AND '%s'" % (m.group(1).strip(), frm, to), sql)
    sql = sql.replace("$__timeFrom()", "'%s'" % frm).replace("$__timeTo()", "'%s'" % to)

    def group(m, alias):
        col, iv = [a.strip() for a in m.group(1).split(",")[:2]]
        s = seconds(iv)
        return "floor(extract(epoch from %s)/%d)*%d%s" % (col, s, s, ' AS "time"' if alias else "")
    sql = re.sub(r"\$__timeGroupAlias\(([^)]+)\)", lambda m: group(m, True), sql)
    sql = re.sub(r"\$__timeGroup\(([^)]+)\)", lambda m: group(m, False), sql)
    for name, values in variables.items():
        quoted = ",".join(sql_literal(v) for v in values)
        sql = re.sub(r"\$\{%s\}|\$%s\b" % (name, name), quoted, sql)
    assert "$" not in sql.replace("$$", ""), "unsubstituted macro in %s" % sql
    return sql


def main():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    check_model(dash)

    subprocess.run(["bash", CLUSTER, "start", DATADIR, str(PORT), "orchestrator"], check=True)
    try:
        conn = connect()
        cur = conn.cursor()
        cur.execute("CREATE EXTENSION IF NOT EXISTS orchestrator")
        cur.execute(HISTORY)
        now = datetime.datetime.now(datetime.timezone.utc)
        time_from, time_to = now - datetime.timedelta(days=30), now

        # Template variables first: their values feed the panels (All = every value).
        variables = {}
        for v in dash["templating"]["list"]:
            if v["type"] != "query":
                continue
            cur.execute(expand(v["query"], time_from, time_to, {}))
            values = [r[0] for r in cur.fetchall()]
            assert values, "variable %s has no values" % v["name"]
            variables[v["name"]] = values
            print("variable %-10s %s" % (v["name"], values))
        assert {"gf_a", "gf_b", "gf_c"} <= set(variables["definition"])
        assert set(variables["tenant"]) == {"acme", "globex", "(none)"}, variables["tenant"]

        # Every panel query with all values, then with one workflow and one tenant.
        for p in dash["panels"]:
            for t in p["targets"]:
                for label, vs in (("all", variables), ("one", {"definition": ["gf_b"], "tenant": ["globex"]})):
                    sql = expand(t["rawSql"], time_from, time_to, vs)
                    cur.execute(sql)
                    cols = [d[0] for d in cur.description]
                    rows = cur.fetchall()
                    assert cols == EXPECTED[p["title"]], (p["title"], cols)
                    assert rows, "panel %r (%s) returned no rows:\n%s" % (p["title"], label, sql)
                    if t["format"] == "time_series":
                        assert all(r[0] is not None for r in rows)
                    print("panel %-30s %-3s %4d rows  %s" % (p["title"], label, len(rows), ", ".join(cols)))
        # A range with no data gives no rows rather than an error.
        cur.execute(expand(dash["panels"][0]["targets"][0]["rawSql"],
                           now - datetime.timedelta(days=400), now - datetime.timedelta(days=399), variables))
        assert cur.fetchall() == []
    finally:
        subprocess.run(["bash", CLUSTER, "stop", DATADIR])
        subprocess.run(["rm", "-rf", DATADIR])


if __name__ == "__main__":
    main()
    sys.exit(0)
