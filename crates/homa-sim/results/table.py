#!/usr/bin/env python3
"""Prints the Markdown tables of README.md from the reports (<name>.txt) in
this directory: python3 table.py w1-80@10 w2-80@10 ... (one row per report;
@ms is when arrivals end, where the unfinished-work columns stop)."""
import re
import sys


def parse(name):
    text = open(f"{name}.txt").read()
    r = {"name": name}
    m = re.search(r"DATA ([\d.]+)% \(offered [\d.]+%, generated ([\d.]+)%, ideal ([\d.]+)%, matching ([\d.]+)%\)", text)
    r["util"], r["gen"], r["ideal"], r["match"] = m.groups()
    r["idle"] = re.search(r"idle with a message pending ([\d.]+)%", text).group(1)
    m = re.search(r"max switch buffer: ToR ([\d.]+ [KM]B), aggregation ([\d.]+ [KM]B)", text)
    r["tor"], r["agg"] = m.groups()
    m = re.search(r"shortest 10% \(<= (\d+) B\): n \d+\s+P50 [\d.]+\s+P99 ([\d.]+)", text)
    r["short_max"], r["short_p99"] = m.groups()
    r["all_p99"] = re.search(r"all messages: n \d+\s+P50 [\d.]+\s+P99 ([\d.]+)", text).group(1)
    r["buckets"] = [
        (hi, p99)
        for _lo, hi, p99 in re.findall(
            r"^\s+(\d+) -\s+(\d+)\s+[\d.]+%\s+\d+\s+[\d.]+\s+([\d.]+)", text, re.M
        )
    ]
    r["retx"] = re.search(r"retransmitted (\d+)", text).group(1)
    r["unfinished"] = re.findall(r"([\d.]+):(-?\d+)/(\d+)/(\d+)", re.search(r"unfinished work per host[^:]*:(.*)", text).group(1))
    return r


def main(names):
    rows = []
    for arg in names:
        name, _, end = arg.partition("@")
        r = parse(name)
        r["end"] = float(end) if end else None
        rows.append(r)
    print("| run | short 10% (<= B) P99 | all P99 | per-bucket P99 (upper bound: P99) "
          "| util DATA (generated; ideal, matching) | idle w/ pending | max ToR / agg buffer | retx |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        buckets = ", ".join(f"{hi}: {p}" for hi, p in r["buckets"])
        print(f"| {r['name']} | {r['short_p99']} (<= {r['short_max']}) | {r['all_p99']} | {buckets} "
              f"| {r['util']}% ({r['gen']}%; {r['ideal']}%, {r['match']}%) | {r['idle']}% "
              f"| {r['tor']} / {r['agg']} | {r['retx']} |")
    print()
    print("| run | unfinished work at 10% of the run | 50% | end of arrivals |")
    print("|---|---|---|---|")
    for r in rows:
        pts = [p for p in r["unfinished"] if r["end"] is None or float(p[0]) <= r["end"] + 1e-9]
        if len(pts) < 3:
            continue
        end = pts[-1]
        cells = []
        for frac in (0.1, 0.5, 1.0):
            t = float(end[0]) * frac
            p = min(pts, key=lambda q: abs(float(q[0]) - t))
            cells.append(f"{p[1]} / {p[2]} / {p[3]} ({p[0]} ms)")
        print(f"| {r['name']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
