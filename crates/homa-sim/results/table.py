#!/usr/bin/env python3
"""Prints the Markdown tables of README.md from the runs in this directory:
python3 table.py paper-w1-80 paper-w2-80 ... (one row per run; reads
NAME.csv, NAME.txt and, if present, NAME.time from /usr/bin/time -v);
python3 table.py --k k1-w4-80 k2-w4-80 ... the K-endpoints table."""
import re
import sys


def kv(name):
    out = {}
    for line in open(f"{name}.csv"):
        if line.startswith("# "):
            k, _, v = line[2:].strip().partition("=")
            out[k] = v
    rows = [l.strip().split(",") for l in open(f"{name}.csv") if l[0].isdigit()]
    out["buckets"] = rows
    return out


def timing(name):
    try:
        t = open(f"{name}.time").read()
    except OSError:
        return "-", "-", "-"
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    return f"{user:.0f} s", wall, f"{rss / 1e6:.2f} GB"


def unfinished(name):
    text = open(f"{name}.txt").read()
    m = re.search(r"unfinished work per host[^:]*:(.*)", text)
    pts = re.findall(r"([\d.]+):(-?\d+)/(\d+)/(nan|\d+)", m.group(1))
    return pts


def main(names):
    print("| run | arrivals | short 10% P99 (analytic) | all P99 | per-bucket P99 (upper bound: P99) "
          "| incomplete | util DATA (generated; ideal, matching) | CPU | wall | peak RSS | events/s (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        r = kv(n)
        b = ", ".join(f"{row[1]}: {float(row[5]):.2f}" for row in r["buckets"])
        user, wall, rss = timing(n)
        ev = int(r["events"])
        eps = f"{ev / float(user[:-2]) / 1e6:.2f} M" if user != "-" else "-"
        print(f"| {n} | {float(r['arrivals_end_us']) / 1e3:.0f} ms | {float(r['short_p99']):.2f} "
              f"({float(r['alt_short_p99']):.2f}) | {float(r['all_p99']):.2f} | {b} "
              f"| {r['incomplete']} ({int(r['incomplete_bytes']) / 1e6:.1f} MB) "
              f"| {100 * float(r['utilization_data']):.1f}% ({100 * float(r['generated_load']):.1f}%; "
              f"{100 * float(r['utilization_ideal']):.1f}%, {100 * float(r['utilization_matching']):.1f}%) "
              f"| {user} | {wall} | {rss} | {eps} |")
    print()
    print("| run | unfinished work (us of link time per host: Homa / ideal / matching) at 25%, 50%, 75%, 100% of the arrivals |")
    print("|---|---|")
    for n in names:
        pts = unfinished(n)[:-1]
        if len(pts) < 4:
            continue
        cells = [pts[min(len(pts) - 1, round(f * (len(pts) - 1)))] for f in (0.25, 0.5, 0.75, 1.0)]
        print(f"| {n} | " + ", ".join(f"{p[0]} ms: {p[1]} / {p[2]} / {p[3]}" for p in cells) + " |")


def k_table(names):
    """Issue 17.4: one row per run of K endpoints per host."""
    print("| run | K | short 10% P99 (analytic) | vs K=1 | all P99 | largest ToR buffer | largest downlink queue "
          "| largest NIC queue | util DATA (generated) | incomplete | CPU | wall | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    for n in names:
        r = kv(n)
        k = int(r.get("endpoints_per_host", "1"))
        w = re.sub(r"k\d+-", "", n)
        short = float(r["short_p99"])
        base.setdefault(w, short if k == 1 else None)
        rel = f"{short / base[w]:.2f}x" if base[w] else "-"
        user, wall, rss = timing(n)
        print(f"| {n} | {k} | {short:.2f} ({float(r['alt_short_p99']):.2f}) | {rel} | {float(r['all_p99']):.2f} "
              f"| {int(r['max_tor_buffer']) / 1e3:.0f} KB | {int(r['max_downlink_queue']) / 1e3:.0f} KB "
              f"| {int(r['max_nic_queue']) / 1e3:.0f} KB "
              f"| {100 * float(r['utilization_data']):.1f}% ({100 * float(r['generated_load']):.1f}%) "
              f"| {r['incomplete']} | {user} | {wall} | {rss} |")


if len(sys.argv) > 1 and sys.argv[1] == "--k":
    k_table(sys.argv[2:])
else:
    main(sys.argv[1:])
