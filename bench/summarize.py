"""Turns the CSV files of bench/compare.sh into a Markdown report: the
machine, one table row per run, each server's largest sustained rate, the
ratios the goals are about, and the large-message echoes.

    python3 bench/summarize.py bench/results/full.csv bench/results/full-bulk.csv

Standard library only.
"""

import csv
import os
import platform
import subprocess
import sys

NAMES = {"ours": "ours (echo_server)", "ref": "reference 0.2.4", "raw": "raw UDP+AES-GCM"}


def num(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def fmt(value, digits=0, unit=""):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def sustained(row):
    """All clients connected, < 0.1 % loss, and >= 99 % of the offered rate delivered."""
    sent, lost = num(row["sent"], 0), num(row["lost"], 0)
    offered = num(row["clients"], 0) * num(row["hz"], 0)
    return (
        sent > 0
        and row["connected"] == row["clients"]
        and lost / sent < 0.001
        and num(row["msgs_per_s"], 0) >= 0.99 * offered
    )


def machine():
    lines = []
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        lines.append(f"{len(models)} × {models[0]}" if models else f"{os.cpu_count()} CPUs")
    except OSError:
        lines.append(f"{os.cpu_count()} CPUs")
    lines.append(f"{platform.system()} {platform.release()}")
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
        lines.append(rustc)
    except OSError:
        pass
    lines.append(f"Python {platform.python_version()} (reference in the bench venv)")
    return ", ".join(lines)


def main():
    runs_path, bulk_path = sys.argv[1], sys.argv[2]
    with open(runs_path) as f:
        runs = list(csv.DictReader(f))
    bulk = []
    if os.path.exists(bulk_path):
        with open(bulk_path) as f:
            bulk = list(csv.DictReader(f))

    out = print
    out(f"Machine: {machine()}.\n")
    out("Every figure comes from the one run of `bench/compare.sh` that wrote this file; `load` is the")
    out("1-minute load average just before each run (2 cores: above 2 means other work competed).\n")

    by_load = {}
    for r in runs:
        by_load.setdefault((int(r["clients"]), int(r["hz"])), {})[r["server"]] = r

    out("| load (clients × Hz) | server | offered msg/s | connected | delivered msg/s | loss | p50 RTT ms | p99 RTT ms | server CPU | ours ÷ ref | ours ÷ raw | load |")
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (clients, hz), servers in sorted(by_load.items(), key=lambda kv: (kv[0][0] * kv[0][1], kv[0])):
        ours = num(servers.get("ours", {}).get("msgs_per_s"))
        for kind in ("ours", "ref", "raw"):
            r = servers.get(kind)
            if r is None:
                continue
            sent, lost = num(r["sent"], 0), num(r["lost"], 0)
            loss = f"{100 * lost / sent:.2f} %" if sent else "-"
            rate = num(r["msgs_per_s"])
            vs_ref = vs_raw = ""
            if kind == "ours":
                ref = num(servers.get("ref", {}).get("msgs_per_s"))
                raw = num(servers.get("raw", {}).get("msgs_per_s"))
                vs_ref = f"{ours / ref:.1f} ×" if ours and ref else "-"
                vs_raw = f"{100 * ours / raw:.0f} %" if ours and raw else "-"
            cpu = num(r["server_cpu_pct"])
            mark = "" if sustained(r) else " ✗"
            out(
                f"| {clients} × {hz} | {NAMES[kind]} | {fmt(num(r['offered_per_s']))} | {r['connected']}/{clients} "
                f"| {fmt(rate)}{mark} | {loss} | {r['p50_rtt_ms']} | {r['p99_rtt_ms']} "
                f"| {fmt(cpu, 1, ' %')} | {vs_ref} | {vs_raw} | {r['load1']} |"
            )
    out("\n✗: not sustained (a client did not connect, loss ≥ 0.1 %, or less than 99 % of the offered rate delivered).\n")

    out("| server | largest sustained msg/s (load) | peak delivered msg/s | server CPU µs per message at that load | handshakes/s (largest run) |")
    out("|---|---:|---:|---:|---:|")
    best = {}
    for kind in ("ours", "ref", "raw"):
        rows = [r for r in runs if r["server"] == kind]
        if not rows:
            continue
        ok = [r for r in rows if sustained(r)]
        top = max(ok, key=lambda r: num(r["msgs_per_s"], 0)) if ok else None
        peak = max(num(r["msgs_per_s"], 0) for r in rows)
        best[kind] = (num(top["msgs_per_s"]) if top else None, peak)
        cost = None
        if top and num(top["server_cpu_pct"]) and num(top["msgs_per_s"]):
            cost = num(top["server_cpu_pct"]) / 100 / num(top["msgs_per_s"]) * 1e6
        big = max(rows, key=lambda r: (int(r["clients"]), -int(r["hz"])))
        hs = num(big["handshakes_per_s"]) if kind != "raw" else None
        where = f" ({top['clients']} × {top['hz']}, load {top['load1']})" if top else ""
        handshakes = f"{fmt(hs)} ({big['clients']} clients)" if hs else "-"
        out(f"| {NAMES[kind]} | {fmt(best[kind][0])}{where} | {fmt(peak)} | {fmt(cost, 1)} | {handshakes} |")

    out("\nGoals measured here (the core-path goal is `cargo bench --bench datagram`, see BENCHMARKS.md):\n")
    if "ours" in best and "ref" in best and best["ours"][0] and best["ref"][0]:
        ratio = best["ours"][0] / best["ref"][0]
        out(f"- largest sustained rate, ours ÷ reference: **{ratio:.1f} ×** (goal ≥ 25 ×: {'met' if ratio >= 25 else 'not met'})")
    if "ours" in best and "raw" in best:
        o, r = best["ours"], best["raw"]
        if o[0] and r[0]:
            out(f"- largest sustained rate, ours ÷ raw baseline: **{100 * o[0] / r[0]:.0f} %** (goal ≥ 60 %: {'met' if o[0] >= 0.6 * r[0] else 'not met'})")
        if o[1] and r[1]:
            out(f"- peak delivered rate, ours ÷ raw baseline: **{100 * o[1] / r[1]:.0f} %**")
    big = by_load.get((2000, 60), {}).get("ours")
    if big:
        sent, lost = num(big["sent"], 0), num(big["lost"], 0)
        loss = 100 * lost / sent if sent else None
        p99 = num(big["p99_rtt_ms"])
        met = sustained(big) and loss is not None and loss < 0.1 and p99 is not None and p99 < 20
        out(
            f"- 2,000 clients × 60 Hz, ours: {fmt(num(big['msgs_per_s']))} msg/s delivered of {fmt(num(big['offered_per_s']))} offered, "
            f"loss {fmt(loss, 3, ' %')}, p99 RTT {big['p99_rtt_ms']} ms (goal < 0.1 % and < 20 ms: {'met' if met else 'not met'})"
        )
    for b in bulk:
        if b["server"] == "ours" and b["size"] == "100000":
            p50 = num(b["p50_ms"])
            out(f"- 100 KB echo, ours: p50 {b['p50_ms']} ms (goal ≤ 50 ms: {'met' if p50 is not None and p50 <= 50 else 'not met'})")

    if bulk:
        out("\n| one message at a time | server | echoed | p50 ms | p99 ms | load |")
        out("|---|---|---:|---:|---:|---:|")
        for b in bulk:
            size = int(b["size"])
            label = f"{size // 1000} KB" if size % 1024 else f"{size // 1048576} MiB"
            out(f"| {label} | {NAMES[b['server']]} | {b['echoed']}/{b['count']} | {b['p50_ms']} | {b['p99_ms']} | {b['load1']} |")


if __name__ == "__main__":
    main()
