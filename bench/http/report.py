#!/usr/bin/env python3
"""Print bench/http's table from the raw outputs of one run.

Usage: report.py DIR   where DIR holds what run.sh saved:
  bare.txt, healthz.txt, webhook.txt   wrk --latency output
  pgbench.txt, pgbench_log*            pgbench output and per-transaction log
  facts.txt                            "key=value" lines (rows stored, flags...)
"""
import glob
import os
import re
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_figures(path):
    """(requests/s, p99 in ms, failed requests) from wrk --latency output."""
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    bad = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        bad += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        bad += sum(int(x) for x in m.groups())
    total = int(re.search(r"(\d+) requests in", text).group(1))
    return rps, p99, bad, total


def pgbench_figures(path, log_glob):
    """(transactions/s, p99 in ms, failed) from pgbench output and its -l log."""
    text = open(path).read()
    tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
    m = re.search(r"number of failed transactions: (\d+)", text)
    failed = int(m.group(1)) if m else 0
    lat = []
    for name in glob.glob(log_glob):
        with open(name) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():  # "client tx latency_us ..."
                    lat.append(int(parts[2]))
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0 if lat else float("nan")
    return tps, p99, failed, len(lat)


def facts(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.strip().partition("=")
            out[k] = v
    return out


def main():
    d = sys.argv[1]
    f = facts(os.path.join(d, "facts.txt"))
    rows = [
        ("bare HTTP (evhttp) GET /", wrk_figures(os.path.join(d, "bare.txt"))),
        ("parleyd GET /healthz", wrk_figures(os.path.join(d, "healthz.txt"))),
        ("parleyd signed webhook POST", wrk_figures(os.path.join(d, "webhook.txt"))),
        ("PostgreSQL 1-row INSERT (pgbench)",
         pgbench_figures(os.path.join(d, "pgbench.txt"), os.path.join(d, "pgbench_log*"))),
    ]
    print()
    print("%-36s %12s %10s %10s" % ("measure", "per second", "p99 ms", "failed"))
    for name, (rate, p99, bad, _) in rows:
        print("%-36s %12.0f %10.2f %10d" % (name, rate, p99, bad))
    bare, healthz, webhook, pg = (r[1][0] for r in rows)
    print()
    print("ratios (same run, same machine):")
    print("  parleyd healthz / bare HTTP          %6.3f" % (healthz / bare))
    print("  parleyd webhook / bare HTTP          %6.3f" % (webhook / bare))
    print("  parleyd webhook / bare PG INSERT     %6.3f" % (webhook / pg))
    print()
    wh_total, wh_bad = rows[2][1][3], rows[2][1][2]
    print("webhook requests %d, failed %d, rows committed %s, replayed ids %s"
          % (wh_total, wh_bad, f.get("rows", "?"), f.get("replays", "?")))
    for key in ("config", "build_cflags", "postgres"):
        if key in f:
            print("%s: %s" % (key, f[key]))


if __name__ == "__main__":
    main()
