"""REPORT.md and PNG plots from the scoreboard's results (matplotlib, Agg backend).

Every number written comes from the ``results`` dict of the run (bench/scoreboard.py); units:
bpb = bits per byte of UTF-8 text, latency in ms, throughput in bytes, tokens or messages per
second. The sections of the integer model's whole-split check, edge decode, step cost, message codes and
scale-out come from the run's results, or, for a run without them, from ``intlm_check.json``,
``edge_decode.json``, ``step_cost.json``, ``group_cost.json``, ``semantic_codes.json`` and ``scale_out.json`` beside
``results.json`` (bench/intlm_check.py, bench/edge_decode.py, bench/step_cost.py, bench/group_cost.py,
bench/semantic_codes.py, bench/scale_out.py);
attacks and fuzzing from ``attacks.json`` and ``fuzz.json`` (runs of their own).

Run: ``python bench/report.py [--out bench/results]`` writes REPORT.md and its plots again from
``<out>/results.json`` and those files, without running anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
from codec_bench import FLOAT_EXACT, OURS
from intlm_check import OLD_SOURCES
from scale_out_report import report_section as scale_section
from semantic_codes_report import report_section as codes_section

ANCHORS = ("gzip-9", "brotli-11", "zstd-19", "zstd-19+dict", "zstd-19+dict stream")
ANCHOR_STYLE = {"gzip-9": "tab:gray", "brotli-11": "tab:brown", "zstd-19": "tab:olive",
                "zstd-19+dict": "tab:purple", "zstd-19+dict stream": "tab:pink", OURS: "tab:blue",
                FLOAT_EXACT: "tab:cyan"}
LABEL = {OURS: "rvqstream exact", FLOAT_EXACT: FLOAT_EXACT}
MB = 1 << 20


def table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return f"![{name}]({name})\n"


# -- sections ---------------------------------------------------------------------------------

def _model_name(r: dict) -> str:
    """What the default bundle of the run was (results from before the integer model: the float one)."""
    return "integer model" if r["model"]["config"].get("kind") == "intlm" else "default model"


def rate_section(r: dict, out: Path) -> str:
    label = {**LABEL, OURS: f"{OURS}, {_model_name(r)}"}
    ours = [OURS, *([FLOAT_EXACT] if all(FLOAT_EXACT in v["bpb"] for v in r["rate"].values()) else [])]
    rows = [[name, v["messages"], v["bytes"], *(v["bpb"][m] for m in ours), *(v["bpb"][a] for a in ANCHORS),
             v["bpb"][OURS] / v["bpb"]["zstd-19+dict"]] for name, v in r["rate"].items()]
    s = ("## Rate: exact tier against the anchors\n\nbpb over all messages of each input (total output "
         "bits / total UTF-8 bytes; rvqstream: the whole blob, header and checks included). "
         "`zstd-19+dict stream`: one compression context per input, flushed after each message."
         + (f" `{FLOAT_EXACT}`: the exact tier of the float bundle (the previous default) on the same "
            f"messages, the baseline; the ratio is the {_model_name(r)}'s." if FLOAT_EXACT in ours else "")
         + "\n\n")
    s += table(["input", "messages", "bytes", *(label[m] for m in ours), *ANCHORS, "ratio to zstd-19+dict"], rows)
    med = [[name, *(v["median_message_bpb"][m] for m in ours), *(v["median_message_bpb"][a] for a in ANCHORS),
            v["max_bytes_above_zstd_dict"], ", ".join(f"{k} {n}" for k, n in sorted(v["blob_modes"].items()))]
           for name, v in r["rate"].items() if "median_message_bpb" in v]
    s += ("\nMedian per-message bpb, the largest excess of a blob over zstd-19+dict (bytes) and blob modes "
          f"(both the {_model_name(r)}'s):\n\n")
    s += table(["input", *(label[m] for m in ours), *ANCHORS, "max bytes above zstd+dict", "blob modes"], med)

    names = list(r["rate"])
    methods = [*ours, *ANCHORS]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(names)), 4.5))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        ax.bar([j + (i - len(methods) / 2 + 0.5) * w for j in range(len(names))],
               [r["rate"][n]["bpb"][m] for n in names], w, label=label.get(m, m), color=ANCHOR_STYLE[m],
               edgecolor="black" if m in ours else None)
    ax.set_xticks(range(len(names)), [n.replace("test/", "") for n in names], rotation=20)
    ax.set_ylabel("bits per byte (bpb), lower is better")
    ax.set_title(f"Exact-tier rate per input: rvqstream ({_model_name(r)}"
                 + ("; float model as baseline" if FLOAT_EXACT in ours else "") + ") against the anchors")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)     # room for the legend above the bars
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return s + "\n" + _save(fig, out, "rate.png")


def wire_section(r: dict, out: Path) -> str:
    kinds = ["rvqstream frames", "rvqstream blob", "raw text", "zstd-19+dict text"]
    measured = ["rvqstream frames", "raw text", "zstd-19+dict text"]
    rows = [[name, v["messages"], *(v["bytes_per_message"][k] for k in kinds),
             *(v["bpb"][k] for k in kinds), v["rvqstream_frames_per_message"]]
            for name, v in r["wire"].items() if "bytes_per_message" in v]
    s = ("## Bytes on a gRPC stream per message\n\nComputed: protobuf + the 5-byte gRPC prefix of each "
         "message. `rvqstream frames`: the message as the stream encoder's frames, one "
         "`EncodeStreamResponse` each; `rvqstream blob`: one `CompressResponse`; raw and zstd-19+dict "
         "text: one `EncodeStreamResponse` frame carrying the whole message.\n\n")
    s += table(["input", "messages", *(f"{k} (B/msg)" for k in kinds), *(f"{k} (bpb)" for k in kinds),
                "frames/msg"], rows)
    s += "\nAll test sources together (bpb): " + ", ".join(
        f"{k} {v:.3f}" for k, v in r["wire"]["test (all sources)"]["bpb"].items()) + "\n"
    wm = r["wire_measured"]
    s += ("\nCounted on loopback: every TCP byte from server to client (HTTP/2 frames, window updates and "
          "pings included) over one encode stream per input, each message written as one chunk that ends "
          "it; rvqstream server against the pass-through server echoing the raw or zstd-19+dict text.\n\n")
    s += table(["input", "messages", *(f"{k} (B/msg)" for k in measured), *(f"{k} (bpb)" for k in measured)],
               [[name, v["messages"], *(v["bytes_per_message"][k] for k in measured),
                 *(v["bpb"][k] for k in measured)] for name, v in wm.items()])
    names = list(wm)
    bars = [(f"{k}, computed", r["wire"], k, None) for k in kinds] + \
        [(f"{k}, counted on loopback", wm, k, "//") for k in measured]
    colors = {"rvqstream frames": "tab:blue", "rvqstream blob": "tab:cyan", "raw text": "tab:gray",
              "zstd-19+dict text": "tab:purple"}
    fig, ax = plt.subplots(figsize=(max(9, 1.5 * len(names)), 4.5))
    w = 0.85 / len(bars)
    for i, (label, src, k, hatch) in enumerate(bars):
        ax.bar([j + (i - len(bars) / 2 + 0.5) * w for j in range(len(names))],
               [src[n]["bpb"][k] for n in names], w, label=label, color=colors[k], hatch=hatch,
               edgecolor="white" if hatch else None)
    ax.set_xticks(range(len(names)), [n.replace("test/", "") for n in names], rotation=20)
    ax.set_ylabel("bits on the wire per byte of text (bpb)")
    ax.set_title("gRPC stream bytes per message: computed (protobuf + gRPC prefix) and counted on loopback")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)     # room for the legend above the bars
    ax.legend(fontsize=7, ncols=2, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return s + "\n" + _save(fig, out, "wire.png")


def budget_section(r: dict, out: Path) -> str:
    b = r["budget"]
    if not b["rows"] or "bpb_batches" not in b["rows"][0]:
        return ""                      # rows in an older layout: nothing this section can draw
    zs = "zstd-19+dict stream"
    rates = sorted({row["rate_tokens_per_s"] for row in b["rows"]})
    budgets = [row["budget_ms"] for row in b["rows"] if row["rate_tokens_per_s"] == rates[0]]
    by = {(row["rate_tokens_per_s"], row["budget_ms"]): row for row in b["rows"]}
    rows = [["no limit" if bm is None else bm,
             *(x for rt in rates for x in (by[rt, bm]["bpb_batches"], by[rt, bm]["bpb_grpc"],
                                           by[rt, bm]["anchors_bpb_grpc"][zs], by[rt, bm]["ratio_to_zstd_stream"],
                                           f"{by[rt, bm]['text_bytes_per_flush']:.1f}"))] for bm in budgets]
    s = (f"## Rate against latency budget\n\n{b['messages']} test messages fed as one stream, word by word, "
         "at a steady token rate on a simulated clock. Flushes follow the server's rule: the first text of an "
         "idle stream goes at once; later text waits until the oldest text held reaches the budget minus the "
         "margin (5 ms + 5% of the budget); a message end flushes. bpb of the frame batches alone and of the "
         "gRPC stream (each batch one response: protobuf, 5-byte gRPC prefix, 9-byte HTTP/2 DATA frame "
         "header). The anchors carry the same text at the same flush points with the same framing; "
         f"`{zs}` is zstd -19 with the bundle's dictionary in one streaming context, flushed at each point. "
         "Ratio: rvqstream's gRPC bytes over the zstd stream's. Per-message anchors on the same messages "
         "(no framing): " + ", ".join(f"{k} {v:.3f}" for k, v in b["anchors_bpb"].items()) + ".\n\n")
    s += table(["budget (ms)", *(f"{c} @ {rt:.0f} tok/s" for rt in rates
                                 for c in ("batches bpb", "gRPC bpb", f"{zs} gRPC bpb", "ratio",
                                           "text B/flush"))], rows)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    finite = [bm for bm in budgets if bm is not None]
    for rt, ours, anchor in zip(rates, ("tab:blue", "tab:cyan", "navy"), ("tab:pink", "tab:purple", "tab:red")):
        ax.plot(finite, [by[rt, bm]["bpb_grpc"] for bm in finite], "o-", color=ours,
                label=f"rvqstream, {rt:.0f} tokens/s")
        ax.plot(finite, [by[rt, bm]["anchors_bpb_grpc"][zs] for bm in finite], "s--", color=anchor,
                label=f"{zs}, {rt:.0f} tokens/s")
        if None in budgets:
            ax.axhline(by[rt, None]["bpb_grpc"], color=ours, ls=":", lw=1,
                       label=f"rvqstream, no budget limit, {rt:.0f} tokens/s")
            ax.axhline(by[rt, None]["anchors_bpb_grpc"][zs], color=anchor, ls=":", lw=1,
                       label=f"{zs}, no budget limit, {rt:.0f} tokens/s")
    ax.set_xscale("log")
    _plain_ticks(ax, finite)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("latency budget (ms, log scale)")
    ax.set_ylabel("bits on a gRPC stream per byte of text (bpb)")
    ax.set_title("Exact-tier rate on a gRPC stream against latency budget, fed at LLM speed")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3, which="both")
    return s + "\n" + _save(fig, out, "budget.png")


def speed_section(r: dict, out: Path) -> str:
    sp = r["speed"]
    bps = sp["bytes_per_s"]
    rows = [[m, *(f"{v[mode][op] / 1e3:,.1f}" for mode in ("1 thread", "all cores") for op in ("encode", "decode"))]
            for m, v in bps.items()]
    s = (f"## Speed\n\n{sp['messages']} test messages ({sp['bytes']} bytes), one blob per message; kB/s of "
         f"text (1 kB = 1000 B). all cores = {sp['cores']} worker processes.\n\n")
    s += table(["method", "encode 1 thread", "decode 1 thread", f"encode {sp['cores']} cores",
                f"decode {sp['cores']} cores"], rows)
    s += (f"\nModel load (fresh interpreter, median of 3): import {sp['model_load']['import_s']:.3f} s, "
          f"bundle load {sp['model_load']['load_s']:.3f} s. Peak RSS of a client process that loads the "
          f"model and decodes {sp['decoding_client']['messages_decoded']} blobs: "
          f"{sp['decoding_client']['peak_rss_bytes'] / MB:.1f} MiB.\n")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    labels = [f"{op}, {mode}" for mode in ("1 thread", "all cores") for op in ("encode", "decode")]
    w = 0.8 / len(bps)
    for i, (m, v) in enumerate(bps.items()):
        vals = [v[mode][op] for mode in ("1 thread", "all cores") for op in ("encode", "decode")]
        ax.bar([j + (i - len(bps) / 2 + 0.5) * w for j in range(len(labels))], vals, w, label=m,
               color=ANCHOR_STYLE.get(m, ANCHOR_STYLE["zstd-19+dict"] if "zstd" in m else None))
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("bytes of text per second (B/s, log scale)")
    ax.set_title(f"Encode and decode throughput, 1 thread and {sp['cores']} cores")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    return s + "\n" + _save(fig, out, "speed.png")


def service_section(r: dict, out: Path) -> str:
    sv = r["service"]
    first = sv[0]
    rows = [[x["server"], x["streams"], x["latency_ms"]["p50"], x["latency_ms"]["p95"], x["latency_ms"]["p99"],
             f"{x['throughput_tokens_per_s']:.0f}", f"{x['streams'] * x['rate_tokens_per_s']:.0f}",
             f"{100 * x['degraded_fraction']:.1f}", x["frames"], f"{x['server_peak_rss_bytes'] / MB:.0f}",
             "-" if x["streams_with_text_lost"] is None else x["streams_with_text_lost"],
             x["streams_failed"]] for x in sv]
    s = (f"## Service on loopback\n\nEach stream: exact tier, words at {first['rate_tokens_per_s']:.0f} tokens/s "
         f"for {first['seconds']:.0f} s, latency budget {first['budget_ms']} ms; server with "
         f"{first['workers']} model threads. Latency: frame receipt minus the write of its first word (ms). "
         "The pass-through server returns each chunk raw at once: the gRPC setup's own floor.\n\n")
    s += table(["server", "streams", "p50 (ms)", "p95 (ms)", "p99 (ms)", "delivered tokens/s",
                "offered tokens/s", "degraded frames (%)", "frames", "server peak RSS (MiB)",
                "streams with text lost", "streams failed"], rows)
    s += "\nServer peak RSS: the largest VmHWM seen while the streams ran (sampled every 0.2 s).\n"
    errors = sorted({(x["server"], e) for x in sv for e in x["errors"]} |
                    {(x["server"], (f"server process exited during the {x['streams']}-stream run, "
                                   f"code {x['server_exit_code_during_run']}"))
                     for x in sv if x["server_exit_code_during_run"] is not None})
    if errors:
        s += ("\nStreams that failed are left out of the latency and throughput figures. Errors the "
              "streams ended with:\n\n" + "".join(f"- {srv}: `{e}`\n" for srv, e in errors))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for server, color in (("rvqstream", "tab:blue"), ("pass-through", "tab:gray")):
        pts = [x for x in sv if x["server"] == server and x["latency_ms"]["p50"] is not None]
        n = [x["streams"] for x in pts]
        for q, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^:")):
            axes[0].plot(n, [x["latency_ms"][q] for x in pts], style, color=color, label=f"{server} {q}")
        axes[2].plot(n, [x["throughput_tokens_per_s"] for x in pts], "o-", color=color, label=server)
        if server == "rvqstream":
            axes[1].plot(n, [100 * x["degraded_fraction"] for x in pts], "o-", color=color, label=server)
        failed = [x["streams"] for x in sv if x["server"] == server and x["streams_failed"] == x["streams"]]
        if failed:
            axes[0].plot(failed, [first["budget_ms"]] * len(failed), "X", color="red", markersize=12,
                         label=f"{server}: every stream failed")
    n_all = sorted({x["streams"] for x in sv})
    axes[0].axhline(first["budget_ms"], color="red", ls="-.", label="latency budget")
    axes[2].plot(n_all, [k * first["rate_tokens_per_s"] for k in n_all], "k:", label="offered load")
    for ax, ylabel, title in ((axes[0], "frame latency (ms, log scale)", "Latency against streams"),
                              (axes[1], "degraded frames (%)", "Frames degraded to meet the budget"),
                              (axes[2], "delivered tokens per second", "Throughput against streams")):
        ax.set_xscale("log")
        _plain_ticks(ax, n_all)
        ax.set_xlabel("concurrent streams (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, max(1.0, *(100 * x["degraded_fraction"] for x in sv)) * 1.1)
    axes[2].set_yscale("log")
    return s + "\n" + _save(fig, out, "service.png")


LIVE_KINDS = ("rvqstream", "raw text", "zstd-19+dict stream")
LIVE_STYLE = {"rvqstream": "tab:blue", "raw text": "tab:gray", "zstd-19+dict stream": "tab:pink"}


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def live_section(r: dict, out: Path) -> str:
    if "live" not in r:
        return ""
    lv = r["live"]
    pl, wire, fan = lv["plan"], lv["wire"], lv["fanout"]
    s = (f"## Live code streams on channels\n\nMessages from `{lv['texts']}`, written word by word at "
         f"{pl['rate_tokens_per_s']:.0f} tokens/s by SDK stream writers into channels of a real `rvqstream serve` "
         "on loopback.\n\n"
         f"Wire cost against the latency budget: {pl['wire_producers']} producers, each into its own channel, "
         f"{pl['wire_per_producer']} message(s) each; each channel followed live by one subscriber through a "
         "counting TCP proxy. Counted: every byte from the server to the subscriber on its TCP connection "
         "(HTTP/2 frame headers, gRPC prefixes, protobuf fields, message announcements, pings). The "
         "subscriber's frame batches give the flush points; the anchors carry the same text cut at the same "
         "points, one gRPC message per flush, through the pass-through server and the same kind of proxy: raw "
         "UTF-8, and zstd -19 with the bundle's dictionary in one streaming context per stream flushed at each "
         "point. Framing per flush: wire bytes minus the coded batch (or zstd) bytes, over the flushes. "
         "Exact: every subscriber's decoded text equals what was written.\n\n")
    s += table(["budget (ms)", "flushes", "text B/flush",
                *(f"{k} (B/msg)" for k in LIVE_KINDS), "ratio to zstd stream", "framing B/flush",
                "zstd stream framing B/flush", "exact"],
               [[w["budget_ms"], w["flushes"], f"{w['text_bytes_per_flush']:.1f}",
                 *(f"{w['wire_bytes_per_message'][k]:.1f}" for k in LIVE_KINDS), w["ratio_to_zstd_stream"],
                 f"{w['framing_bytes_per_flush']:.1f}", f"{w['anchor_framing_bytes_per_flush']:.1f}",
                 "yes" if w["decoded_exact"] else "NO"] for w in wire])
    budgets = [w["budget_ms"] for w in wire]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for k in LIVE_KINDS:
        axes[0].plot(budgets, [w["wire_bytes_per_message"][k] for w in wire], "o-", color=LIVE_STYLE[k], label=k)
    axes[1].plot(budgets, [w["framing_bytes_per_flush"] for w in wire], "o-", color=LIVE_STYLE["rvqstream"],
                 label="rvqstream")
    axes[1].plot(budgets, [w["anchor_framing_bytes_per_flush"] for w in wire], "s--",
                 color=LIVE_STYLE["zstd-19+dict stream"], label="zstd-19+dict stream (pass-through server)")
    axes[1].axhline(16, color="black", ls="--", lw=1, label="16 B")
    axes[1].axhline(14, color="black", ls=":", lw=1, label="HTTP/2 + gRPC floor (14 B)")
    for ax, ylabel, title in ((axes[0], "bytes on the wire per message", "Wire bytes per message"),
                              (axes[1], "framing bytes per flush", "Framing per flush")):
        ax.set_xscale("log")
        _plain_ticks(ax, budgets)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("latency budget (ms, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(f"Live channel stream at {pl['rate_tokens_per_s']:.0f} tokens/s: TCP bytes to one subscriber")
    s += "\n" + _save(fig, out, "live.png")
    s += (f"\nLatency with fan-out: budget {pl['budget_ms']} ms; subscribers in {pl['subscriber_processes']} child "
          "processes follow with the SDK and decode locally (the subscribers of one process share its "
          "connection). A word's latency: the moment a subscriber's decoded text first covers its last "
          "character minus the moment the producer wrote it (one machine, one monotonic clock). Byte-exact: "
          "the subscriber's text equals what was written.\n\n")
    s += table(["producers -> subscribers each", "words", "p50 (ms)", "p90 (ms)", "p99 (ms)", "max (ms)",
                "p99 within budget + 30 ms", "byte-exact subscribers"],
               [[f"{f['producers']} -> {f['subscribers_per_producer']}", f["words_measured"],
                 *(_ms(f["latency_ms"][q]) for q in ("p50", "p90", "p99", "max")),
                 "yes" if f["p99_within_budget_plus_30ms"] else "no",
                 f"{f['subscribers_byte_exact']}/{f['subscribers']}"] for f in fan])
    return s


def determinism_section(r: dict) -> str:
    d = r["determinism"]
    rows = [[x["threads"], x["optimization"], x["integrity_check_failures"], x["silent_mismatches"]]
            for x in d["runs"]]
    batches = f" in {d['batches']} frame batches" if "batches" in d else ""
    return (f"## Determinism across ONNX Runtime settings\n\n{d['messages']} test messages, {d['frames']} "
            f"exact-tier frames{batches} ({d['model_frames']} coded by the model), encoded once with the default "
            "settings (1 thread, all optimizations), decoded under each setting below. Mismatches count "
            "messages.\n\n" + table(["intra-op threads", "graph optimization", "integrity-check failures",
                                     "silent mismatches"], rows))


INTLM_RATE_LABEL = {"all": "all: the old six sources together", "new": "new: the new sources together",
                    "everything": "everything: every source"}
ROUND_TRIP_LABEL = {"messages": "messages", "failed_decompress": "failed, one at a time (decompress)",
                    "failed_decompress_many": "failed, 64 at once (decompress_many)", "encode_s": "encode (s)",
                    "decompress_s": "decompress (s)", "decompress_many_s": "decompress_many (s)",
                    "cuda_blobs_equal_cpu_blobs": "CUDA blobs equal to the CPU's",
                    "failed_cpu_blobs_on_cuda": "failed, the CPU's blobs on CUDA",
                    "failed_cuda_blobs_on_cpu": "failed, CUDA's blobs on the CPU"}


def _intlm_rate_order(rate: dict) -> list[str]:
    """The old six sources, ``all`` (them together), each new source, ``new`` (them together), then
    ``everything``."""
    groups = {"all", "new", "everything"}
    old = [k for k in OLD_SOURCES if k in rate]
    new = sorted(k for k in rate if k not in groups and k not in OLD_SOURCES)
    return [*old, *(["all"] if "all" in rate else []), *new, *(["new"] if "new" in rate else []),
            *(["everything"] if "everything" in rate else [])]


def intlm_check_section(d: dict, where: str) -> str:
    """The integer model's whole-split check (bench/intlm_check.py's results)."""
    if "error" in d:
        return f"## The integer model over the test split\n\nThe check failed in this run: {d['error']}.\n"
    s = (f"## The integer model over the test split: its tables every way, round trips, rate\n\n"
         f"From {where}: `bench/intlm_check.py`, {d['messages']} test messages, {d['contexts']} contexts (the "
         f"start symbol and up to 240 tokens each, as the codec cuts them), {d['tables']} tables; model "
         f"`{d['model_id'][:12]}…`" + (f", ONNX Runtime {d['ort_version']}" if "ort_version" in d else "")
         + (f" on {d['cpu']}" if "cpu" in d else "") + ". Every context's tables are computed each way "
         "below and hashed; a mismatch is a context whose tables differ from the numpy reference's. "
         "Frames: 16 tokens a call; steps: one token a call; rows: one token a call for 64 contexts at once.\n\n")
    ways = d.get("ways", {})
    if ways:
        s += table(["way", "contexts", "mismatched", "seconds", "tables/s"],
                   [[name, w.get("contexts", "-"), w.get("mismatched", "(the reference)"), f"{w['seconds']:.1f}",
                     f"{d['tables'] / w['seconds']:,.0f}" if w.get("seconds") else "-"] for name, w in ways.items()])
        bad = sum(w.get("mismatched", 0) for w in ways.values())
        s += f"\nMismatched contexts over all {sum('mismatched' in w for w in ways.values())} ways: {bad}.\n"
    else:
        s += "The ways were skipped in this run (`--skip-ways`).\n"
    rt = d.get("round_trips")
    if rt:
        s += ("\nRound trips: each message's blob (coded frame by frame) decoded one blob at a time "
              "(`decompress`) and all at once, 64 rows a step (`decompress_many`); a failure is a text other "
              "than the original.\n\n")
        s += table([ROUND_TRIP_LABEL.get(k, k.replace("_", " ")) for k in rt],
                   [[f"{v:.1f}" if isinstance(v, float) else v for v in rt.values()]])
    rate = d.get("rate")
    if rate:
        s += ("\nRate per source: bpb of the integer model's blobs (every byte counted) against zstd -19 with "
              "the bundle's dictionary, one message at a time; ratio: the blobs' bytes over zstd's.\n\n")
        s += table(["source", "messages", "bytes", "integer model (bpb)", "zstd-19 + dict (bpb)", "ratio"],
                   [[INTLM_RATE_LABEL.get(k, k), rate[k]["messages"], rate[k]["bytes"], float(rate[k]["bpb"]),
                     float(rate[k]["zstd19_dict_bpb"]), float(rate[k]["ratio"])] for k in _intlm_rate_order(rate)])
    return s


EDGE_BASELINE = {"decode": "float model (previous bundle), one at a time", "encode": "float model encode, one at a time"}


def edge_decode_section(d: dict, where: str) -> str:
    """Edge decode speed on one core (bench/edge_decode.py's results)."""
    if "error" in d:
        return f"## Edge decode on one core\n\nThe measurement failed in this run: {d['error']}.\n"
    cores = d.get("cpu_affinity", [])
    pinned = (f"pinned to core {cores[0]}" if len(cores) == 1 else
              f"NOT pinned to one core ({len(cores)} cores allowed)")
    base_ok = all(b in d["kB_per_s"] for b in EDGE_BASELINE.values())
    s = (f"## Edge decode on one core\n\nFrom {where}: `bench/edge_decode.py`, {d['messages']} test messages "
         f"({d['bytes']} bytes), the process {pinned}, ONNX Runtime on 1 thread. kB/s of text (1 kB = 1000 B), "
         "median of the repeats; every output checked against the text. The float model (the previous "
         "bundle) is the baseline: it decodes one blob at a time"
         + ("; the last column is each way's speed over the float model's for the same operation "
            "(encode against its encode, the rest against its decode)" if base_ok else "") + ".\n\n")
    kb = d["kB_per_s"]
    rows = [[k, f"{v:,.2f}", *([f"{v / kb[EDGE_BASELINE['encode' if 'encode' in k else 'decode']]:.2f}x"]
                                if base_ok else [])] for k, v in kb.items()]
    return s + table(["way", "kB/s", *(["against the float model"] if base_ok else [])], rows)


def step_cost_section(d: dict, where: str) -> str:
    """One integer-model step's cost on one core (bench/step_cost.py's results)."""
    s = (f"## One integer-model step on one core\n\nFrom {where}: `bench/step_cost.py`, `{d['graph']}` "
         f"({d['graph_nodes']} nodes) on ONNX Runtime {d['onnxruntime']}'s CPU provider, 1 thread, cores "
         f"{d['cpu_affinity']}; median of the calls. B rows, S new tokens a row, T cached slots. The op shares "
         "are kernel time from ONNX Runtime's profiler.\n\n")
    rows = [[name, f"{v['ms_per_call']:.2f}", f"{v['us_per_token']:.1f}",
             ", ".join(f"{op} {share:.0%}" for op, share in list(v["kernel_time_by_op"].items())[:4])]
            for name, v in d["shapes"].items()]
    lookups = ", ".join(f"`{k}` {v} ns" for k, v in d["table_lookup_ns_per_element"].items())
    s += (table(["shape", "ms a call", "us a token", "largest op shares"], rows)
          + f"\nA table lookup, an element at a time (255-entry int32 table): {lookups}.\n")
    if bound := d.get("depth_bound"):
        shapes = [k for k in next(iter(bound["by_depth"].values())) if k != "graph_nodes"]
        rows = [[depth, v["graph_nodes"], *(f"{v[k]['us_per_token']:.1f} us, {v[k]['kB_per_s_at_most']:.1f} kB/s"
                                            for k in shapes)]
                for depth, v in bound["by_depth"].items()]
        s += ("\nThe graph cut to its first L layers (a shallower model of this family), alone: us a token and "
              f"the kB/s of text that allows at most ({bound['bytes_per_token']} bytes a token).\n\n"
              + table(["layers", "graph nodes", *shapes], rows))
    return s


def group_cost_section(d: dict, where: str) -> str:
    """The server's model-thread work a token (bench/group_cost.py's results)."""
    dec = d["decode_one_at_a_time_kB_per_s"]
    return (f"## A model thread's group on one core\n\nFrom {where}: `bench/group_cost.py`, {d['streams']} "
            f"streams' flushes run as one group ({d['tokens_a_group']:.0f} tokens): {d['us_a_token']:.1f} us a "
            f"token, {d['us_a_token_outside_model_calls']:.1f} of them outside the model calls. Decoding one "
            f"message at a time ({d['messages']} messages) with the codec that ran the groups: "
            f"{dec['after groups']:.2f} kB/s; with a fresh codec: {dec['fresh codec']:.2f} kB/s.\n")


def _own_or_file(results: dict, key: str, out: Path) -> tuple[dict | None, str]:
    """The run's own ``key`` results, else those of ``<out>/<key>.json`` (a run of its own), else None."""
    if results.get(key):
        return results[key], "this run"
    f = out / f"{key}.json"
    if f.exists():
        return json.loads(f.read_text()), f"`{f.name}` (a run of its own, not this one)"
    return None, ""


def _from_file(r: dict, key: str) -> str:
    return "" if r.get("_where", {}).get(key, "this run") == "this run" else f"; from `{key}.json`, not this run"


def headline_section(r: dict) -> str:
    """One table of the figures a reader looks at first, all taken from the sections below."""
    rows = []
    for name in ("test (all sources)", "test (the old six sources)", "test (new sources)"):
        if name in r["rate"]:
            bpb = r["rate"][name]["bpb"]
            beside = [f"{a} {bpb[a]:.3f}" for a in (FLOAT_EXACT, *ANCHORS) if a in bpb]
            rows.append([f"exact tier ({_model_name(r)}), {name.removeprefix('test (').rstrip(')')} (bpb)",
                         f"{bpb[OURS]:.3f}", ", ".join(beside)])
    sp = r["speed"]["bytes_per_s"]
    for m in sp:
        rows.append([f"{m}: encode / decode, 1 thread (kB/s)",
                     f"{sp[m]['1 thread']['encode'] / 1e3:,.1f} / {sp[m]['1 thread']['decode'] / 1e3:,.1f}", ""])
    top = sorted({y["streams"] for y in r["service"]})[-2:]
    for x in r["service"]:
        if x["streams"] in top:
            rows.append([f"service, {x['streams']} streams, {x['server']}: p50 / p99 (ms)",
                         " / ".join("-" if x["latency_ms"][q] is None else f"{x['latency_ms'][q]:.1f}"
                                    for q in ("p50", "p99")),
                         f"degraded frames {100 * x['degraded_fraction']:.1f}%, "
                         f"{x['throughput_tokens_per_s']:.0f} of {x['streams'] * x['rate_tokens_per_s']:.0f} tokens/s"
                         + (f"; {x['streams_failed']} of {x['streams']} streams failed" if x["streams_failed"] else "")])
    lv = r.get("live")
    if lv:
        for w in lv["wire"]:
            if w["budget_ms"] in (200, 1000):
                per_msg = w["wire_bytes_per_message"]
                beside = (f"{per_msg['rvqstream']:.0f} against {per_msg['zstd-19+dict stream']:.0f} B per message, "
                          f"{w['text_bytes_per_flush']:.0f} B of text per flush")
                rows.append([f"live channel stream, budget {w['budget_ms']} ms: wire bytes / zstd-19+dict stream",
                             f"{w['ratio_to_zstd_stream']:.3f}", beside])
        fan = [f for f in lv["fanout"] if f["latency_ms"]["p99"] is not None]
        if fan:
            f = max(fan, key=lambda f: f["latency_ms"]["p99"])
            exact = sum(x["subscribers_byte_exact"] for x in lv["fanout"])
            total = sum(x["subscribers"] for x in lv["fanout"])
            beside = (f"{f['producers']} producer(s) -> {f['subscribers_per_producer']} subscriber(s) each; "
                      f"p50 {f['latency_ms']['p50']:.0f} ms; {exact}/{total} subscribers byte-exact "
                      "over all fan-out runs")
            rows.append([f"live fan-out, worst p99 (ms), budget {f['budget_ms']} ms",
                         f"{f['latency_ms']['p99']:.0f}", beside])
    d = r["determinism"]
    bad = sum(x["integrity_check_failures"] + x["silent_mismatches"] for x in d["runs"])
    rows.append(["determinism: mismatched messages", str(bad),
                 f"{len(d['runs'])} ONNX Runtime settings x {d['messages']} messages"])
    ic = r.get("intlm_check")
    if ic and "error" in ic:
        rows.append(["integer model, whole-split check", "FAILED", ic["error"]])
    elif ic:
        counted = [w for w in ic.get("ways", {}).values() if "mismatched" in w]
        rt = ic.get("round_trips", {})
        if counted:
            rows.append(["integer model, tables every way against the reference: mismatched contexts",
                         str(sum(w["mismatched"] for w in counted)),
                         f"{len(counted)} ways x {ic['contexts']} contexts of {ic['messages']} test messages"
                         + _from_file(r, "intlm_check")])
        if rt:
            rows.append(["integer model round trips: failed one at a time / 64 at once",
                         f"{rt['failed_decompress']} / {rt['failed_decompress_many']}",
                         f"{rt['messages']} messages" + _from_file(r, "intlm_check")])
        for k in ("all", "new"):
            if k in ic.get("rate", {}):
                v = ic["rate"][k]
                rows.append([f"integer model, {INTLM_RATE_LABEL[k]}: bytes over zstd-19 + bundle dictionary",
                             f"{float(v['ratio']):.3f}",
                             f"{float(v['bpb']):.3f} against {float(v['zstd19_dict_bpb']):.3f} bpb, "
                             + f"{v['messages']} messages" + _from_file(r, "intlm_check")])
    ed = r.get("edge_decode")
    if ed and "error" in ed:
        rows.append(["edge decode on one core", "FAILED", ed["error"]])
    elif ed:
        kb = ed["kB_per_s"]
        ways = [k for k in kb if k.startswith("integer model,")]
        base = kb.get(EDGE_BASELINE["decode"])
        rows.append(["edge decode on one core, integer model (kB/s): "
                     + " / ".join(k.removeprefix("integer model, ") for k in ways),
                     " / ".join(f"{kb[k]:,.1f}" for k in ways),
                     (f"float model (previous bundle) one at a time {base:,.1f} kB/s; " if base else "")
                     + f"{ed['messages']} messages, cores allowed: {len(ed.get('cpu_affinity', []))}"
                     + _from_file(r, "edge_decode")])
    return "## Headline\n\n" + table(["figure", "value", "beside it"], rows)


def _plain_ticks(ax, values) -> None:
    """Ticks of a log axis at ``values``, written as plain numbers."""
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def write_report(results: dict, out: Path) -> None:
    """``out``/REPORT.md and its PNGs from one run's ``results`` (the integer model's check and edge
    decode from ``out``'s json files when the run has none)."""
    results = dict(results)
    own = {}
    for key in ("intlm_check", "edge_decode", "step_cost", "group_cost", "semantic_codes", "scale_out"):
        results[key], own[key] = _own_or_file(results, key, out)
    results["_where"] = own
    m, c, model = results["machine"], results["commit"], results["model"]
    baseline = results.get("float_model")
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items())
    parts = [
        f"# rvqstream scoreboard ({results['mode']} mode)\n",
        f"- command: `{results['command']}`, started {results['started_utc']}; {secs}",
        (f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / (1 << 30):.0f} GiB; {m['platform']}; "
        f"Python {m['python']}, onnxruntime {m['onnxruntime']}, zstandard {m['zstandard']}, brotli {m['brotli']}"),
        f"- commit: `{c['sha']}`" + (" (tracked files modified)" if c["tracked_files_modified"] else ""),
        f"- model (exact tier, the default bundle): `{model['model_id']}`, bundle {model['bundle_bytes'] / MB:.2f} MiB, "
        + ", ".join(f"{k}={model['config'][k]}" for k in CONFIG_KEYS if k in model["config"]),
        *([f"- the float model (the previous default bundle, `rvqstream/models/artifacts/semantic/`; its exact "
           f"tier is the rate baseline): `{baseline['model_id']}`, bundle {baseline['bundle_bytes'] / MB:.2f} MiB, "
           + ", ".join(f"{k}={baseline['config'][k]}" for k in CONFIG_KEYS if k in baseline["config"])]
          if baseline else []),
        ("- every figure below comes from this run (unless a section names a json file of its own); all of them "
         "are in `results.json`.\n"),
        headline_section(results), rate_section(results, out), wire_section(results, out), speed_section(results, out),
        budget_section(results, out), service_section(results, out), live_section(results, out),
        determinism_section(results),
        *([intlm_check_section(results["intlm_check"], own["intlm_check"])] if results["intlm_check"] else []),
        *([edge_decode_section(results["edge_decode"], own["edge_decode"])] if results["edge_decode"] else []),
        *([step_cost_section(results["step_cost"], own["step_cost"])] if results["step_cost"] else []),
        *([group_cost_section(results["group_cost"], own["group_cost"])] if results["group_cost"] else []),
        *([codes_section(results["semantic_codes"], own["semantic_codes"])] if results.get("semantic_codes") else []),
        *([scale_section(results["scale_out"], own["scale_out"])] if results.get("scale_out") else []),
    ]
    (out / "REPORT.md").write_text("\n".join(parts))


CONFIG_KEYS = ("kind", "d_model", "n_layers", "stages", "codes", "frame")


def append_runs_of_their_own(out: Path) -> None:
    """Append to ``out``/REPORT.md the attacks and fuzzing sections of ``attacks.json`` and
    ``fuzz.json`` when they are there (bench/attacks.py, bench/fuzz.py: runs of their own)."""
    from attacks import report_section as attacks_section
    from fuzz import report_section as fuzz_section
    for name, section in (("attacks.json", attacks_section), ("fuzz.json", fuzz_section)):
        if (f := out / name).exists():
            with open(out / "REPORT.md", "a") as report:
                report.write("\n" + section(json.loads(f.read_text())))


def main() -> None:
    ap = argparse.ArgumentParser(description="REPORT.md and its plots again from a scoreboard run's results.json "
                                 "and the json files beside it, without running anything")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    write_report(json.loads((args.out / "results.json").read_text()), args.out)
    append_runs_of_their_own(args.out)
    print(f"wrote {args.out}/REPORT.md")


if __name__ == "__main__":
    main()
