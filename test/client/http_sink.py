"""A small HTTP server for the tests: records every request and answers by
path (Python standard library only).

    /echo[...]           200, JSON echo of the request (method, path, headers, body)
    /flaky/<key>/<n>     503 for the first n requests of <key>, then 200 echo
    /limited/<key>/<n>   429 with "Retry-After: 1" for the first n, then 200 echo
    /status/<code>       that status, JSON body {"status": code}
    /slow/<ms>           200 echo after <ms> milliseconds
    /text                200 text/plain "hello"
    /nul                 200 JSON that jsonb refuses ("\u0000")
    /fail-webhook/<n>    500 for the first n requests with the same webhook-id, then 204

Also a refusing endpoint: refusing_port() returns a port nobody listens on.

    sink = Sink(port); sink.start(); ...; sink.requests(); sink.stop()
    Sink(port, host="::1")   (listens on IPv6 loopback instead of 127.0.0.1)
    python3 http_sink.py PORT        (serve until killed; for bench/http.sh)
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink:
    def __init__(self, port, record=True, host="127.0.0.1"):
        self.port = port
        self.record = record
        self.lock = threading.Lock()
        self.log = []
        self.counts = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"     # keep-alive: curl reuses connections
            disable_nagle_algorithm = True     # headers and body go in separate writes

            def log_message(self, *args):
                pass

            def _reply(self, code, body=b"", ctype="application/json", extra=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                entry = {"method": self.command, "path": self.path,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body.decode("utf-8", "replace"), "at": time.time()}
                if sink.record:
                    with sink.lock:
                        sink.log.append(entry)
                parts = self.path.split("?")[0].strip("/").split("/")
                echo = json.dumps({"method": entry["method"], "path": entry["path"],
                                   "headers": entry["headers"],
                                   "body": _maybe_json(entry["body"])}).encode()
                head = parts[0]
                if head in ("flaky", "limited", "fail-webhook"):
                    key = parts[1] if head != "fail-webhook" else entry["headers"].get("webhook-id", "")
                    limit = int(parts[2] if head != "fail-webhook" else parts[1])
                    with sink.lock:
                        seen = sink.counts.get((head, key), 0)
                        sink.counts[(head, key)] = seen + 1
                    if seen < limit:
                        if head == "flaky":
                            return self._reply(503, b'{"error": "try later"}')
                        if head == "limited":
                            return self._reply(429, b'{"error": "slow down"}', extra={"Retry-After": "1"})
                        return self._reply(500, b'{"error": "not yet"}')
                    if head == "fail-webhook":
                        return self._reply(204)
                    return self._reply(200, echo)
                if head == "status":
                    code = int(parts[1])
                    return self._reply(code, json.dumps({"status": code}).encode())
                if head == "slow":
                    time.sleep(int(parts[1]) / 1000.0)
                    return self._reply(200, echo)
                if head == "text":
                    return self._reply(200, b"hello", "text/plain")
                if head == "nul":
                    return self._reply(200, b'{"a": "\\u0000"}')
                if head == "fast":
                    return self._reply(200, b'{"ok": true}')
                return self._reply(200, echo)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                # clients that go away (a server restarted mid-request) are expected
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        if ":" in host:
            Server.address_family = socket.AF_INET6
        self.server = Server((host, port), Handler)
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self, prefix=""):
        with self.lock:
            return [r for r in self.log if r["path"].startswith(prefix)]


def _maybe_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def refusing_port():
    """A port on 127.0.0.1 with no listener (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    Sink(int(sys.argv[1]), record=False).start().thread.join()
