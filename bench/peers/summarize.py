"""Turns the CSV files of one bench/peers/run.sh run into Markdown: the
machine, then a table per workload with each figure's ratio to the best
peer in its row.

    python3 bench/peers/summarize.py bench/peers/results full
    python3 bench/peers/summarize.py --spread bench/peers/results run-a run-b

Standard library only.
"""

import csv
import os
import platform
import subprocess
import sys

NAMES = {
    "ours": "ours (MPGS/1)",
    "ours2": "ours (MPGS/2)",
    "renet": "renet 2.0.1 + renet_netcode",
    "quinn": "quinn 0.11.12",
}
ORDER = ["ours", "ours2", "renet", "quinn"]
# IPv4 + UDP headers, added to every datagram's payload for "on the wire".
HEADERS = 28


def num(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def fmt(value, digits=0, unit=""):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def ratio(value, best, higher_is_better=True):
    """'1.00 ×' for the best; others as a fraction (higher is better) or a multiple (lower is better)."""
    if value is None or best is None or value <= 0 or best <= 0:
        return "-"
    r = value / best
    if higher_is_better:
        return "**best**" if abs(r - 1) < 1e-9 else f"{r:.2f} ×"
    return "**best**" if abs(r - 1) < 1e-9 else f"{r:.2f} ×"


def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def machine():
    parts = []
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        parts.append(f"{len(models)} × {models[0]}" if models else f"{os.cpu_count()} CPUs")
    except OSError:
        parts.append(f"{os.cpu_count()} CPUs")
    parts.append(f"{platform.system()} {platform.release()}")
    try:
        parts.append(subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    return ", ".join(parts)


def sustained(r):
    sent, lost = num(r["sent"], 0), num(r["lost"], 0)
    p99 = num(r["p99_rtt_ms"])
    offered = num(r["clients"], 0) * num(r["hz"], 0)
    return (
        sent > 0
        and r["connected"] == r["clients"]
        and lost / sent <= 0.001
        and p99 is not None
        and p99 <= 50
        and num(r["msgs_per_s"], 0) >= 0.99 * offered
    )


def cpu_per_msg(r):
    cpu, rate = num(r["server_cpu_pct"]), num(r["msgs_per_s"])
    if cpu is None or not rate:
        return None
    return cpu / 100 / rate * 1e6


def load_tables(rows, out):
    for delivery, title in (("unreliable", "1. Unreliable"), ("reliable", "2. Reliable-ordered")):
        mine = [r for r in rows if r["workload"] == delivery]
        if not mine:
            continue
        out(f"\n### {title}, 100 B at 60 Hz per client\n")
        out("| clients | server | delivered msg/s | ÷ best | loss | p50 RTT ms | p99 RTT ms | server CPU | server µs/msg | ÷ best | client CPU | load |")
        out("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        by_clients = {}
        for r in mine:
            by_clients.setdefault(int(r["clients"]), {})[r["server"]] = r
        for clients in sorted(by_clients):
            group = by_clients[clients]
            best_rate = max((num(r["msgs_per_s"], 0) for r in group.values()), default=None)
            costs = [cpu_per_msg(r) for r in group.values() if sustained(r) and cpu_per_msg(r)]
            best_cost = min(costs) if costs else None
            for peer in ORDER:
                r = group.get(peer)
                if r is None:
                    continue
                sent, lost = num(r["sent"], 0), num(r["lost"], 0)
                loss = f"{100 * lost / sent:.2f} %" if sent else "-"
                mark = "" if sustained(r) else " ✗"
                cost = cpu_per_msg(r)
                cost_ratio = ratio(cost, best_cost, higher_is_better=False) if sustained(r) else "-"
                out(
                    f"| {clients} | {NAMES[peer]} | {fmt(num(r['msgs_per_s']))}{mark} | {ratio(num(r['msgs_per_s']), best_rate)} "
                    f"| {loss} | {r['p50_rtt_ms']} | {r['p99_rtt_ms']} | {fmt(num(r['server_cpu_pct']), 1, ' %')} "
                    f"| {fmt(cost, 2)} | {cost_ratio} | {fmt(num(r['loadgen_cpu_pct']), 1, ' %')} | {r['load1']} |"
                )
        out("\n✗: not sustained (a client did not connect, loss > 0.1 %, p99 > 50 ms, or < 99 % of the offered rate delivered); "
            "a peer's climb stops at its first ✗ (its knee). Server µs/msg is the server's CPU time per delivered message; "
            "its ratio compares sustained rows only.\n")
        out("| server | largest sustained load | msg/s there | server µs/msg there |")
        out("|---|---:|---:|---:|")
        for peer in ORDER:
            ok = [r for r in mine if r["server"] == peer and sustained(r)]
            if not [r for r in mine if r["server"] == peer]:
                continue
            top = max(ok, key=lambda r: num(r["msgs_per_s"], 0)) if ok else None
            if top:
                out(f"| {NAMES[peer]} | {top['clients']} × {top['hz']} | {fmt(num(top['msgs_per_s']))} | {fmt(cpu_per_msg(top), 2)} |")
            else:
                out(f"| {NAMES[peer]} | none | - | - |")


def echo_table(rows, out):
    if not rows:
        return
    out("\n### 3. One connection, 1 MiB reliable message echoed one at a time\n")
    out("| server | echoed | p50 ms | p99 ms | p50 ÷ best | load |")
    out("|---|---:|---:|---:|---:|---:|")
    times = [num(r["p50_ms"]) for r in rows if num(r["p50_ms"])]
    best = min(times) if times else None
    for r in rows:
        out(f"| {NAMES[r['server']]} | {r['echoed']}/{r['count']} | {r['p50_ms']} | {r['p99_ms']} | {ratio(num(r['p50_ms']), best, False)} | {r['load1']} |")


def bulk_table(rows, out):
    if not rows:
        return
    out("\n### 4. One connection, bulk reliable throughput\n")
    out("| server | seconds | message size | in flight | MB/s echoed | ÷ best | server CPU | load |")
    out("|---|---:|---:|---:|---:|---:|---:|---:|")
    rates = [num(r["mb_per_s"]) for r in rows if num(r["mb_per_s"])]
    best = max(rates) if rates else None
    for r in rows:
        out(f"| {NAMES[r['server']]} | {r['seconds']} | {r['message_size']} B | {r['window']} | {r['mb_per_s']} "
            f"| {ratio(num(r['mb_per_s']), best)} | {fmt(num(r['server_cpu_pct']), 1, ' %')} | {r['load1']} |")


def connect_table(rows, out):
    if not rows:
        return
    out("\n### 5. Handshakes\n")
    out("| connects | at a time | server | connected | handshakes/s | ÷ best | p50 ms | p99 ms | load |")
    out("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    groups = {}
    for r in rows:
        groups.setdefault(int(r["concurrency"]), []).append(r)
    for conc in sorted(groups):
        group = groups[conc]
        best = max((num(r["handshakes_per_s"], 0) for r in group), default=None)
        for r in group:
            out(f"| {r['clients']} | {conc} | {NAMES[r['server']]} | {r['connected']} | {fmt(num(r['handshakes_per_s']))} "
                f"| {ratio(num(r['handshakes_per_s']), best)} | {r['connect_p50_ms']} | {r['connect_p99_ms']} | {r['load1']} |")


def overhead_table(rows, out):
    if not rows:
        return
    out("\n### 6. Bytes on the wire per 100 B message (100 clients × 60 Hz, counted by the relay)\n")
    out("| delivery | server | datagrams per message (up + down) | UDP payload B per message, up | down | on the wire B per message, both ways | ÷ best | load |")
    out("|---|---|---:|---:|---:|---:|---:|---:|")
    for delivery in ("unreliable", "reliable"):
        group = [r for r in rows if r["workload"] == delivery and num(r["up_bytes"])]
        stats = {}
        for r in group:
            # Messages really sent (the load's rate over its window), else the offered rate.
            rate = num(r.get("sent_per_s")) or num(r["clients"]) * num(r["hz"])
            msgs = rate * num(r["seconds"])
            up_d, up_b = num(r["up_datagrams"], 0), num(r["up_bytes"], 0)
            dn_d, dn_b = num(r["down_datagrams"], 0), num(r["down_bytes"], 0)
            wire = (up_b + dn_b + HEADERS * (up_d + dn_d)) / msgs
            stats[r["server"]] = ((up_d + dn_d) / msgs, up_b / msgs, dn_b / msgs, wire, r["load1"])
        best = min((s[3] for s in stats.values()), default=None)
        for peer in ORDER:
            if peer not in stats:
                continue
            d, up, dn, wire, load = stats[peer]
            out(f"| {delivery} | {NAMES[peer]} | {d:.2f} | {up:.1f} | {dn:.1f} | {wire:.1f} | {ratio(wire, best, False)} | {load} |")
    out(f"\nOn the wire = UDP payloads + {HEADERS} B of IPv4 and UDP headers per datagram, both directions, "
        "divided by the messages sent (one 100 B message and its 100 B echo per client per tick; "
        "the offered count where the CSV has no `sent_per_s`); "
        "acknowledgements and keep-alives included.")


def spread(folder, tags, out):
    """The key figures of several runs side by side, with their spread ((max - min) / min)."""
    figures = {}

    def put(key, tag, value):
        if value is not None:
            figures.setdefault(key, {})[tag] = value

    for tag in tags:
        for r in read(os.path.join(folder, f"{tag}-load.csv")):
            key = f"{r['workload']} {r['clients']} × {r['hz']}, {r['server']}"
            put(key + ": delivered msg/s", tag, num(r["msgs_per_s"]))
            put(key + ": p99 RTT ms", tag, num(r["p99_rtt_ms"]))
            put(key + ": server µs/msg", tag, cpu_per_msg(r))
        for r in read(os.path.join(folder, f"{tag}-echo.csv")):
            put(f"1 MiB echo, {r['server']}: p50 ms", tag, num(r["p50_ms"]))
        for r in read(os.path.join(folder, f"{tag}-bulk.csv")):
            put(f"bulk, {r['server']}: MB/s", tag, num(r["mb_per_s"]))
        for r in read(os.path.join(folder, f"{tag}-connect.csv")):
            put(f"{r['clients']} connects, {r['concurrency']} at a time, {r['server']}: handshakes/s", tag, num(r["handshakes_per_s"]))
    out("| figure | " + " | ".join(tags) + " | spread |")
    out("|---|" + "---:|" * (len(tags) + 1))
    for key, values in figures.items():
        if len(values) < len(tags):
            continue
        vs = [values[t] for t in tags]
        lo, hi = min(vs), max(vs)
        sp = f"{100 * (hi - lo) / lo:.0f} %" if lo > 0 else "-"
        out(f"| {key} | " + " | ".join(fmt(v, 2 if v < 100 else 0) for v in vs) + f" | {sp} |")


def main():
    if len(sys.argv) > 3 and sys.argv[1] == "--spread":
        spread(sys.argv[2], sys.argv[3:], print)
        return
    folder, tag = sys.argv[1], sys.argv[2]
    out = print
    out(f"Machine: {machine()}. Run `{tag}` of `bench/peers/run.sh`; `load` is the 1-minute load average "
        "just before each row (2 cores: above 2 means other work competed). Ratios compare peers within a row group "
        "of this one run: for rates, a fraction of the best; for times, CPU and bytes, a multiple of the best.")
    load_tables(read(os.path.join(folder, f"{tag}-load.csv")), out)
    echo_table(read(os.path.join(folder, f"{tag}-echo.csv")), out)
    bulk_table(read(os.path.join(folder, f"{tag}-bulk.csv")), out)
    connect_table(read(os.path.join(folder, f"{tag}-connect.csv")), out)
    overhead_table(read(os.path.join(folder, f"{tag}-overhead.csv")), out)


if __name__ == "__main__":
    main()
