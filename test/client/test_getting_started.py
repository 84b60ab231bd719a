"""docs/getting-started.md works as written.

Its code blocks, in order:
  - ```ini: the postgresql.conf lines, appended to a throwaway cluster's
    configuration (initdb'd here: trust over the Unix socket, which the test
    uses as the superuser, and scram-sha-256 over TCP on 127.0.0.1, as in
    Debian's pg_hba.conf, so the worker's password is checked);
  - ```sh: commands that run a program of docs/examples are run (in the
    background, from the repository root, with PGHOST/PGPORT pointing at the
    cluster's socket); the install commands are compared with what test/setup.sh does
    (apt-get packages, make, make install) and the server commands with what
    this test does itself (createdb, restart); any other command fails;
  - ```sql: sent, in one psql session (ON_ERROR_STOP, so any error fails the
    test), as the superuser, to database "app";
  - <!-- test: wait until run :'var' is STATUS --> comments (invisible in the
    rendered page): wait for that run to reach that status.
Blocks without a language (sample output) are not run.
"""
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GUIDE = os.path.join(ROOT, "docs", "getting-started.md")
SETUP = os.path.join(ROOT, "test", "setup.sh")
# ORCH_PORT_OFFSET / PG_BINDIR: to run two suites at once on one machine.
OFFSET = int(os.environ.get("ORCH_PORT_OFFSET", "0"))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PORT = 5549 + OFFSET
DATADIR = tempfile.mkdtemp(prefix="orchestrator-guide-")
MARK = "@@guide-block-done@@"

WAIT_FUNCTION = r"""
CREATE SCHEMA guide_test;
GRANT USAGE ON SCHEMA guide_test TO PUBLIC;
CREATE FUNCTION guide_test.wait_run(id uuid, want text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOR i IN 1 .. 600 LOOP
    SELECT r.status INTO s FROM orchestrator.runs r WHERE r.id = wait_run.id;
    IF s = want THEN RETURN s; END IF;
    IF s NOT IN ('pending', 'running') THEN EXIT; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RAISE EXCEPTION 'run % is %, not %', id, s, want;
END $$;
"""


def blocks(text):
    """[(kind, body)] in document order: ('sql'|'sh'|'ini'|'', text) or ('wait', (var, status))."""
    out = []
    pattern = re.compile(r"^```(\w*)\n(.*?)^```$|<!-- test: wait until run :'(\w+)' is (\w+) -->", re.S | re.M)
    for m in pattern.finditer(text):
        if m.group(3):
            out.append(("wait", (m.group(3), m.group(4))))
        else:
            out.append((m.group(1), m.group(2)))
    return out


def setup_packages():
    text = open(SETUP).read()
    m = re.search(r"packages=\((.*?)\)", text, re.S)
    return set(m.group(1).split())


class Psql:
    """One psql session, fed block by block; the output of each block is read up to a marker."""

    def __init__(self, env):
        self.p = subprocess.Popen([os.path.join(BINDIR, "psql"), "-X", "-d", "app", "-U", "postgres",
                                   "-v", "ON_ERROR_STOP=1"], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0)

    def run(self, sql, timeout=60):
        self.p.stdin.write((sql.rstrip("\n") + "\n\\echo " + MARK + "\n").encode())
        buf, deadline = b"", time.time() + timeout
        while MARK.encode() not in buf:
            left = deadline - time.time()
            r, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            chunk = os.read(self.p.stdout.fileno(), 65536) if r else b""
            if not chunk:
                raise AssertionError("psql %s while running:\n%s\n--- output:\n%s" % (
                    "timed out" if not r else "exited (%s)" % self.p.wait(), sql, buf.decode()))
            buf += chunk
        return buf.decode().replace(MARK + "\n", "")

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def main():
    items = blocks(open(GUIDE).read())
    kinds = [k for k, _ in items]
    assert kinds.count("sql") >= 5 and "wait" in kinds and "ini" in kinds, kinds
    env = dict(os.environ, PGHOST="/tmp", PGPORT=str(PORT), PATH=BINDIR + ":" + os.environ["PATH"])
    packages = setup_packages()

    # The server, configured as the guide says.
    subprocess.run([os.path.join(BINDIR, "initdb"), "-D", DATADIR, "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-U", "postgres"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(DATADIR, "postgresql.conf"), "a") as conf:
        conf.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '/tmp'\n" % PORT)
        for kind, body in items:
            if kind == "ini":
                conf.write(body)
    pg_ctl = [os.path.join(BINDIR, "pg_ctl"), "-D", DATADIR, "-l", os.path.join(DATADIR, "server.log"), "-w"]
    subprocess.run(pg_ctl + ["start"], check=True, stdout=subprocess.DEVNULL)
    workers, psql = [], None
    try:
        psql = None
        for kind, body in items:
            if kind == "sh":
                for line in body.strip().splitlines():
                    words = shlex.split(line)
                    if words[:2] == ["apt-get", "install"]:
                        missing = set(words[2:]) - packages
                        assert not missing, "the guide installs %s, which test/setup.sh does not" % missing
                        print("checked: %s" % line)
                    elif line in ("make", "make install"):
                        assert re.search(r"^make -s .*\n.*make -s .* install$", open(SETUP).read(), re.M), \
                            "test/setup.sh no longer runs make and make install"
                        print("checked: %s (test/setup.sh runs it)" % line)
                    elif words[-2:] == ["createdb", "app"]:
                        subprocess.run([os.path.join(BINDIR, "createdb"), "app"], env=env, check=True)
                        print("ran:     createdb app")
                    elif re.fullmatch(r"pg_ctlcluster 15 main restart", line):
                        subprocess.run(pg_ctl + ["restart"], check=True, stdout=subprocess.DEVNULL)
                        print("ran:     pg_ctl restart (for %s)" % line)
                        psql = Psql(env)
                        psql.run(WAIT_FUNCTION.replace("CREATE FUNCTION", "SET client_min_messages = warning;\nCREATE FUNCTION"))
                    elif "docs/examples/" in line:
                        print("started: %s" % line, flush=True)
                        workers.append(subprocess.Popen(["/usr/bin/env"] + words, cwd=ROOT, env=env,
                                                        start_new_session=True))
                    else:
                        raise AssertionError("the guide has a command this test neither runs nor checks: %r" % line)
            elif kind == "sql":
                assert psql is not None, "SQL before the server is set up"
                print("-- sql:\n%s" % body.rstrip())
                print(psql.run(body), flush=True)
            elif kind == "wait":
                var, status = body
                out = psql.run("SELECT guide_test.wait_run(:'%s', '%s');" % (var, status))
                print("waited: run :%s is %s" % (var, status))
                assert status in out, out
        assert workers, "the guide starts no example worker"
        for w in workers:
            assert w.poll() is None, "the example worker exited early (%s)" % w.returncode
        psql.close()
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                w.wait(10)
        subprocess.run(pg_ctl[:3] + ["-m", "fast", "stop"], stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", DATADIR])
    print("getting-started.md: every block ran")


if __name__ == "__main__":
    main()
    sys.exit(0)
