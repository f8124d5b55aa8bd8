"""The parser fuzzer (bench/fuzz.py's first part): every parser target together (the blob, frame
batch and store targets of bench/fuzz_blobs.py, bench/fuzz_batches.py and bench/fuzz_store.py; the
tokenizer's byte-exact round trip, here), each run as hypothesis runs with fixed seeds (generation
only: an input generated again is not run again), counted or timed; and the summary of a run.

It covers both shipped models, each target decoding with the codec that made its seeds: the
integer model (the default bundle: exact tier only, no RVQ stages) for the exact-tier and
fallback forms, the float model (``bundle.SEMANTIC_DIR``) for the forms that need RVQ codes
(exact-tier data with stages, and the retired semantic tier's data, which it reads and no encoder
writes), and ``blob/cross`` gives each one's blobs to the other.

The tokenizer target: arbitrary Unicode must round-trip byte-exact, its tokens never hold the
``<eos>`` id, and ``split_final`` gives pieces that reassemble and tokenize the same whatever text
follows (``SPLIT_CLAIM``, the last, is reported by the long run, not asserted by the tests).
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from pathlib import Path

import hypothesis
from fuzz_batches import BatchTargets
from fuzz_blobs import BlobTargets
from fuzz_store import STORE_EXAMPLE, StoreFuzz
from fuzz_tally import Tally, Target
from fuzz_wrong_results import CheckProbe, WrongRow
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from rvqstream.models import Codec
from rvqstream.models.tokenizer import EOS_ID

SLICE_S = 4.0            # a timed run gives each target turns of about this long
EXAMPLES_PER_ROUND = 20_000
SPLIT_CLAIM = "split_final's final part tokenizes otherwise once more text follows"

TRICKY = ["<eos>", "<", "eos>", " ", "  ", "\n", "\r\n", "\t", "\x00", "\u200d", "e\u0301", "🎉",
          "👩‍👩‍👧", "\ufeff",
          "\U0010ffff", "\ud7ff", "日本", "'s", "'ll", "123", "...", "ÿ", "\x7f", "\u2028"]
TEXT = st.one_of(st.text(max_size=48),
                 st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=3)), max_size=10).map("".join))


class ParserFuzz:
    """The parser targets over two codecs, their tallies and the wrong-result rows: ``codec`` (the
    integer default: the exact tier and the fallback forms) and ``rvq`` (a model with RVQ stages,
    the float bundle: exact-tier data with stages and the retired semantic tier's data)."""

    def __init__(self, codec: Codec, rvq: Codec, store_dir: Path):
        if not rvq.parts.stages:
            raise ValueError(f"the RVQ-coded forms need a model with RVQ stages, not {rvq.model_id[:12]}")
        self.codec, self.rvq, self.tokenizer = codec, rvq, codec.parts.tokenizer
        self.codecs = {"exact": codec, "rvq": rvq}
        self.probe = CheckProbe()
        self.rows: dict[str, WrongRow] = {}
        self.blobs = BlobTargets(self.codecs, self.probe, self.rows)
        self.batches = BatchTargets(self.codecs, self.probe, self.rows)
        self.store = StoreFuzz(store_dir)
        self.targets = [
            *self.blobs.targets,
            *self.batches.targets,
            Target("store", 0.13, False, STORE_EXAMPLE, lambda x: self.store.run(self._tally("store"), x)),
            Target("tokenizer", 0.07, False, st.tuples(TEXT, TEXT), self._tokenizer),
        ]
        self._by_name = {t.name: t for t in self.targets}

    def _tally(self, name: str) -> Tally:
        return self._by_name[name].tally

    # -- the tokenizer ----------------------------------------------------------------------

    def _tokenizer(self, x) -> None:
        text, more = x
        tok, tally = self.tokenizer, self._tally("tokenizer")
        if not tally.fresh(f"{len(text)}:{text}{more}".encode()):
            return

        def check() -> list[str]:
            ids = tok.encode(text)
            problems = []
            if EOS_ID in ids:
                problems.append("the tokens of a text hold the <eos> id")
            if tok.token_bytes(ids) != text.encode("utf-8"):
                problems.append("the round trip changes the text")
            final, tail = tok.split_final(text)
            if final + tail != text:
                problems.append("split_final's pieces do not reassemble the text")
            else:
                head = tok.encode(final)
                if tok.encode(text + more)[:len(head)] != head:
                    problems.append(SPLIT_CLAIM)
            return problems

        def describe() -> dict:
            return {"text": text, "more": more}

        outcome, problems = tally.run(check, describe)
        if outcome == "ok":
            for p in problems:
                tally.note(tally.violations, p, describe)

    # -- running ----------------------------------------------------------------------------

    def run_target(self, t: Target, examples: int, seed: int) -> None:
        """One hypothesis run of ``examples`` inputs of ``t``: generation only (its targeting phase
        can spin for minutes without running an input when a strategy has unbounded integers)."""

        @settings(max_examples=examples, database=None, deadline=None, phases=(Phase.generate,),
                  derandomize=False, suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        @given(t.strategy)
        def fuzz(x) -> None:
            t.examples += 1
            t.body(x)

        t0 = time.perf_counter()
        hypothesis.seed(seed)(fuzz)()
        t.tally.wall_seconds += time.perf_counter() - t0

    def run(self, seconds: float | None = None, examples: int | None = None, seed: int = 0) -> None:
        """Either ``examples`` inputs per fast target (a 25th of that per model-heavy one, at least
        10), or ``seconds`` shared by the targets' weights in turns of about ``SLICE_S``."""
        with self.probe:
            if examples is not None:
                for t in self.targets:
                    self.run_target(t, examples if not t.model else max(10, examples // 25),
                                    zlib.crc32(f"{seed}/{t.name}".encode()))
                return
            start, turns, shown = time.monotonic(), Counter(), 0.0
            end = start + seconds
            while (left := end - time.monotonic()) > 0:
                if time.monotonic() - shown >= 60:
                    shown = time.monotonic()
                    s = self.summary()
                    print(f"  {(shown - start) / 60:5.1f} min: {s['inputs']:,} parser inputs, "
                          f"{s['crashes']} crashes, {s['untyped']} untyped, {s['hangs']} hangs", flush=True)
                t = min(self.targets, key=lambda t: t.tally.wall_seconds / t.weight)
                rate = t.examples / t.tally.wall_seconds if t.tally.wall_seconds else 20.0
                n = max(3, min(EXAMPLES_PER_ROUND, int(rate * min(SLICE_S, left))))
                self.run_target(t, n, zlib.crc32(f"{seed}/{t.name}/{turns[t.name]}".encode()))
                turns[t.name] += 1

    def summary(self) -> dict:
        targets = {t.name: t.tally.summary() for t in self.targets}
        wall = sum(t.tally.wall_seconds for t in self.targets)
        inputs = sum(t.tally.inputs for t in self.targets)
        return {"models": {c.kind: c.model_id for c in self.codecs.values()},
                "inputs": inputs, "seconds": round(wall, 1),
                "inputs_per_s": round(inputs / wall, 1) if wall else None,
                **{k: sum(v[k] for v in targets.values())
                   for k in ("duplicates_skipped", "crashes", "untyped", "hangs", "contract_violations")},
                "store_files": self.store.files, "targets": targets,
                "wrong_results": {name: row.summary() for name, row in sorted(self.rows.items())}}

