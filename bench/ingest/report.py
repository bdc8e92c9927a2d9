#!/usr/bin/env python3
"""The parts of bench/ingest/run.sh written in Python.

  report.py cpu PID       CPU seconds used so far by PID and its children
                          (running ones and those it has reaped): for the
                          postmaster, all of PostgreSQL
  report.py hwm PID       peak resident set (VmHWM) of PID in kB
  report.py summary DIR   the figures of one run from what run.sh saved in DIR
  report.py sweep DIR     the table of a --sweep

DIR holds loadgen and dbdrive JSON outputs (http.json, db.json, e2e.json,
e2e-steady.json, sweepN*.json) and facts.txt ("key=value" lines).
"""
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    with open("/proc/%s/stat" % pid) as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid):
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    own = stat_fields(pid)
    total = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == str(pid):
            continue
        try:
            f = stat_fields(entry)
        except (OSError, ValueError):
            continue   # gone meanwhile
        if f[1] == str(pid):
            total += sum(int(f[i]) for i in (11, 12, 13, 14))
    return total / TICK


def vm_hwm_kb(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def load(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def facts(d):
    out = {}
    path = os.path.join(d, "facts.txt")
    if os.path.exists(path):
        for line in open(path):
            k, _, v = line.rstrip("\n").partition("=")
            out[k] = v
    return out


def non_2xx(lg):
    """Requests due in the window that did not get a 2xx: other answers, no
    answer, or never sent (the generator gave up waiting, see --drain)."""
    r = lg["requests"]
    return r["sent"] - r["ok_2xx"] + r.get("not_sent", 0)


def status_text(lg):
    r = lg["requests"]
    parts = []
    if r["unanswered"]:
        parts.append("%d unanswered" % r["unanswered"])
    if r.get("not_sent"):
        parts.append("%d never sent" % r["not_sent"])
    for k, v in sorted(lg["status"].items()):
        if k == "no_answer":
            parts.append("no answer: " + ", ".join("%s %d" % kv for kv in sorted(v.items())))
        elif not k.startswith("2"):
            parts.append("%s x%d" % (k, v))
    return "; ".join(parts)


def fnum(x, digits=0):
    return ("%%.%df" % digits) % x


def ratio(a, b):
    return a / b if b else float("nan")


def e2e_figures(d, f, tag):
    """Committed events/s and the rest of one end-to-end run (None if absent)."""
    lg = load(d, tag + ".json")
    steady = load(d, tag + "-steady.json")
    if lg is None:
        return None
    el = lg["elapsed_s"]
    ev = int(f.get(tag + "_events", 0))
    msg = int(f.get(tag + "_messages", -1))
    return {
        "lg": lg,
        "steady": steady,
        "events_per_s": ev / el if el else 0.0,
        "messages_per_s": msg / el if el and msg >= 0 else None,
        "events": ev,
        "rss_mb": int(f.get(tag + "_rss_kb", -1)) / 1024.0,
        "steady_rss_mb": int(f.get(tag + "_steady_rss_kb", -1)) / 1024.0,
        "cpu_parleyd": float(f.get(tag + "_cpu_parleyd", 0)) / el if el else 0.0,
        "cpu_pg": float(f.get(tag + "_cpu_pg", 0)) / el if el else 0.0,
        "steady_cpu_parleyd": float(f.get(tag + "_steady_cpu_parleyd", 0)) /
        steady["generator"]["wall_s"] if steady else 0.0,
        "steady_cpu_pg": float(f.get(tag + "_steady_cpu_pg", 0)) /
        steady["generator"]["wall_s"] if steady else 0.0,
    }


def summary(d):
    f = facts(d)
    http = load(d, "http.json")
    db = load(d, "db.json")
    e = e2e_figures(d, f, "e2e")
    db_ev = int(f.get("db_events", 0))
    db_msg = int(f.get("db_messages", -1))
    db_rate = db_ev / db["elapsed_s"] if db["elapsed_s"] else 0.0
    lg, st = e["lg"], e["steady"]

    print()
    print("1) HTTP ceiling: loadgen -> bench/http/bare_responder, %d connections" % http["connections"])
    print("   %s requests/s answered, p50 %.2f ms, p99 %.2f ms, non-2xx %d; "
          "loadgen used %.2f cores" % (fnum(http["achieved_rps"]), http["latency_ms"]["p50"],
                                       http["latency_ms"]["p99"], non_2xx(http),
                                       http["generator"]["cpu_share"]))
    print("2) DB ceiling: dbdrive, %s, %d connections x depth %d, batches of %d"
          % (db["sql"], db["connections"], db["depth"], db["batch"]))
    print("   %s events/s committed (inbound_event rows counted%s), batch p50 %.1f ms, p99 %.1f ms, "
          "failed batches %d" % (fnum(db_rate),
                                 "; %s messages/s" % fnum(db_msg / db["elapsed_s"]) if db_msg >= 0 else "",
                                 db["batch_latency_ms"]["p50"], db["batch_latency_ms"]["p99"],
                                 db["batches"]["failed"]))
    print("   PostgreSQL used %.2f cores, dbdrive %.2f" % (float(f.get("db_cpu_pg", 0)) / db["elapsed_s"],
                                                          db["client"]["cpu_share"]))
    print("3) parleyd end to end, unlimited, %d connections" % lg["connections"])
    print("   %s events/s committed (inbound_event rows counted%s)" % (
        fnum(e["events_per_s"]),
        "; %s messages/s" % fnum(e["messages_per_s"]) if e["messages_per_s"] is not None else ""))
    print("   %s requests/s answered 2xx, ack p50 %.1f ms, p99 %.1f ms, max %.1f ms, non-2xx %d%s"
          % (fnum(lg["achieved_2xx_rps"]), lg["latency_ms"]["p50"], lg["latency_ms"]["p99"],
             lg["latency_ms"]["max"], non_2xx(lg),
             " (" + status_text(lg) + ")" if non_2xx(lg) else ""))
    print("   parleyd peak RSS (VmHWM) %.1f MB" % e["rss_mb"])
    if st:
        print("4) parleyd at a steady %s events/s for %.0f s (latency from the scheduled send time)"
              % (fnum(st["rate_target"]), st["duration_s"]))
        print("   ack p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; achieved %s/s, non-2xx %d%s, "
              "queued in loadgen at most %d" % (st["latency_ms"]["p50"], st["latency_ms"]["p90"],
                                               st["latency_ms"]["p99"], st["latency_ms"]["max"],
                                               fnum(st["achieved_rps"]), non_2xx(st),
                                               " (" + status_text(st) + ")" if non_2xx(st) else "",
                                               st["backlog_max"]))
        print("   parleyd peak RSS (VmHWM) after it %.1f MB" % e["steady_rss_mb"])
    print("5) ratios (same run, same machine)")
    print("   end to end / DB ceiling (committed events/s)      %6.3f" % ratio(e["events_per_s"], db_rate))
    print("   end to end / HTTP ceiling (2xx answers/s)         %6.3f"
          % ratio(lg["achieved_2xx_rps"], http["achieved_rps"]))
    print()
    print("where the CPU went (cores, over each measurement; the machine has %d)" % os.cpu_count())
    print("   %-28s %8s %8s %10s" % ("", "loadgen", "parleyd", "postgres"))
    print("   %-28s %8.2f %8s %10s" % ("HTTP ceiling", http["generator"]["cpu_share"], "-", "-"))
    print("   %-28s %8s %8s %10.2f  (dbdrive %.2f)" % ("DB ceiling", "-", "-",
                                                     float(f.get("db_cpu_pg", 0)) / db["elapsed_s"],
                                                     db["client"]["cpu_share"]))
    print("   %-28s %8.2f %8.2f %10.2f" % ("end to end, unlimited", lg["generator"]["cpu_share"],
                                           e["cpu_parleyd"], e["cpu_pg"]))
    if st:
        print("   %-28s %8.2f %8.2f %10.2f" % ("end to end, steady", st["generator"]["cpu_share"],
                                               e["steady_cpu_parleyd"], e["steady_cpu_pg"]))
    print()
    print("mix of the unlimited run: %(created)d new messages (%(public)d public, %(private)d private), "
          "%(edits)d edits, %(replays)d replays" % lg["mix"])
    print("daemon: batcher %s; ingest %s; pool_size %s" % (f.get("batcher", "?"), f.get("ingest_settings", "?"),
                                                          f.get("pool_size", "?")))
    print("postgres: %s" % f.get("postgres", "?"))
    print("build: %s" % f.get("build", "?"))
    problems = []
    for name, j in (("HTTP ceiling", http), ("end to end", lg), ("steady", st)):
        if j and (j["drain_timed_out"] or j["requests"]["unanswered"]):
            problems.append("%s: %d requests unanswered, %d never sent, when the generator "
                            "stopped waiting" % (name, j["requests"]["unanswered"],
                                                 j["requests"].get("not_sent", 0)))
    if db["batches"]["failed"]:
        problems.append("DB ceiling: %d batches failed" % db["batches"]["failed"])
    if db["drain_timed_out"]:
        problems.append("DB ceiling: batches still in flight when dbdrive gave up")
    if problems:
        print("NOT CLEAN: " + "; ".join(problems))


def sweep(d):
    f = facts(d)
    print()
    first = load(d, "sweep1.json")
    print("sweep: each setting on a fresh database, %s loadgen connections"
          % (first["connections"] if first else "?"))
    print("%-14s %10s %8s %8s %8s | %8s %8s %8s %8s" % (
        "N:T:K", "events/s", "p50 ms", "p99 ms", "non-2xx", "steady", "p50 ms", "p99 ms", "RSS MB"))
    i = 1
    while ("sweep%d_setting" % i) in f:
        tag = "sweep%d" % i
        e = e2e_figures(d, f, tag)
        if e is None:
            break
        lg, st = e["lg"], e["steady"]
        print("%-14s %10.0f %8.1f %8.1f %8d | %8.0f %8.1f %8.1f %8.1f" % (
            f[tag + "_setting"], e["events_per_s"], lg["latency_ms"]["p50"], lg["latency_ms"]["p99"],
            non_2xx(lg), st["achieved_rps"] if st else 0, st["latency_ms"]["p50"] if st else 0,
            st["latency_ms"]["p99"] if st else 0, e["steady_rss_mb"]))
        i += 1
    print("N = batch_max_events, T = batch_max_delay_ms, K = max_inflight_batches; "
          "events/s = inbound_event rows committed per second, unlimited")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("cpu", "hwm", "summary", "sweep"):
        sys.stderr.write(__doc__)
        sys.exit(2)
    cmd, arg = sys.argv[1], sys.argv[2]
    if cmd == "cpu":
        print("%.2f" % cpu_seconds(arg))
    elif cmd == "hwm":
        print(vm_hwm_kb(arg))
    elif cmd == "summary":
        summary(arg)
    else:
        sweep(arg)


if __name__ == "__main__":
    main()
