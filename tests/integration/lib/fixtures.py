#!/usr/bin/env python3
"""fixtures.py — test inputs for the integration scripts, with the standard library only.

    fixtures.py png OUT W H C PATTERN [SEED]   one 8-bit PNG (C 1 grey or 3 RGB)
    fixtures.py imgset DIR N                   DIR/<class>/*.png: N 12x12 grey per class of
                                               hstripes/vstripes/checker, plus 2 RGB 20x16 each
    fixtures.py idx PREFIX N ROWS COLS NLABELS CLASSES [gz]
                                               PREFIX-images-idx3-ubyte and -labels-idx1-ubyte
    fixtures.py csv OUT ROWS SEED              x,label,y: three separable 2-D clusters
    fixtures.py json FILE EXPR                 evaluates EXPR with `lines` (every line of FILE
                                               parsed as JSON) and `last`; prints it as JSON
    fixtures.py jsonlines FILE                 exits 1 naming the first line that is not JSON
    fixtures.py pngpixels FILE                 the pixels of an 8-bit grey or RGB PNG (not
                                               interlaced) as hex, after "W H C "

Patterns are what a tiny network can tell apart: horizontal stripes, vertical stripes and a
checkerboard, each with a random phase and noise, so no two images are the same.
"""
import gzip
import json
import math
import random
import struct
import sys
import zlib

CLASSES = ("checker", "hstripes", "vstripes")


def write_png(path, w, h, c, pixels):
    """pixels: bytes of h rows of w*c values."""
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data +
                struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + pixels[y * w * c:(y + 1) * w * c] for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pattern(kind, w, h, c, rng):
    """A w x h image of the class pattern with 2-pixel bands (in 12x12 units), as bytes."""
    phase = rng.randrange(2)
    out = bytearray()
    for y in range(h):
        for x in range(w):
            # band index in a 12-pixel-wide frame so resized images keep the same pattern
            by, bx = (y * 12 // h) // 2, (x * 12 // w) // 2
            if kind == "hstripes":
                on = (by + phase) % 2
            elif kind == "vstripes":
                on = (bx + phase) % 2
            else:
                on = (bx + by + phase) % 2
            v = (200 if on else 40) + rng.randint(-30, 30)
            v = max(0, min(255, v))
            if c == 1:
                out.append(v)
            else:  # tinted RGB whose luminance is still the pattern
                out += bytes((max(0, min(255, v + 20)), v, max(0, min(255, v - 20))))
    return bytes(out)


def cmd_png(out, w, h, c, kind, seed="1"):
    w, h, c = int(w), int(h), int(c)
    write_png(out, w, h, c, pattern(kind, w, h, c, random.Random(int(seed))))


def cmd_imgset(root, n):
    import os
    rng = random.Random(42)
    for k in CLASSES:
        os.makedirs(os.path.join(root, k), exist_ok=True)
        for i in range(int(n)):
            write_png(os.path.join(root, k, "%03d.png" % i), 12, 12, 1,
                      pattern(k, 12, 12, 1, rng))
        for i in range(2):
            write_png(os.path.join(root, k, "rgb%d.png" % i), 20, 16, 3,
                      pattern(k, 20, 16, 3, rng))


def cmd_idx(prefix, n, rows, cols, nlabels, classes, gz=None):
    n, rows, cols, nlabels, classes = map(int, (n, rows, cols, nlabels, classes))
    rng = random.Random(7)
    opener = gzip.open if gz else open
    sfx = ".gz" if gz else ""
    with opener(prefix + "-images-idx3-ubyte" + sfx, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, rows, cols))
        f.write(bytes(rng.randrange(256) for _ in range(n * rows * cols)))
    with opener(prefix + "-labels-idx1-ubyte" + sfx, "wb") as f:
        f.write(struct.pack(">II", 0x801, nlabels))
        f.write(bytes(i % classes for i in range(nlabels)))


def read_png(path):
    """(w, h, c, pixels) of an 8-bit grey (c 1) or RGB (c 3) non-interlaced PNG: an independent
    decoder (zlib and the five PNG filters), so that the tests do not check libpng with itself."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("%s: not a PNG" % path)
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (0, 2) or interlace:
        raise ValueError("%s: not an 8-bit grey/RGB non-interlaced PNG" % path)
    c = 1 if ctype == 0 else 3
    raw, stride = zlib.decompress(idat), w * c
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - c] if x >= c else 0
            b = prev[x]
            cc = prev[x - c] if x >= c else 0
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                line[x] = (line[x] + pr) & 255
        out += line
        prev = line
    return w, h, c, bytes(out)


def cmd_pngpixels(path):
    w, h, c, px = read_png(path)
    print(w, h, c, px.hex())


def cmd_csv(out, rows, seed):
    rng = random.Random(int(seed))
    centres = {"east": (3.0, 0.0), "north": (0.0, 3.0), "south-west": (-2.5, -2.5)}
    names = sorted(centres)
    with open(out, "w") as f:
        f.write("x,label,y\n")
        for i in range(int(rows)):
            lab = names[i % 3]
            cx, cy = centres[lab]
            f.write("%.4f,%s,%.4f\n" % (cx + rng.gauss(0, 0.6), lab, cy + rng.gauss(0, 0.6)))


def strict(s):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def bad(tok):
        raise ValueError("%s is not JSON" % tok)
    return json.loads(s, parse_constant=bad)


def parse_lines(path):
    with open(path) as f:
        return [strict(l) for l in f if l.strip()]


def cmd_json(path, expr):
    lines = parse_lines(path)
    last = lines[-1] if lines else None
    print(json.dumps(eval(expr, {"math": math, "lines": lines, "last": last})))


def cmd_jsonlines(path):
    with open(path) as f:
        for i, l in enumerate(f, 1):
            try:
                strict(l)
            except ValueError as ex:
                print("%s:%d: not JSON (%s): %.120r" % (path, i, ex, l))
                sys.exit(1)


if __name__ == "__main__":
    cmd = sys.argv[1]
    globals()["cmd_" + cmd](*sys.argv[2:])
