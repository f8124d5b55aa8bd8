"""The scoreboard's section on message codes, from bench/semantic_codes.py's results."""

from __future__ import annotations


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]) + "\n"


def _pair(v: list[float]) -> str:
    return f"{v[0]:.3f} / {v[1]:.3f}"


def report_section(d: dict, where: str = "this run") -> str:
    """Markdown: search quality curves, dedup, the text tier against an exact prefix, search
    latency and sync bytes."""
    if "error" in d:
        return f"## Message codes\n\nThe measurement failed in this run: {d['error']}.\n"
    out = [(f"## Message codes\n\nFrom {where}: `bench/semantic_codes.py`, code model `{d['code_model_id'][:12]}` "
           f"({d['stages']} stages of 8 bits). Queries are the first dozen words of each held-out message, the "
           "database the messages; cells are recall@10 (overlap of the top-10 sets) / 1-recall@10 (the "
           "reference's nearest within the method's ten).\n")]
    for name, s in d["search_quality"].items():
        for ref in ("teacher", "wordllama"):
            label = "the float teacher's" if ref == "teacher" else "WordLlama's (independent)"
            bits = sorted({int(b) for c in s["curves"].values() for b in c}, key=int)
            rows = [[m, *(_pair(c[str(b)][ref]) if str(b) in c else _pair(c[b][ref]) for b in bits)]
                    for m, c in s["curves"].items()]
            rows += [[f"{row} (ceiling)", *([_pair(v[ref])] + [""] * (len(bits) - 1))]
                     for row, v in s["ceilings"].items()]
            out.append(f"### {name}: {s['messages']} messages, against {label} neighbours\n\n"
                       + _table(["method", *(f"{b} bits" for b in bits)], rows))
    dd = d["dedup"]
    out.append(
        f"### Near-duplicates\n\n{dd['positives']} generated near-duplicates of held-out messages against the "
        f"originals as the server's recent window holds them, {dd['negatives']} other held-out messages as "
        f"negatives. At the shipped threshold {dd['threshold']:.4f}: precision {dd['precision']:.3f}, recall "
        f"{dd['recall']:.3f} (exact-hash dedup: precision {dd['exact_hash']['precision']:.2f}, recall "
        f"{dd['exact_hash']['recall']:.3f}). The same test against the originals' 128-bit codes alone, at the "
        f"threshold that keeps recall at 0.8: precision/recall {_pair(dd['codes_only']['precision_recall'])}.\n\n"
        + _table(["kind of edit", "recall"], [[k, f"{v:.3f}"] for k, v in dd["recall_by_kind"].items()]))
    if "text_tier" in d:
        tt = d["text_tier"]
        rows = [[k.split("_")[0], f"{v['semantic']['bpb']:.3f}", f"{v['semantic']['cosine']:.3f}",
                 f"{v['exact_prefix']['bpb']:.3f}", f"{v['exact_prefix']['cosine']:.3f}"]
                for k, v in tt.items() if k.endswith("_stages")]
        out.append(f"### The frame-level semantic text tier against an exact prefix at the same bytes\n\n"
                   f"{tt['messages']} held-out messages; meaning kept = WordLlama cosine of the decoded text to the "
                   f"original (an unrelated message: {tt['unrelated_cosine']:.3f}). The tier is retired (its data "
                   "still decodes, none is written): its blobs here are version-3 blobs made as its encoder made "
                   "them (bench/legacy_semantic.py).\n\n"
                   + _table(["stages", "semantic bpb", "semantic cosine", "exact prefix bpb", "exact prefix cosine"],
                            rows))
    rows = [[f"{v['codes']:,}", v["stages"], f"{v['median_ms']:.1f}", f"{v['max_ms']:.1f}"]
            for v in d["latency"].values()]
    out.append("### Search latency, one core\n\n`SemanticIndex.search` (the server's Search runs the same), "
               "k = 10, median and max of the queries.\n\n" + _table(["codes", "stages", "median ms", "max ms"], rows))
    if "server_search" in d:
        ss = d["server_search"]
        out.append(f"A real server's `Search` over a channel of {ss['codes']:,} messages with codes (2 cores, gRPC "
                   f"on loopback; its first search read the codes from the log in {ss['first_search_s']:.1f} s): "
                   f"by code, median {ss['by_code']['median_ms']:.1f} ms (max {ss['by_code']['max_ms']:.1f}); by "
                   f"text, the query embedded on the server, median {ss['by_text']['median_ms']:.1f} ms (max "
                   f"{ss['by_text']['max_ms']:.1f}).\n")
    sy = d["sync"]
    rows = [[k.split("_")[1], v["pages"], f"{v['bytes_per_message']:.2f}"] for k, v in sy.items()
            if k.startswith("sync_")]
    out.append(f"### Codes-only sync\n\n{sy['messages']} messages published to a real server, then `SyncCodes` "
               f"from offset 0: gRPC bytes a message, 5-byte message prefixes included (Subscribe, the full "
               f"messages: {sy['subscribe_bytes_per_message']:.1f} bytes a message).\n\n"
               + _table(["stages", "responses", "bytes a message"], rows))
    return "\n".join(out)
