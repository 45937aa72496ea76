#!/usr/bin/env python3
"""Summarises a bench/run.sh run: reads its JSON lines and machine facts, prints Markdown.

Usage: report.py RESULTS.jsonl MACHINE.json COMMAND
Each configuration (target, workload, clients) is reported as the median of its runs.
"""
import json
import statistics
import sys

# (workload, clients) rows of the main table, in order.
ROWS = [("put", 1), ("put", 16), ("put", 64), ("get", 1), ("get", 16), ("get", 64),
        ("cas", 16), ("watch-fanout", 1000), ("ceiling", 1), ("ceiling", 16), ("ceiling", 64)]
TARGETS = ["keel", "etcd", "redis-always", "redis-everysec", "nats", "hyper"]
# Peers keel's ratio is shown against (redis-everysec is for reference only).
RATIO_PEERS = ["etcd", "redis-always", "nats"]


def load(path):
    groups = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("workload") == "load":
                continue
            w, c = r["workload"], r["clients"]
            if w == "watch-fanout":
                c = r.get("watchers", c)  # a fan-out run is sized by its watchers
            elif r.get("watchers"):
                w = "%s+watchers" % w  # a closed loop with watchers attached
                c = (c, r["watchers"])
            groups.setdefault((r["target"], w, c), []).append(r)
    return {k: {
        "runs": len(v),
        "ops": statistics.median(r["ops_per_sec"] for r in v),
        "p50": statistics.median(r["p50_us"] for r in v),
        "p99": statistics.median(r["p99_us"] for r in v),
        "errors": sum(r["errors"] for r in v),
        "missed": sum(r.get("missed", 0) for r in v),
        "cpu": statistics.median(r["loadgen_cpu"] for r in v),
        "rss_kib": statistics.median(r["rss_per_watcher_kib"] for r in v)
        if all("rss_per_watcher_kib" in r for r in v) else None,
    } for k, v in groups.items()}


def fmt_ops(x):
    return "{:,.0f}".format(x)


def fmt_us(x):
    return "{:,.0f} µs".format(x) if x < 10_000 else "{:,.1f} ms".format(x / 1000)


def cell(m, t, w, c):
    s = m.get((t, w, c))
    if not s:
        return "—"
    extra = ""
    if s["errors"] or s["missed"]:
        extra = " ⚠ {} errors, {} missed".format(s["errors"], s["missed"])
    if w == "watch-fanout":
        return "p50 {} / p99 {}{}".format(fmt_us(s["p50"]), fmt_us(s["p99"]), extra)
    return "{} /s · p99 {}{}".format(fmt_ops(s["ops"]), fmt_us(s["p99"]), extra)


def ratio(a, b):
    return a / b if a and b else None


def main():
    results, machine_path, command = sys.argv[1], sys.argv[2], sys.argv[3]
    m = load(results)
    machine = json.load(open(machine_path))
    reps = min((s["runs"] for s in m.values()), default=0)
    out = []
    p = out.append
    p("# keel side by side — {}".format(machine["date"]))
    p("")
    p("Reproduce: `{}` (all targets on this one machine, loadgen included; every "
      "configuration run {} times, targets interleaved; figures are medians).".format(command, reps))
    p("")
    p("**Machine:** {} cores ({}), {:.0f} GiB memory, Linux {}. Disk `fdatasync` on the data "
      "filesystem, measured in this run: p50 {:.0f} µs / p99 {:.0f} µs on a preallocated file, "
      "p50 {:.0f} µs / p99 {:.0f} µs when appending.".format(
          machine["cores"], machine["cpu"], machine["mem_gib"], machine["kernel"],
          machine["fsync_prealloc_p50_us"], machine["fsync_prealloc_p99_us"],
          machine["fsync_append_p50_us"], machine["fsync_append_p99_us"]))
    p("")
    present = [t for t in TARGETS if any(k[0] == t for k in m)]
    p("| workload | clients | " + " | ".join(present) + " | " +
      " | ".join("keel ÷ " + t for t in RATIO_PEERS if t in present) + " |")
    p("|---|---|" + "---|" * len(present) + "---|" * len([t for t in RATIO_PEERS if t in present]))
    for w, c in ROWS:
        if not any((t, w, c) in m for t in present):
            continue
        row = [w, str(c)] + [cell(m, t, w, c) for t in present]
        for peer in RATIO_PEERS:
            if peer not in present:
                continue
            k, o = m.get(("keel", w, c)), m.get((peer, w, c))
            if w == "watch-fanout":
                r = ratio(o and o["p99"], k and k["p99"])  # latency: higher is better for keel
            else:
                r = ratio(k and k["ops"], o and o["ops"])
            row.append("{:.2f}×".format(r) if r else "—")
        p("| " + " | ".join(row) + " |")
    p("")
    p("Cells: median ops/s and median p99 latency (watch-fanout: `clients` is the number of "
      "watchers, and the cell the delivery latency from the write's acknowledgement to each "
      "watcher's receipt). Ratios are keel's throughput over "
      "the peer's (watch-fanout: the peer's p99 over keel's).")
    p("")

    # The targets, checked against this run.
    fsync_p50 = machine["fsync_prealloc_p50_us"]

    def ops(t, w, c):
        s = m.get((t, w, c))
        return s and s["ops"]

    def lat(t, w, c, q):
        s = m.get((t, w, c))
        return s and s[q]

    checks = [
        ("put, 64 clients ≥ 5× etcd", ratio(ops("keel", "put", 64), ops("etcd", "put", 64)), 5, "×"),
        ("put, 64 clients ≥ 1× Redis always", ratio(ops("keel", "put", 64), ops("redis-always", "put", 64)), 1, "×"),
        ("put, 64 clients ≥ 1.5× NATS KV", ratio(ops("keel", "put", 64), ops("nats", "put", 64)), 1.5, "×"),
        ("put, 64 clients ≥ 0.6× hyper ceiling", ratio(ops("keel", "put", 64), ops("hyper", "ceiling", 64)), 0.6, "×"),
        ("get, 64 clients ≥ 6× etcd", ratio(ops("keel", "get", 64), ops("etcd", "get", 64)), 6, "×"),
        ("get, 64 clients ≥ 1.5× NATS KV", ratio(ops("keel", "get", 64), ops("nats", "get", 64)), 1.5, "×"),
        ("get, 64 clients ≥ 0.8× hyper ceiling", ratio(ops("keel", "get", 64), ops("hyper", "ceiling", 64)), 0.8, "×"),
        ("cas, 16 clients on 10 keys ≥ 3× etcd txn", ratio(ops("keel", "cas", 16), ops("etcd", "cas", 16)), 3, "×"),
    ]
    p("## Targets")
    p("")
    p("| target | measured | met |")
    p("|---|---|---|")
    for name, r, goal, unit in checks:
        p("| {} | {} | {} |".format(name, "{:.2f}{}".format(r, unit) if r else "not measured",
                                     ("yes" if r >= goal else "**no**") if r else "—"))
    k1 = lat("keel", "put", 1, "p50")
    r1 = lat("redis-always", "put", 1, "p50")
    h1 = lat("hyper", "ceiling", 1, "p50")
    if k1:
        p("| put, 1 client, p50 ≤ fdatasync p50 + 100 µs ({:.0f} µs; a bare HTTP round trip here: {}) | {:.0f} µs | {} |".format(
            fsync_p50 + 100, "{:.0f} µs".format(h1) if h1 else "not measured", k1,
            "yes" if k1 <= fsync_p50 + 100 else "**no**"))
        if r1:
            p("| put, 1 client, p50 ≤ Redis always ({:.0f} µs) | {:.0f} µs | {} |".format(
                r1, k1, "yes" if k1 <= r1 else "**no**"))
    kw, ew = lat("keel", "watch-fanout", 1000, "p99"), lat("etcd", "watch-fanout", 1000, "p99")
    p("| watch fan-out, 1,000 watchers: p99 ≤ etcd's{} | {} | {} |".format(
        " ({})".format(fmt_us(ew)) if ew else "",
        fmt_us(kw) if kw else "not measured",
        ("yes" if kw <= ew else "**no**") if kw and ew else "—"))
    p("")
    watch_rows = []
    for n in (1000, 10000):
        f = m.get(("keel", "watch-fanout", n))
        base = m.get(("keel", "put", 1))
        att = m.get(("keel", "put+watchers", (1, n)))
        if not (f or att):
            continue
        loss = (1 - att["ops"] / base["ops"]) * 100 if att and base else None
        watch_rows.append("| {:,} | {} | {} | {} | {} | {} | {} | {} |".format(
            n,
            fmt_us(f["p50"]) if f else "—",
            fmt_us(f["p99"]) if f else "—",
            "{:,}".format(f["missed"]) if f else "—",
            "{:.1f} KiB".format(f["rss_kib"]) if f and f["rss_kib"] is not None else "—",
            fmt_ops(base["ops"]) if base else "—",
            fmt_ops(att["ops"]) if att else "—",
            "{:.0f} %".format(loss) if loss is not None else "—"))
    if watch_rows:
        p("## Watches (keel, SSE)")
        p("")
        p("One writer at 20 writes/s; watchers on its prefix, one SSE connection each. Fan-out "
          "latency runs from the write's acknowledgement at the writer to each watcher's receipt "
          "(a receipt before the acknowledgement counts 1 µs). RSS per watcher: the growth of a "
          "fresh server's resident memory per open, idle watcher (one HTTP/1.1 connection each). Put throughput: one closed-loop writer "
          "(put, 1 client) without and with the watchers attached to the prefix it writes. "
          "Late: deliveries not received 3 s after the last write, summed over the runs (a "
          "stream never skips a revision; these had not arrived yet when the run stopped "
          "reading).")
        p("")
        p("| watchers | fan-out p50 | fan-out p99 | late (all runs) | RSS per watcher | put/s alone | put/s with watchers | writer's loss |")
        p("|---|---|---|---|---|---|---|---|")
        for row in watch_rows:
            p(row)
        p("")
    p("## How each target ran")
    p("")
    for line in machine["targets"]:
        p("- " + line)
    p("")
    p("Load generator: `keel-bench`, closed loop (each client sends its next request when the "
      "last is answered), one connection per client, 256-byte values over 10,000 keys, 1 s "
      "warm-up, then {} s measured; HDR histograms. Its own CPU use (cores) per run is in the "
      "raw JSON (`loadgen_cpu`).".format(machine["seconds"]))
    print("\n".join(out))


if __name__ == "__main__":
    main()
