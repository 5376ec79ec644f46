#!/usr/bin/env python3
"""Turns the rows of benches/peers/run.sh (results.jsonl) into a Markdown table, the ratios
the comparison aims for, and an SVG chart of throughput and p99 latency per system.

    report.py RESULTS.jsonl MACHINE.txt --md OUT.md --svg OUT.svg

Standard library only, so the script runs wherever run.sh does.
"""

import argparse
import json
import math
from html import escape


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def fmt_rate(x):
    return f"{x:,.0f}" if x is not None else "—"


def fmt_ms(x):
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 1 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def best(rows, system, workload, message_bytes, durability_has=None):
    """The fastest row of a system for a workload (its best pipelining)."""
    cands = [
        r
        for r in rows
        if r.get("system") == system
        and r.get("workload") == workload
        and r.get("message_bytes") == message_bytes
        and r.get("check") == "ok"
        and (durability_has is None or durability_has in r.get("durability", ""))
    ]
    return max(cands, key=lambda r: r["msgs_per_s"], default=None)


def median_p50(rows, system, durability_has):
    """The run with the median p50 among a system's one-at-a-time runs."""
    cands = sorted(
        (
            r
            for r in rows
            if r.get("system") == system
            and r.get("workload") == "publish-one"
            and r.get("check") == "ok"
            and durability_has in r.get("durability", "")
            and r.get("p50_ms") is not None
        ),
        key=lambda r: r["p50_ms"],
    )
    return cands[len(cands) // 2] if cands else None


def ratio_lines(rows):
    """The comparison's goals, each as measured (or why it could not be computed)."""
    out = []

    def ratio(label, a, b, goal, key="msgs_per_s", lower_is_better=False):
        if a is None or b is None or a.get(key) is None or b.get(key) is None:
            out.append(f"| {label} | not measured | {goal} | — |")
            return
        x, y = a[key], b[key]
        r = (y / x) if lower_is_better else (x / y)
        if lower_is_better:
            shown = f"{fmt_ms(x)} ms vs {fmt_ms(y)} ms"
        else:
            shown = f"{fmt_rate(x)} vs {fmt_rate(y)} msgs/s"
        out.append(f"| {label} | {shown} (**{r:.2f}x**) | {goal} | {'yes' if r >= goal_value(goal) else 'NO'} |")

    s100 = best(rows, "sluice", "publish", 100, "always")
    ratio("sluice vs Redis always (publish 100 B)", s100, best(rows, "redis", "publish", 100, "always"), ">= 3x")
    ratio("sluice vs RabbitMQ quorum (publish 100 B)", s100, best(rows, "rabbitmq-quorum", "publish", 100), ">= 10x")
    ratio(
        "sluice vs RabbitMQ quorum (consume, one ack per message)",
        best(rows, "sluice", "consume", 100),
        best(rows, "rabbitmq-quorum", "consume", 100),
        ">= 10x",
    )
    ratio(
        "one at a time, confirm p50 (median of the runs): sluice vs Redis always",
        median_p50(rows, "sluice", "always"),
        median_p50(rows, "redis", "always"),
        ">= 1x",
        key="p50_ms",
        lower_is_better=True,
    )
    def floor(label, r, key, goal, unit):
        if r is None:
            out.append(f"| {label} | not measured | >= {goal:,} {unit} | — |")
            return
        v = r[key]
        out.append(f"| {label} | {v:,.0f} {unit} | >= {goal:,} {unit} | {'yes' if v >= goal else 'NO'} |")

    floor("sluice publish 100 B, always, 1 producer", best1(rows, "publish", 100, "always"), "msgs_per_s", 1_500_000, "msgs/s")
    floor("sluice publish 100 B, never, 1 producer", best1(rows, "publish", 100, "never"), "msgs_per_s", 3_000_000, "msgs/s")
    floor("sluice publish 1000 B, always, 1 producer", best1(rows, "publish", 1000, "always"), "msgs_per_s", 400_000, "msgs/s")
    floor("sluice read 1000 B from the page cache, 1 subscriber", best(rows, "sluice", "read", 1000), "mb_per_s", 1000, "MB/s")
    one, eight = best1(rows, "publish", 100, "always"), best(rows, "sluice", "publish", 100, "always")
    if one and eight and eight["clients"] > 1:
        ok = "yes" if eight["msgs_per_s"] > one["msgs_per_s"] else "NO"
        out.append(
            f"| sluice {eight['clients']} producers vs 1 (100 B, always) | "
            f"{fmt_rate(eight['msgs_per_s'])} vs {fmt_rate(one['msgs_per_s'])} msgs/s | more | {ok} |"
        )
    fio = [r for r in rows if r.get("system") == "fio" and r.get("job") == "1M append+fdatasync O_DIRECT"]
    s1000 = best(rows, "sluice", "publish", 1000, "always")
    if fio and s1000:
        frac = s1000["mb_per_s"] / (fio[0]["mib_per_s"] * 1.048576)
        ok = "yes" if frac >= 0.5 else "NO"
        out.append(
            f"| sluice 1000 B publish vs fio 1 MiB O_DIRECT append+fdatasync | "
            f"{s1000['mb_per_s']:.0f} MB/s vs {fio[0]['mib_per_s'] * 1.048576:.0f} MB/s (**{frac:.0%}**) | >= 50% | {ok} |"
        )
    return out


def best1(rows, workload, message_bytes, durability_has):
    """sluice's best single-producer run."""
    return max(
        (
            r
            for r in rows
            if r.get("system") == "sluice"
            and r.get("workload") == workload
            and r.get("message_bytes") == message_bytes
            and r.get("clients") == 1
            and r.get("check") == "ok"
            and durability_has in r.get("durability", "")
        ),
        key=lambda r: r["msgs_per_s"],
        default=None,
    )


def goal_value(goal):
    return float(goal.replace(">=", "").replace("x", "").strip())


def markdown(rows, machine):
    md = ["# sluice beside its peers", "", "```", machine.strip(), "```", ""]
    fio = [r for r in rows if r.get("system") == "fio"]
    if fio:
        md += ["## The disk (fio)", "", "| job | appends/s | MiB/s | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|"]
        for r in fio:
            md.append(f"| {r['job']} | {r['appends_per_s']:,.0f} | {r['mib_per_s']:.1f} | {r['p50_us']} | {r['p99_us']} |")
        md.append("")
    runs = [r for r in rows if "workload" in r]
    md += [
        "## Runs",
        "",
        "Latency is publish to confirm (per batch for sluice, per message for the others; in a "
        "batch every message waits as long as its batch).",
        "",
        "| system | durability | workload | bytes | clients | pipelining | msgs/s | MB/s | p50 ms | p99 ms | check |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        md.append(
            f"| {r['system']} | {r['durability']} | {r['workload']} | {r['message_bytes']} | {r['clients']} | "
            f"{r['pipeline']} | {fmt_rate(r['msgs_per_s'])} | {r['mb_per_s']:.1f} | {fmt_ms(r['p50_ms'])} | "
            f"{fmt_ms(r['p99_ms'])} | {r['check']} |"
        )
    md.append("")
    syncs = [r for r in rows if "fsync_check" in r]
    if syncs:
        md += [
            "## Does it really sync? (`strace -f -c -e trace=fsync,fdatasync`, separate short runs)",
            "",
            "| system | run | fsync + fdatasync calls | messages | calls per 1000 messages |",
            "|---|---|---:|---:|---:|",
        ]
        for r in syncs:
            per = 1000 * r["fsync_calls"] / r["messages"] if r["messages"] else 0
            md.append(f"| {r['system']} | {r['fsync_check']} | {r['fsync_calls']} | {r['messages']} | {per:.1f} |")
        md.append("")
    md += ["## Goals", "", "| comparison | measured | goal | met |", "|---|---|---|---|"]
    md += ratio_lines(rows)
    md.append("")
    return "\n".join(md)


# ---- chart ----------------------------------------------------------------------------------

COLORS = {
    "sluice": "#1f77b4",
    "redis": "#d62728",
    "rabbitmq-quorum": "#ff7f0e",
    "rabbitmq-classic": "#e8a33d",
    "nats-jetstream": "#2ca02c",
}


def label(r):
    d = r["durability"]
    if r["system"] == "redis":
        d = d.replace("appendonly yes, ", "")
    elif r["system"] == "sluice":
        d = d.split(":")[0]
    elif r["system"].startswith("rabbitmq"):
        d = "confirms"
    elif r["system"] == "nats-jetstream":
        d = "file store, no fsync"
    return f"{r['system']} ({d})"


def panel(x0, y0, width, title, items, value_key, unit, log_scale):
    """A horizontal bar chart: items are (label, value, color)."""
    bar_h, gap, label_w = 18, 6, 270
    parts = [f'<text x="{x0}" y="{y0}" font-weight="bold">{escape(title)}</text>']
    vals = [v for _, v, _ in items if v]
    if not vals:
        return parts, y0 + 20
    top = max(vals)
    lo = min(vals)
    plot_w = width - label_w - 90
    y = y0 + 14
    for name, v, color in items:
        if not v:
            w = 0
        elif log_scale:
            floor = 10 ** math.floor(math.log10(lo))
            w = plot_w * (math.log10(v) - math.log10(floor) + 0.15) / (math.log10(top) - math.log10(floor) + 0.15)
        else:
            w = plot_w * v / top
        parts.append(f'<text x="{x0 + label_w - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>')
        parts.append(f'<rect x="{x0 + label_w}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{color}"/>')
        shown = "—" if not v else (f"{v:,.0f}" if value_key == "msgs_per_s" else fmt_ms(v))
        parts.append(f'<text x="{x0 + label_w + w + 6:.1f}" y="{y + 13}">{shown}{unit if v else ""}</text>')
        y += bar_h + gap
    if log_scale:
        parts.append(f'<text x="{x0 + label_w}" y="{y + 10}" font-size="10" fill="#666">log scale</text>')
        y += 12
    return parts, y + 18


def chart(rows, machine):
    width = 900
    sections = []
    runs = [r for r in rows if "workload" in r and r.get("check") == "ok"]

    def best_per_system(workload, message_bytes):
        picked = {}
        for r in runs:
            if r["workload"] != workload or r["message_bytes"] != message_bytes:
                continue
            k = (r["system"], r["durability"])
            if k not in picked or r["msgs_per_s"] > picked[k]["msgs_per_s"]:
                picked[k] = r
        return sorted(picked.values(), key=lambda r: -r["msgs_per_s"])

    def median_per_system(workload, message_bytes):
        """The run with the median p50 per system and setting (runs that alternate)."""
        groups = {}
        for r in runs:
            if r["workload"] == workload and r["message_bytes"] == message_bytes and r["p50_ms"]:
                groups.setdefault((r["system"], r["durability"]), []).append(r)
        return [sorted(g, key=lambda r: r["p50_ms"])[len(g) // 2] for g in groups.values()]

    pub = best_per_system("publish", 100)
    sections.append(("Publish, 100 B messages, best pipelining: messages/s", pub, "msgs_per_s", "", True))
    sections.append(("Publish, 100 B: p99 publish-to-confirm latency (ms)", pub, "p99_ms", " ms", True))
    cons = best_per_system("consume", 100)
    sections.append(("Consume, 100 B, one ack per message: messages/s", cons, "msgs_per_s", "", True))
    one = sorted(median_per_system("publish-one", 100), key=lambda r: r["p50_ms"] or 1e9)
    sections.append(("One message at a time: p50 confirm latency (ms)", one, "p50_ms", " ms", False))
    sections.append(("One message at a time: p99 confirm latency (ms)", one, "p99_ms", " ms", True))

    date = next((l.split(":", 1)[1].strip() for l in machine.splitlines() if l.startswith("date:")), "")
    parts = [
        f'<text x="20" y="22" font-size="14" font-weight="bold">sluice beside its peers: one 2-vCPU VM, '
        f"loopback, data on the same ext4 disk ({escape(date)})</text>",
        '<text x="20" y="40" font-size="11" fill="#444">Each system at its best pipelining. Latency is '
        "publish to confirm: per batch of 1000 for sluice, per message for the others.</text>",
        '<text x="20" y="54" font-size="11" fill="#444">One message at a time: the run with the median '
        "p50 of each system's alternating runs. NATS 2.9.10 does not fsync (see the table).</text>",
    ]
    y = 80
    for title, rs, key, unit, log_scale in sections:
        items = [(label(r), r.get(key), COLORS.get(r["system"], "#777")) for r in rs]
        p, y = panel(20, y, width - 20, title, items, key, unit, log_scale)
        parts += p
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>'
    )
    return head + "".join(parts) + "</svg>\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("machine")
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    rows = load(a.results)
    with open(a.machine) as f:
        machine = f.read()
    with open(a.md, "w") as f:
        f.write(markdown(rows, machine))
    with open(a.svg, "w") as f:
        f.write(chart(rows, machine))


if __name__ == "__main__":
    main()
