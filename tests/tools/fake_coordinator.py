#!/usr/bin/env python3
"""fake_coordinator.py — a stand-in for updraft-coordinator's device endpoints, for developing
and testing updraft-agent's HTTP error paths (tests/integration/agent_daemon.sh). Standard
library only. NOT the coordinator: it knows nothing of rounds beyond what its config says.

    fake_coordinator.py DIR

DIR/config.json is re-read on every request, so a test can change the behaviour while the server
runs:
    token         the bearer token it accepts (others: 401)
    task          the task JSON to hand out (null: 204)
    model_file    the file served at task.model.url (ETag: the quoted sha256 of it)
    throttle      bytes per second for model downloads (0: as fast as possible)
    corrupt       how many downloads (counted from start) get one byte flipped
    cut_after     the first `cuts` downloads close the connection after this many bytes
    cuts
    no_range      ignore Range headers (always 200)
    upload_script statuses for the successive POSTs (then 200 accepted); 200 entries answer
                  {"status":"accepted"}; others {"error":...,"reason":upload_reasons[i]}
    upload_reasons
    upload_delay  seconds to wait before answering a POST (after logging it)
Writes DIR/port (the port it listens on, 127.0.0.1), DIR/requests.jsonl (one line per request:
method, path, range, if_range, idempotency_key, auth, status, bytes) and DIR/uploads/N.bin (the
body of the N-th POST, from 1). A second POST with a key already accepted answers "duplicate".
"""
import hashlib
import http.server
import json
import os
import sys
import threading
import time

DIR = sys.argv[1]
LOCK = threading.Lock()
COUNT = {"downloads": 0, "posts": 0}
ACCEPTED = set()


def config():
    with open(os.path.join(DIR, "config.json")) as f:
        return json.load(f)


def log(entry):
    with LOCK:
        with open(os.path.join(DIR, "requests.jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def entry(self, status, nbytes=0):
        return {"method": self.command, "path": self.path,
                "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range"),
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "content_type": self.headers.get("Content-Type"),
                "auth": self.headers.get("Authorization"), "status": status, "bytes": nbytes,
                "time": time.time()}

    def answer(self, status, body=b"", ctype="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def authorised(self, cfg):
        if self.headers.get("Authorization") != "Bearer " + cfg["token"]:
            log(self.entry(401))
            self.answer(401, b'{"error":"unauthorized","reason":"token"}')
            return False
        return True

    def do_GET(self):
        cfg = config()
        if not self.authorised(cfg):
            return
        task = cfg.get("task")
        if self.path.endswith("/task"):
            if task is None:
                log(self.entry(204))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps(task).encode()
            log(self.entry(200, len(body)))
            self.answer(200, body)
            return
        if task and self.path == task["model"]["url"]:
            self.download(cfg)
            return
        log(self.entry(404))
        self.answer(404, b'{"error":"not found","reason":"path"}')

    def download(self, cfg):
        with open(cfg["model_file"], "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        with LOCK:
            COUNT["downloads"] += 1
            n = COUNT["downloads"]
        if n <= cfg.get("corrupt", 0):
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
        start, status = 0, 200
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if rng and not cfg.get("no_range") and (if_range is None or if_range == '"%s"' % sha):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                log(self.entry(416))
                self.answer(416, b'{"error":"range","reason":"range"}')
                return
            status = 206
        body = data[start:]
        headers = {"ETag": '"%s"' % sha, "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        log(self.entry(status, len(body)))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        limit = len(body)
        if n <= cfg.get("cuts", 0):
            limit = min(limit, cfg.get("cut_after", 0))
        rate = cfg.get("throttle", 0)
        chunk = 8192
        sent = 0
        try:
            while sent < limit:
                piece = body[sent:min(limit, sent + chunk)]
                self.wfile.write(piece)
                self.wfile.flush()
                sent += len(piece)
                if rate:
                    time.sleep(len(piece) / rate)
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit < len(body):
            self.close_connection = True

    def do_POST(self):
        cfg = config()
        if not self.authorised(cfg):
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with LOCK:
            COUNT["posts"] += 1
            n = COUNT["posts"]
        os.makedirs(os.path.join(DIR, "uploads"), exist_ok=True)
        with open(os.path.join(DIR, "uploads", "%d.bin" % n), "wb") as f:
            f.write(body)
        script = cfg.get("upload_script", [])
        reasons = cfg.get("upload_reasons", [])
        status = script[n - 1] if n <= len(script) else 200
        key = self.headers.get("Idempotency-Key")
        e = self.entry(status, len(body))
        e["n"] = n
        log(e)
        time.sleep(cfg.get("upload_delay", 0))
        if status == 200:
            if key in ACCEPTED:
                self.answer(200, b'{"status":"duplicate"}')
            else:
                ACCEPTED.add(key)
                self.answer(200, b'{"status":"accepted"}')
            return
        reason = reasons[n - 1] if n <= len(reasons) else "busy"
        self.answer(status, json.dumps({"error": "refused", "reason": reason}).encode())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", 0), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
srv.serve_forever()
