#!/usr/bin/python3
"""fed_ingest.py — the ingest half of tests/bench/fed_ingest.sh: C concurrent uploaders post
one mlp-sized update for each of the devices in a token file to round R, over keep-alive
connections, and report what the coordinator answered, the accepted updates per second, and
the coordinator's resident memory (VmRSS of PID) after each mark's updates were answered:
uploads pause there for 1.5 s, so no request is in flight and the coordinator's once-a-second
malloc_trim has run; the pauses are not counted in the rate.

  fed_ingest.py URL TOKENS_FILE ROUND BASE_VERSION FLOATS PID [--concurrency C] [--marks 50,500]
Prints one JSON line: {"accepted":..,"refused":{code: n},"seconds":..,"per_sec":..,
"rss_mb_at":{"50":..,"500":..},"hwm_mb":..}.
"""
import argparse
import http.client
import json
import os
import random
import struct
import threading
import time
import urllib.parse

import msgpack


def rss_mb(pid, key="VmRSS"):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("tokens")
    p.add_argument("round", type=int)
    p.add_argument("base", type=int)
    p.add_argument("floats", type=int)
    p.add_argument("pid", type=int)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--marks", default="50,500")
    a = p.parse_args()
    tokens = [line.split()[-1] for line in open(a.tokens) if line.strip()]
    marks = sorted(int(x) for x in a.marks.split(","))
    rng = random.Random(1)
    # One small-valued delta shared by all (its norm stays under the federation's bound).
    delta = struct.pack("<%df" % a.floats, *[rng.uniform(-1e-3, 1e-3) for _ in range(a.floats)])
    u = urllib.parse.urlsplit(a.url)
    path = "/v1/rounds/%d/updates" % a.round
    lock = threading.Lock()
    state = {"next": 0, "end": 0, "accepted": 0, "refused": {}, "rss": {}}
    conns = [None] * a.concurrency

    def worker(w):
        conn = conns[w]
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= state["end"]:
                conns[w] = conn
                break
            tok = tokens[i]
            body = msgpack.packb({"v": 1, "round": a.round, "base_version": a.base,
                                  "key": "ingest-%s" % tok.split(".")[0], "samples": 600,
                                  "loss": 0.5, "accuracy": 0.8, "delta": delta}, use_bin_type=True)
            for attempt in range(3):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                    conn.request("POST", path, body, {"Authorization": "Bearer " + tok,
                                                      "Content-Type": "application/msgpack"})
                    r = conn.getresponse()
                    r.read()
                    code = r.status
                    break
                except (OSError, http.client.HTTPException):
                    conn = None
                    code = 0
            with lock:
                if code == 200:
                    state["accepted"] += 1
                else:
                    state["refused"][str(code)] = state["refused"].get(str(code), 0) + 1

    # Upload in segments ending at each mark; the coordinator's RSS is read between segments,
    # when no upload is in flight, so that it shows what the round keeps, not request buffers.
    dt = 0.0
    for m in marks + [len(tokens)]:
        state["end"] = min(m, len(tokens))
        if state["next"] >= state["end"]:
            continue
        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt += time.time() - t0
        state["next"] = state["end"]
        time.sleep(1.5)
        state["rss"][str(state["end"])] = rss_mb(a.pid)
    print(json.dumps({"accepted": state["accepted"], "refused": state["refused"],
                      "seconds": round(dt, 3), "per_sec": round(state["accepted"] / dt, 1),
                      "rss_mb_at": state["rss"], "hwm_mb": rss_mb(a.pid, "VmHWM")}))


if __name__ == "__main__":
    main()
