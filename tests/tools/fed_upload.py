#!/usr/bin/python3
"""fed_upload.py — crafts and posts device updates to a coordinator, for the tests and the
ingest benchmark (tests/integration/fed_coord.sh, tests/bench/fed_ingest.sh).

  fed_upload.py URL TOKEN ROUND --base V --floats N [--value X | --nan | --random SEED]
                [--samples S] [--key K] [--body-floats M] [--round-in-body R] [--garbage]
                [--save FILE] [--replay FILE]
--save keeps the bytes posted; --replay posts a saved file's bytes as they are.
prints "<http status> <json body>" on one line.
"""
import argparse
import json
import struct
import sys
import http.client
import urllib.parse

import msgpack


def body(args):
    if args.garbage:
        return b"\x93\x01\x02"  # a msgpack array, not the map an update is
    n = args.body_floats if args.body_floats is not None else args.floats
    if args.nan:
        vals = [0.0] * n
        if n:
            vals[n // 2] = float("nan")
        delta = struct.pack("<%df" % n, *vals)
    elif args.random is not None:
        import random
        r = random.Random(args.random)
        delta = struct.pack("<%df" % n, *[r.uniform(-args.value, args.value) for _ in range(n)])
    else:
        delta = struct.pack("<f", args.value) * n
    msg = {"v": 1, "round": args.round_in_body if args.round_in_body is not None else args.round,
           "base_version": args.base, "key": args.key or "k-%s-%d" % (args.token.split(".")[0], args.round),
           "samples": args.samples, "loss": 0.5, "accuracy": 0.8, "delta": delta}
    return msgpack.packb(msg, use_bin_type=True)


def post(url, token, data):
    """POSTs data; a server that answers before reading the whole body (413 on the
    Content-Length) is heard out rather than reported as a broken pipe."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", u.path)
    conn.putheader("Content-Type", "application/msgpack")
    conn.putheader("Authorization", "Bearer " + token)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    try:
        conn.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = conn.getresponse()
    return r.status, r.read().decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("round", type=int)
    p.add_argument("--base", type=int, required=True)
    p.add_argument("--floats", type=int, required=True)
    p.add_argument("--value", type=float, default=0.01)
    p.add_argument("--nan", action="store_true")
    p.add_argument("--random", type=int)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--key")
    p.add_argument("--body-floats", type=int)
    p.add_argument("--round-in-body", type=int)
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--save")
    p.add_argument("--replay")
    a = p.parse_args()
    if a.replay:
        with open(a.replay, "rb") as f:
            data = f.read()
    else:
        data = body(a)
    if a.save:
        with open(a.save, "wb") as f:
            f.write(data)
    code, text = post("%s/v1/rounds/%d/updates" % (a.url, a.round), a.token, data)
    print(code, text.strip().replace("\n", " "))


if __name__ == "__main__":
    main()
