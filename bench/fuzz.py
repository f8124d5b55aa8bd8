"""Fuzzing rvqstream: its parsers in process (hypothesis generating mutations of valid inputs,
and random ones; not coverage-guided), then its gRPC surface on a real server (bench/fuzz_grpc.py).

Parser targets (docs/formats.md), each run as hypothesis runs with fixed seeds (generation only,
an input generated again is not run again), over both shipped models, each target decoding with
the codec that made its seeds: the integer model (the default bundle: exact tier only, no RVQ
stages) for the exact-tier and fallback forms, the float model (``bundle.SEMANTIC_DIR``) for the
forms that need RVQ codes:

- ``blob/<form>-v<version>``: ``Codec.decompress`` on valid blobs of every form and readable
  format version (2, 3, 4; every blob written is version 4), mutated (bit flips, byte sets,
  inserts, deletes, cuts, splices): ``exact``, ``zstd`` and ``raw`` from the integer model,
  ``exact-rvq`` (exact with RVQ stages) from the float model, and ``semantic``, the retired
  tier's blobs of versions 2 and 3 (made as its encoder made them, bench/legacy_semantic.py;
  the float model reads them); ``blob/random``: random bytes; ``blob/random-payload``: a valid
  header of any mode, readable version and model before random bytes; ``blob/cross``: each
  model's valid blobs given to the other (as made they must fail with a ``CodecError``;
  retagged with the other model's tag, their checks must reject them); no SEMANTIC blob of
  version 4 may decode;
- ``batch/<kind>``: ``codec.decoder(tier).push`` over a valid sequence of frame batches with
  one batch mutated (and sometimes a batch dropped, repeated or swapped): exact-tier model
  frames and fallback frames only (integer model), exact-tier frames with RVQ stages (float
  model), and the retired semantic tier's committed streams (tests/data/semantic_v3.json, read
  by the float model); ``batch/random``: random bytes as the first batch;
- ``store``: the channel log API (``SQLiteLogStore``: append, append_part, abort, retain and
  every read) on a real SQLite file with adversarial values, against a reference model of the
  log: every result and every read-back must match it;
- ``tokenizer``: the byte-exact round trip of arbitrary Unicode (no ``<eos>`` id, ``split_final``
  pieces that reassemble and tokenize the same whatever text follows).

The outcome of each input: ok, an expected error (a ``CodecError`` subclass; for the store,
``PartConflict`` where the reference predicts one, or a value SQLite cannot hold), an untyped
error (a bare ``ValueError``/``EOFError``: counted apart and listed by message), or a crash
(anything else: input and traceback recorded). A hang is an input that takes more than
``HANG_S`` seconds. Model-heavy inputs are kept small (exact payloads of at most a few dozen
bytes) so that the fast paths (headers, fallback forms, batch structure) get millions of inputs.

Wrong results: mutants that decode without error to a text other than the original's, per form,
against what the form's check predicts (2^-bits of the mutants whose check was evaluated on a
differing text; ``CheckProbe`` sees the checks as the codec evaluates them). Forms without a
check (semantic, format-2 fallback blobs) and header mutations are reported apart.

Here: the command line, the run (parsers, then gRPC) and its results (``fuzz.json``), and the
report's section. The parts: bench/fuzz_parsers.py (the parser fuzzer and the tokenizer target),
bench/fuzz_blobs.py, bench/fuzz_batches.py, bench/fuzz_store.py (with bench/fuzz_store_model.py,
the log's reference model), bench/fuzz_inputs.py (mutation), bench/fuzz_tally.py (outcomes, hangs),
bench/fuzz_wrong_results.py (wrong-result rates and the check probe); bench/fuzz_grpc.py (the gRPC
fuzzer, with bench/fuzz_grpc_requests.py and bench/fuzz_grpc_server.py).

Run: ``python bench/fuzz.py [--minutes 45] [--grpc-minutes 30] [--out bench/results/fuzz.json]``
(``make bench-fuzz``); ``--minutes 1.5 --grpc-minutes 0.5`` for a short run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz_blobs import MAX_MODEL_PAYLOAD, TEXTS
from fuzz_grpc import HANG_GRACE_S, grpc_fuzz
from fuzz_grpc_requests import Material
from fuzz_grpc_server import Server
from fuzz_inputs import MODEL_PAYLOAD_BYTES, mutate
from fuzz_parsers import ParserFuzz
from fuzz_tally import HANG_S

from rvqstream.models import Codec
from rvqstream.models.bundle import SEMANTIC_DIR

ROOT = Path(__file__).resolve().parents[1]


def material(fuzz: ParserFuzz) -> Material:
    """What the gRPC fuzzer starts from: the parser fuzzer's seeds (of both models: the server
    holds both; the semantic-tier ones are data written before the tier's retirement, which the
    server still decodes)."""
    return Material([s.blob for seeds in fuzz.blobs.seeds.values() for s in seeds],
                    [(s.tier, list(s.batches)) for seqs in fuzz.batches.sequences.values() for s in seqs],
                    TEXTS, mutate)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout.strip()


def run(minutes: float, grpc_minutes: float, seed: int, concurrency: int) -> dict:
    """Parser fuzzing for ``minutes`` (this process, one core), then gRPC fuzzing of a real server
    for ``grpc_minutes`` -> results."""
    codec, rvq = Codec.load(), Codec.load(SEMANTIC_DIR)
    with tempfile.TemporaryDirectory(prefix="rvqstream-fuzz-") as tmp:
        print(f"parser fuzzing, {minutes:g} min:", flush=True)
        pf = ParserFuzz(codec, rvq, Path(tmp))
        try:
            pf.run(seconds=minutes * 60, seed=seed)
        finally:
            pf.store.close()
        parser = pf.summary()
        print(f"gRPC fuzzing, {grpc_minutes:g} min, {concurrency} calls at once:", flush=True)
        (Path(tmp) / "server").mkdir()
        server = Server(Path(tmp) / "server")
        try:
            asyncio.run(server.wait_ready())
            grpc_results = asyncio.run(grpc_fuzz(server.target, server.proc.pid, server.log, server.tokens,
                                                 material(pf), codec.model_id, seconds=grpc_minutes * 60,
                                                 seed=seed, concurrency=concurrency))
        finally:
            server.close()
    return {"model_id": codec.model_id, "model_ids": {c.kind: c.model_id for c in (codec, rvq)},
            "parser": parser, "grpc": grpc_results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=45.0, help="parser fuzzing time (one core)")
    ap.add_argument("--grpc-minutes", type=float, default=30.0, help="gRPC fuzzing time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=32, help="gRPC calls at once")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = ap.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    results = {"command": " ".join(["python", "bench/fuzz.py", *sys.argv[1:]]),
               "started_utc": started.isoformat(timespec="seconds"),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
               "commit": {"sha": _git("rev-parse", "HEAD"),
                          "tracked_files_modified": bool(_git("status", "--porcelain", "-uno"))},
               "settings": {"minutes": args.minutes, "grpc_minutes": args.grpc_minutes, "seed": args.seed,
                            "hang_s": HANG_S, "model_payload_bytes": MODEL_PAYLOAD_BYTES,
                            "max_model_seed_payload": MAX_MODEL_PAYLOAD},
               **run(args.minutes, args.grpc_minutes, args.seed, args.concurrency)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(report_section(results))
    print(f"wrote {args.out}")


# -- the report -------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]) + "\n"


def _rate(row: dict) -> list:
    if row["rate"] is None:
        return ["-", "-"]
    lo, hi = row["ci95"]
    return [f"{row['rate']:.2e}", f"[{lo:.1e}, {hi:.1e}]"]


def _models(r: dict) -> str:
    """The models a run fuzzed (runs before both bundles were fuzzed name one)."""
    ids = r.get("model_ids") or {"": r["model_id"]}
    return "; models " + ", ".join(f"{kind} `{mid[:12]}`".strip() for kind, mid in ids.items())


def report_section(r: dict) -> str:
    """The fuzzing section of bench/results/REPORT.md, from one run's results (``fuzz.json``)."""
    p, g = r["parser"], r["grpc"]
    modified = ", tracked files modified" if r["commit"]["tracked_files_modified"] else ""
    s = (f"## Fuzzing\n\nRun `{r['command']}` of {r['started_utc']} (commit `{r['commit']['sha'][:12]}`"
         f"{modified}; {r['machine']}){_models(r)}. Parsers: {p['inputs']:,} inputs in {p['seconds'] / 60:.1f} min "
         f"({p['inputs_per_s']:,.0f}/s), hypothesis runs over inputs mutated from valid ones (repeats "
         "skipped); an input is ok, an expected error (a `CodecError`; for the log, what its reference "
         "model predicts), an untyped error (a bare `ValueError`/`EOFError`), or a crash (anything "
         f"else); a hang takes over {r['settings']['hang_s']:g} s.\n\n")
    s += _table(["target", "inputs", "inputs/s", "ok", "expected errors", "untyped", "crashes", "hangs",
                 "slowest (s)", "contract violations"],
                [[name, f"{t['inputs']:,}", f"{t['inputs_per_s']:,.0f}", f"{t['ok']:,}",
                  ", ".join(f"{k} {v:,}" for k, v in t["expected"].items()) or "-", t["untyped"],
                  t["crashes"], t["hangs"], f"{t['slowest_input_s']:.3f}", t["contract_violations"]]
                 for name, t in p["targets"].items()])
    for name, t in p["targets"].items():
        listed = [*t["crash_list"].items(), *t["untyped_by_message"].items(), *t["violation_list"].items()]
        for what, entry in listed:
            s += f"\n- `{name}`: {what} ({entry['count']}x), e.g. `{json.dumps(entry['examples'][0])[:300]}`"
    rows = p["wrong_results"]
    s += ("\n\nWrong results: mutants (no splice with another valid input) that decoded without error "
          "to a text other than the original's. With a check, the rate is over the check's evaluations "
          "on a differing text (or message end), and the check's size predicts it (2^-bits; UTF-8 "
          "validation can only lower it); without one, over the mutants that decoded.\n\n")
    s += _table(["form", "check bits", "mutants", "decoded", "checked differing", "check passed", "wrong",
                 "rate", "95% interval", "predicted"],
                [[k, v["check_bits"] or "none", f"{v['mutants']:,}", f"{v['decoded']:,}",
                  "-" if v["checked_differing"] is None else f"{v['checked_differing']:,}",
                  "-" if v["check_passed_differing"] is None else v["check_passed_differing"],
                  v["wrong"], *_rate(v), f"{v['predicted']:.2e}" if v["predicted"] else "-"]
                 for k, v in rows.items() if " read as " not in k])
    read_as = [v for k, v in rows.items() if " read as " in k]
    checked = [v for v in read_as if v["check_bits"]]
    unchecked = [v for v in read_as if not v["check_bits"]]
    s += (f"\nHeader mutations that made a blob read as another valid form: "
          f"{sum(v['mutants'] for v in read_as):,}; as a form with a check, "
          f"{sum(v['wrong'] for v in checked)} wrong of {sum(v['checked_differing'] for v in checked):,} "
          "checked on a differing text; as a form without one (semantic, version-2 fallback), "
          f"{sum(v['wrong'] for v in unchecked)} wrong of {sum(v['decoded'] for v in unchecked):,} "
          "decoded.\n\n")
    rss = g["rss_kib"]
    s += (f"gRPC: {g['requests']:,} calls in {g['seconds'] / 60:.1f} min ({g['requests_per_s']:.0f}/s, "
          f"{g['concurrency']} at once, {100 * g['malformed_share']:.0f}% with mutated or garbage "
          f"serialized requests) to a real `rvqstream serve`; UNKNOWN or INTERNAL: "
          f"{g['unknown_or_internal']:,}; hangs (no status by the deadline + {HANG_GRACE_S:g} s): "
          f"{g['hangs']}; server alive: {g['server_alive']}, health {g.get('health')}, round trip "
          f"after: {g.get('round_trip')}; server RSS {rss['start'] / 1024:.0f} MiB at the start, "
          f"{rss['after_warm_up'] / 1024:.0f} MiB after warm-up, {(rss['end'] or 0) / 1024:.0f} MiB at "
          f"the end (max {rss['max'] / 1024:.0f} MiB). CLIENT_WRITE_FAILURE: a client stream the server "
          "ended while the client still wrote (grpc.aio then loses the server's status).")
    if "retired_tier_writes" in g:
        retired = g["retired_tier_writes"]
        s += (f" Calls that asked to write in the retired semantic tier: {sum(retired.values()):,} ("
              + ", ".join(f"{k} {v:,}" for k, v in retired.items()) + "; none may end OK).")
    s += "\n\n"
    statuses = sorted({st for m in g["statuses_by_method"].values() for st in m})
    s += _table(["method", *statuses], [[m, *(f"{v.get(st, 0):,}" for st in statuses)]
                                        for m, v in g["statuses_by_method"].items()])
    for what, entry in g["findings"].items():
        server = "; ".join(entry.get("server_errors", [])) or "-"
        s += (f"\n- finding: {what} ({entry['count']:,}x); server: {server}; "
              f"e.g. `{json.dumps(entry['examples'][0])[:300]}`")
    return s + "\n"


if __name__ == "__main__":
    main()
