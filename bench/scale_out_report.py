"""The scoreboard's section on scale-out, from bench/scale_out.py's results: the channel log on
SQLite against NATS JetStream (throughputs in messages or records per second, latencies in ms, CPU
in ms a message), and two server replicas against one."""

from __future__ import annotations

GiB = 1 << 30


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]) + "\n"


def _x(ratios: dict, name: str, key: str) -> str:
    """`` (xR)``: the figure over SQLite's in the same run ("" when there is no ratio)."""
    return f" (x{ratios[name][key]:.2f})" if key in ratios.get(name, {}) else ""


def _p(d: dict, digits: int) -> str:
    return f"{d['p50']:.{digits}f} / {d['p99']:.{digits}f}"


def _bound(ok: dict, cores: int) -> str:
    """A sentence: the publish rate the server's CPU a message allows on ``cores`` (SQLite's run)."""
    if "sqlite" not in ok:
        return ""
    ms = ok["sqlite"]["service"]["cpu_ms_per_message"]["servers"]
    return (f" At {ms:.1f} ms of server CPU a message (SQLite's run; coding, mostly), {cores} cores publish at "
            f"most about {cores * 1000 / ms:.0f} msg/s whatever the log: the log's own cost is in the next table.")


def report_section(d: dict, where: str = "this run") -> str:
    """Markdown: the figures through a server and of the log alone per configuration, each beside
    its ratio to SQLite, then the capacity of two replicas against one."""
    title = "## Scale-out: the channel log on SQLite and NATS JetStream\n\n"
    if "error" in d:
        return f"{title}The measurement failed in this run: {d['error']}.\n"
    m, p, r = d["machine"], d["plan"], d["ratios"]
    ok = {name: c for name, c in d["configs"].items() if "error" not in c}
    loads = ", ".join(f"{c['load_average_1min']:.1f}" for c in ok.values())
    shared = ("both replicas, the three NATS nodes and the load generator" if m["cores"] <= 2 else
              "the replicas, the NATS nodes and the load generator")
    intro = (f"{title}From {where}: `{d['command']}` ({d['mode']} mode), started {d['started_utc']}, "
             f"{d['seconds']['total']:.0f} s. Machine: {m['cpu']}, {m['cores']} cores, "
             f"{m['memory_bytes'] / GiB:.0f} GiB, {m['platform']}; {m['nats_server']}. Every process shares these "
             f"{m['cores']} cores ({shared}, and anything else running: the 1-minute load average before each "
             f"configuration was {loads}). Each configuration on fresh temporary directories and loopback ports; "
             "`sqlite` is the embedded log and the baseline: (xR) is a figure over SQLite's in this run. `sync "
             "always`: the shipped `sync_interval: always` (every write fsynced before JetStream acknowledges it); "
             "`default sync`: JetStream's default (fsync at most every two minutes). nats-3: three routed nodes, "
             f"streams with three replicas. Servers run with `{' '.join(d['server_flags'])}`: no message codes, so "
             "that the log is what differs (every published message is still coded with the exact tier on the "
             "server), and as many threads coding published messages as there are cores.\n")
    out = [intro]
    rows = []
    for name, c in d["configs"].items():
        if "error" in c:
            rows.append([name, f"failed: {c['error']}", "", "", "", "", ""])
            continue
        s = c["service"]
        cpu = s["cpu_ms_per_message"]
        rows.append([name, f"{s['publish_msgs_per_s']['median']:.0f}{_x(r, name, 'publish_msgs_per_s')}",
                     f"{cpu['servers']:.1f}", f"{cpu['nats']:.2f}" if name != "sqlite" else "-",
                     _p(s["publish_latency_ms"], 1) + _x(r, name, "publish_latency_p50"),
                     _p(s["follow_latency_ms"], 1) + _x(r, name, "follow_latency_p50"),
                     f"{s['catchup_msgs_per_s']['median']:.0f}{_x(r, name, 'catchup_msgs_per_s')}"])
    out.append(
        f"### Through a server\n\nPublish: {p['publishers']} concurrent SDK publishers, a channel each, "
        f"{p['batch']} messages a `publish` call, {p['messages']} messages of {d['message_bytes']['min']}-"
        f"{d['message_bytes']['max']} bytes (median {d['message_bytes']['median']:.0f}) in all, acknowledged once "
        f"durable; median of {p['repeats']} runs, with the CPU ms a message of the server and of the NATS nodes. "
        f"Latencies: {p['latency_samples']} single-message `publish` calls one after the other, p50 / p99 (xR of "
        "p50); follow: a live raw `Subscribe` from the channel's end, from the start of the `publish` call to the "
        f"message's arrival (not decoded). Catch-up: raw `Subscribe` from offset 0 over the publish runs' channels, "
        f"median of {p['catchup_reads']} reads.{_bound(ok, m['cores'])}"
        + (" Quick mode: runs of a few seconds, which vary with whatever else runs on the machine."
           if d["mode"] == "quick" else "") + "\n\n"
        + _table(["log", "publish msg/s", "server CPU ms/msg", "NATS CPU ms/msg", "publish p50 / p99 ms",
                  "follow p50 / p99 ms", "catch-up msg/s"], rows))
    rows = [[name, f"{c['log']['append_records_per_s']['median']:,.0f}{_x(r, name, 'log_append_records_per_s')}",
             _p(c["log"]["append_latency_ms"], 2) + _x(r, name, "log_append_latency_p50"),
             _p(c["log"]["wait_latency_ms"], 2) + _x(r, name, "log_wait_latency_p50")] for name, c in ok.items()]
    out.append(
        "### The log alone\n\nThe server's channel log driven in the benchmark's process once the server stopped: "
        f"no gRPC, no coding; records are the messages' bytes with a dedup key. Append: {p['publishers']} concurrent "
        f"appenders, a channel each, {p['batch']} records an append, {p['log_records']} records in all, median of "
        f"{p['repeats']} runs. Latency: {p['log_latency_samples']} single-record appends one after the other, p50 / "
        "p99 (xR of p50); wait: a live reader waiting for each record (`LogStore.wait`), from the append's start "
        "to its wake-up.\n\n"
        + _table(["log", "append records/s", "append p50 / p99 ms", "wait p50 / p99 ms"], rows))
    cap = d["configs"].get(d["capacity_config"], {}).get("capacity")
    if cap:
        one, two = cap["one_replica"], cap["two_replicas"]
        cpu1, cpu2 = one["cpu_ms_per_message"]["servers"], two["cpu_ms_per_message"]["servers"]
        out.append(
            f"### Two replicas against one\n\nOn `{d['capacity_config']}`: publish throughput (as above) against one "
            "replica, then with a second `rvqstream serve` on the same JetStream log and the publishers' client "
            f"balanced round-robin over both: {one['median']:.0f} msg/s against {two['median']:.0f} msg/s, ratio "
            f"**{cap['ratio']:.2f}** (server CPU ms a message, both replicas together: {cpu1:.1f} against "
            f"{cpu2:.1f}; medians of {p['repeats']} runs each). With {m['cores']} cores both replicas, the NATS "
            "nodes and the publishers share the same CPUs: this ratio shows the overhead and contention a second "
            "replica adds on one machine, not the capacity it adds on a machine of its own.\n")
    out.append("Reproduce: `make bench-scale` (full), `python bench/scale_out.py --quick` (a couple of minutes); "
               "the scoreboard runs it too (`make bench`, `make bench-quick`).\n")
    return "\n".join(out)
