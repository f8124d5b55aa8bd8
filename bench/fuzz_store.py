"""The store target of the parser fuzzer (bench/fuzz.py): the channel log API (``SQLiteLogStore``:
append, append_part, abort, retain and every read) on a real SQLite file, with adversarial values
(hypothesis strategies of writes and reads), against the reference model of the log
(bench/fuzz_store_model.py): every result and every read-back must match it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fuzz_store_model import RefChannel, RefLog, storable
from fuzz_tally import HANG_S, WATCHDOG_S, Tally, normalized
from hypothesis import strategies as st

from rvqstream.server.logstore import MessageState, Part, PartConflict, Record, Retention, StreamKey
from rvqstream.server.sqlite_store import SQLiteLogStore

INT_EDGES = [2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1]
ANY_INT = st.one_of(st.integers(-2, 8), st.sampled_from(INT_EDGES), st.integers())
SMALL_INT = st.one_of(st.integers(-1, 6), st.sampled_from(INT_EDGES))
SIZE = st.one_of(st.integers(0, 1 << 32), st.sampled_from([2**63, 2**64, -(2**63) - 1]))
NAMES = st.sampled_from(["a", "fuzz/ch", "b.c-d_e", "\x00", "ünï", "", "A" * 300])
# mostly names the log can hold, one in eight with a lone surrogate (which SQLite cannot bind)
NAME = st.one_of(*[NAMES] * 6, st.text(max_size=4),
                 st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2))
PRODUCER = st.one_of(st.sampled_from(["", "p", "q"]), NAME)
MODEL = st.one_of(st.sampled_from(["49ca0b58", "m"]), NAME)
BLOB = st.binary(max_size=48)
STORE_WRITE = st.one_of(
    st.tuples(st.just("append"), NAME,
              st.lists(st.tuples(BLOB, MODEL, PRODUCER, SMALL_INT), min_size=1, max_size=3)),
    st.tuples(st.just("part"), NAME, PRODUCER, SMALL_INT, MODEL, ANY_INT, SMALL_INT, BLOB, SIZE, SIZE,
              st.booleans()),
    st.tuples(st.just("abort"), NAME, SMALL_INT),
    st.tuples(st.just("retain"), st.integers(1, 200)),
)
STORE_READ = st.one_of(
    st.tuples(st.just("read"), NAME, SMALL_INT, ANY_INT, ANY_INT),
    st.tuples(st.just("read_parts"), NAME, SMALL_INT, SMALL_INT, ANY_INT),
    st.tuples(st.just("find"), NAME, PRODUCER, SMALL_INT),
    st.tuples(st.just("state"), NAME, SMALL_INT),
    st.tuples(st.just("end"), NAME),
    st.tuples(st.just("first"), NAME),
    st.tuples(st.just("open"),),
)
STORE_EXAMPLE = st.tuples(st.lists(STORE_WRITE, min_size=1, max_size=6), st.lists(STORE_READ, max_size=4))
UNSTORABLE = (OverflowError, UnicodeEncodeError)
STORE_ROTATE = 200      # examples per log file


class StoreFuzz:
    """The channel log API on a real SQLite file (a new one every ``STORE_ROTATE`` examples, or
    after a mismatch), against ``RefLog``: every write's result, every read, and after each example
    a full read-back of the channels it touched must match. An error is expected where the
    reference predicts it (``PartConflict``; ``OverflowError``/``UnicodeEncodeError`` for a value
    SQLite cannot hold; ``KeyError`` for state or parts of a message that does not exist)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.store: SQLiteLogStore | None = None
        self.files = 0

    def _fresh(self) -> None:
        if self.store is not None:
            self.loop.run_until_complete(self.store.close())
            for f in self.directory.glob(f"log-{self.files}.sqlite3*"):
                f.unlink()
        self.files += 1
        self.store = SQLiteLogStore(self.directory / f"log-{self.files}.sqlite3")
        self.ref, self.examples = RefLog(), 0

    def close(self) -> None:
        if self.store is not None:
            self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def run(self, tally: Tally, example) -> None:
        if self.store is None or self.examples >= STORE_ROTATE:
            self._fresh()
        self.examples += 1
        writes, reads = example
        t0 = time.perf_counter()
        try:
            mismatches = self.loop.run_until_complete(
                asyncio.wait_for(self._example(tally, writes, reads), WATCHDOG_S))
        except TimeoutError:
            mismatches = [f"no answer in {WATCHDOG_S:g} s"]
        except Exception as e:  # noqa: BLE001 - a failure of the harness's own reads is a finding too
            mismatches = [f"{type(e).__name__}: {e}"]
            tally.crash(e, lambda: repr(example)[:2000])
        seconds = (time.perf_counter() - t0) / (len(writes) + len(reads))
        for _ in range(len(writes) + len(reads)):
            tally.inputs += 1
            tally.seconds += seconds
        if seconds * (len(writes) + len(reads)) > HANG_S:
            tally.hangs.append({"input": repr(example)[:2000], "seconds": round(seconds, 3),
                                "outcome": "slow"})
        for m in mismatches:
            tally.note(tally.violations, normalized(m),
                       lambda m=m: {"example": repr(example)[:2000], "mismatch": m[:500]})
        if mismatches:
            self.examples = STORE_ROTATE    # start over on a new file: the reference lost track

    async def _example(self, tally: Tally, writes, reads) -> list[str]:
        store, ref = self.store, self.ref
        calls = [self._apply(store, w) for w in writes]
        results = await asyncio.gather(*calls, return_exceptions=True)
        mismatches, touched = [], set()
        for w, got in zip(writes, results):
            if w[0] != "retain":
                touched.add(w[1])
            want, value = self._apply(ref, w)
            mismatches += self._judge(tally, w, want, value, got)
        for r in reads:
            mismatches += await self._read(tally, r)
        for channel in sorted(touched):
            if storable(channel):
                mismatches += await self._read_back(channel)
        return mismatches

    @staticmethod
    def _apply(log: SQLiteLogStore | RefLog, w):
        """Write ``w`` to the store (a coroutine) or to the reference (its prediction): the two
        take the same calls."""
        if w[0] == "append":
            return log.append(w[1], [Record(b, m, p, s) for b, m, p, s in w[2]])
        if w[0] == "part":
            _, channel, producer, seq, model, tier, index, batch, text_bytes, crc, end = w
            return log.append_part(channel, StreamKey(producer, seq, model, tier),
                                   Part(index, batch, text_bytes, crc, end))
        if w[0] == "abort":
            return log.abort(w[1], w[2])
        return log.retain(Retention(max_bytes=w[1]))

    @staticmethod
    def _judge(tally: Tally, w, want: str, value, got) -> list[str]:
        """Counts one write against the reference -> mismatches."""
        if isinstance(got, BaseException):
            kind = {"conflict": PartConflict, "unstorable": UNSTORABLE}.get(want)
            if kind is not None and isinstance(got, kind):
                tally.expected[type(got).__name__] += 1
                return []
            tally.crash(got, lambda: repr(w)[:2000])
            return [f"{w[0]}: the reference expected {want}, the log raised {type(got).__name__}: {got}"]
        if want != "ok":
            return [f"{w[0]}: the reference expected {want}, the log acknowledged it"]
        if w[0] == "append":
            got = [(a.offset, a.duplicate) for a in got]
        elif w[0] == "part":
            got = (got.offset, got.state, got.parts, got.text_bytes, got.crc, got.model_id, got.tier,
                   got.stored_bytes)
        if got != value:
            return [f"{w[0]}: the log answered {got!r}, the reference {value!r}"]
        tally.ok += 1
        return []

    async def _read(self, tally: Tally, r) -> list[str]:
        """One read with adversarial arguments, judged against the reference."""
        if r[0] == "read_parts":
            return await self._read_parts(tally, r)
        store, ref = self.store, self.ref
        ch = ref.channels.get(r[1], RefChannel()) if len(r) > 1 else None
        if r[0] == "read":
            bound, call = r[1:4], lambda: store.read(*r[1:])
            want = self._entries(ch, r[2], r[3], r[4])
        elif r[0] == "find":
            bound, call = r[1:4], lambda: store.find_stream(*r[1:])
            hit = ch.by_key(r[2], r[3])
            want = RefLog.info(*hit) if hit and hit[1].streamed else None
        elif r[0] == "state":
            bound, call = r[1:3], lambda: store.stream_state(*r[1:])
            e = ch.entries.get(r[2])
            want = KeyError if e is None else (e.state, len(e.parts))
        elif r[0] == "end":
            bound, call = r[1:2], lambda: store.end_offset(r[1])
            want = ch.next if r[1] in ref.channels else None
        elif r[0] == "first":
            bound, call = r[1:2], lambda: store.first_offset(r[1])
            want = ch.first
        else:
            bound, call = (), store.open_streams
            want = sorted((name, o) for name, c in ref.channels.items() for o, e in c.entries.items()
                          if e.state == MessageState.STREAMING)
        try:
            got = await call()
        except Exception as e:  # noqa: BLE001 - judged here
            if isinstance(e, UNSTORABLE) and not storable(*bound):
                tally.expected[type(e).__name__] += 1
                return []
            if isinstance(e, KeyError) and want is KeyError:
                tally.expected["KeyError"] += 1
                return []
            tally.crash(e, lambda: repr(r)[:2000])
            return [f"{r[0]}{r[1:]!r}: raised {type(e).__name__}: {e}"]
        if r[0] == "read":
            got = [(e.offset, e.model_id, e.blob, e.state, e.streamed, e.tier, e.parts) for e in got]
            if got == [] and not storable(*bound):
                want = []        # the log's own end offset answered before SQLite saw the value
        elif r[0] == "find" and got is not None:
            got = (got.offset, got.state, got.parts, got.text_bytes, got.crc, got.model_id, got.tier,
                   got.stored_bytes)
        elif r[0] == "open":
            got = sorted(got)
        if got != want:
            return [f"{r[0]}{r[1:]!r}: the log answered {got!r}, the reference {want!r}"]
        tally.ok += 1
        return []

    @staticmethod
    def _entries(ch: RefChannel, from_offset: int, limit: int, limit_bytes: int) -> list:
        rows = [(o, e) for o, e in sorted(ch.entries.items()) if o >= from_offset]
        if limit >= 0:
            rows = rows[:limit]
        out, size = [], 0
        for o, e in rows:
            if out and size + len(e.blob) > limit_bytes:
                break
            out.append((o, e.model_id, e.blob, e.state, e.streamed, e.tier, len(e.parts)))
            size += len(e.blob)
        return out

    async def _read_parts(self, tally: Tally, r) -> list[str]:
        _, channel, offset, from_part, limit_bytes = r
        ch = self.ref.channels.get(channel, RefChannel())
        e = ch.entries.get(offset)
        removed = 0 <= offset < ch.first
        try:
            parts, state = await self.store.read_parts(channel, offset, from_part, limit_bytes)
        except Exception as err:  # noqa: BLE001 - judged here
            if isinstance(err, UNSTORABLE) and not storable(channel, offset, from_part):
                tally.expected[type(err).__name__] += 1
                return []
            if isinstance(err, KeyError) and e is None:
                tally.expected["KeyError"] += 1
                return []
            tally.crash(err, lambda: repr(r)[:2000])
            return [f"read_parts{r[1:]!r}: raised {type(err).__name__}: {err}"]
        if e is None:
            if removed:     # the engine's cache of recent parts may still answer for it
                tally.ok += 1
                return []
            return [f"read_parts{r[1:]!r}: answered for a message the reference does not hold"]
        want, size = [], 0
        for batch in e.parts[max(from_part, 0):]:
            if want and size + len(batch) > limit_bytes:
                break
            want.append(batch)
            size += len(batch)
        more = len(want) < len(e.parts[max(from_part, 0):])
        states = {MessageState.STREAMING} if more else {e.state}
        if e.state == MessageState.ABORTED:
            states.add(MessageState.STREAMING)   # the cache of recent parts shows an abort on the next read
        if parts != want or state not in states:
            return [(f"read_parts{r[1:]!r}: the log answered {len(parts)} parts, {state.name}; the reference "
                     f"{len(want)}, {'/'.join(s.name for s in states)}")]
        tally.ok += 1
        return []

    async def _read_back(self, channel: str) -> list[str]:
        """The whole channel, read back, against the reference."""
        store, ch = self.store, self.ref.channels.get(channel)
        out = []
        end = await store.end_offset(channel)
        if end != (None if ch is None else ch.next):
            out.append(f"end offset {end}, the reference {None if ch is None else ch.next}")
        if ch is None:
            return out
        if (first := await store.first_offset(channel)) != ch.first:
            out.append(f"first offset {first}, the reference {ch.first}")
        got = [(e.offset, e.model_id, e.blob, e.state, e.streamed, e.tier, e.parts)
               for e in await store.read(channel, 0, -1, 1 << 62)]
        if got != self._entries(ch, 0, -1, 1 << 62):
            out.append(f"read-back of the channel: {len(got)} entries differ from the reference's "
                       f"{len(ch.entries)}")
        for offset, e in ch.entries.items():
            if e.streamed:
                parts, _ = await store.read_parts(channel, offset, 0, 1 << 62)
                state = await store.stream_state(channel, offset)
                if parts != e.parts or state != (e.state, len(e.parts)):
                    out.append(f"streamed message {offset}: {len(parts)} parts, {state}; the reference "
                               f"{len(e.parts)} parts, {e.state.name}")
        return out

