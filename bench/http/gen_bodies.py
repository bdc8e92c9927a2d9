#!/usr/bin/env python3
"""Pre-sign webhook bodies for wrk, which cannot compute an HMAC itself.

Writes COUNT bodies, each with a unique message id, spread over THREADS files
DIR/bodies-<thread>.txt (one per wrk thread, so no two threads send the same
id). Each line is "<X-Parley-Signature value>\\t<JSON body>". The secret is
read from the file named by --secret-file, never from the command line.

Usage: gen_bodies.py --secret-file F --count N --threads T --prefix P --out-dir DIR
"""
import argparse
import hashlib
import hmac
import json
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prefix", required=True, help="id prefix, e.g. the run's start time")
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\n")
    files = [open(os.path.join(args.out_dir, "bodies-%d.txt" % t), "w")
             for t in range(args.threads)]
    try:
        for n in range(args.count):
            body = json.dumps({
                "id": "%s-%d" % (args.prefix, n),
                "author": {"id": "visitor-%d" % (n % 1000), "name": "Bench Visitor"},
                "text": "Benchmark message %d: my order has not arrived yet" % n,
                "visibility": "private",
            }, separators=(",", ":"))
            sig = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
            files[n % args.threads].write("sha256=%s\t%s\n" % (sig, body))
    finally:
        for f in files:
            f.close()


if __name__ == "__main__":
    main()
