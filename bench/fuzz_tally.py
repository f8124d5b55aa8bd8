"""What the parser fuzzer counts per target (bench/fuzz.py): ``Tally`` classifies each input's
outcome (ok, an expected error, an untyped error, a crash, a hang), ``Watchdog`` turns an input
that stalls into a hang instead of a stalled run, and ``Target`` is one parser target with its tally.
"""

from __future__ import annotations

import _thread
import hashlib
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from rvqstream.models import CodecError

HANG_S = 2.0             # an input that takes longer is a hang
WATCHDOG_S = 60.0        # an input still running after this is interrupted (and counted as a hang)
KEEP = 3                 # examples kept per crash, untyped message or wrong-result row


def normalized(message: str) -> str:
    """An error message with its numbers blanked, so messages group by kind."""
    return re.sub(r"0x[0-9a-fA-F]+|\d+", "#", message)[:200]


class Watchdog:
    """Interrupts the main thread (``KeyboardInterrupt``) when one input runs past ``seconds``:
    a hang is recorded instead of the run stalling."""

    def __init__(self, seconds: float = WATCHDOG_S):
        self.seconds, self.started, self.fired = seconds, None, False
        threading.Thread(target=self._watch, name="fuzz-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            started = self.started
            if started is not None and not self.fired and time.monotonic() - started > self.seconds:
                self.fired = True
                _thread.interrupt_main()


_WATCHDOG: Watchdog | None = None


def watchdog() -> Watchdog:
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = Watchdog()
    return _WATCHDOG


def codec_outcome(error: BaseException) -> str:
    """``expected`` for the codec's own errors, ``untyped`` for bare ValueError/EOFError, else ``crash``."""
    if isinstance(error, CodecError):
        return "expected"
    if isinstance(error, (ValueError, EOFError)):
        return "untyped"
    return "crash"


@dataclass
class Tally:
    """Everything one target saw."""

    inputs: int = 0
    seconds: float = 0.0          # in the inputs themselves
    wall_seconds: float = 0.0     # with input generation
    ok: int = 0
    expected: Counter = field(default_factory=Counter)
    untyped: dict = field(default_factory=dict)     # normalized "Type: message" -> count, examples
    crashes: dict = field(default_factory=dict)     # signature -> count, examples, traceback
    violations: dict = field(default_factory=dict)  # contract broken -> count, examples
    hangs: list = field(default_factory=list)
    slowest_s: float = 0.0
    duplicates: int = 0           # inputs generated again, not run again
    seen: set = field(default_factory=set)

    def fresh(self, key: bytes) -> bool:
        """Whether an input (its bytes) is new; a repeat is counted and should not run."""
        digest = hashlib.blake2b(key, digest_size=8).digest()
        if digest in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(digest)
        return True

    def run(self, fn: Callable[[], object], describe: Callable[[], object]) -> tuple[str, object]:
        """Runs ``fn()`` as one codec input -> (outcome, its value or error)."""
        dog = watchdog()
        t0 = time.perf_counter()
        dog.started, dog.fired = time.monotonic(), False
        try:
            value, outcome = fn(), "ok"
        except KeyboardInterrupt:
            if not dog.fired:
                raise
            value, outcome = None, "hang"
        except Exception as e:  # noqa: BLE001 - every error is classified, none stops the run
            value, outcome = e, codec_outcome(e)
        finally:
            dog.started = None
        self.count(outcome, value, time.perf_counter() - t0, describe)
        return outcome, value

    def count(self, outcome: str, value, seconds: float, describe: Callable[[], object]) -> None:
        self.inputs += 1
        self.seconds += seconds
        self.slowest_s = max(self.slowest_s, seconds)
        if outcome == "hang" or seconds > HANG_S:
            self.hangs.append({"input": describe(), "seconds": round(seconds, 3), "outcome": outcome})
        if outcome == "ok":
            self.ok += 1
        elif outcome == "expected":
            self.expected[type(value).__name__] += 1
        elif outcome == "untyped":
            self.note(self.untyped, f"{type(value).__name__}: {normalized(str(value))}", describe)
        elif outcome == "crash":
            self.crash(value, describe)

    def crash(self, error: BaseException, describe: Callable[[], object]) -> None:
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        entry = self.note(self.crashes, f"{type(error).__name__} at {where}", describe)
        entry.setdefault("error", f"{type(error).__name__}: {error}"[:500])
        entry.setdefault("traceback", "".join(traceback.format_exception(error))[-4000:])

    @staticmethod
    def note(table: dict, key: str, describe: Callable[[], object]) -> dict:
        entry = table.setdefault(key, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < KEEP:
            entry["examples"].append(describe())
        return entry

    def summary(self) -> dict:
        return {"inputs": self.inputs, "duplicates_skipped": self.duplicates,
                "inputs_per_s": round(self.inputs / self.wall_seconds, 1) if self.wall_seconds else None,
                "parser_inputs_per_s": round(self.inputs / self.seconds, 1) if self.seconds else None,
                "seconds": round(self.wall_seconds, 1), "slowest_input_s": round(self.slowest_s, 3),
                "ok": self.ok, "expected": dict(self.expected.most_common()),
                "untyped": sum(e["count"] for e in self.untyped.values()),
                "crashes": sum(e["count"] for e in self.crashes.values()), "hangs": len(self.hangs),
                "contract_violations": sum(e["count"] for e in self.violations.values()),
                "untyped_by_message": self.untyped, "crash_list": self.crashes, "hang_list": self.hangs[:20],
                "violation_list": self.violations}


@dataclass
class Target:
    """One parser target: a hypothesis strategy of inputs and the body that runs and tallies one."""

    name: str
    weight: float          # share of a timed run
    model: bool            # model-heavy: a counted run gives it fewer inputs
    strategy: st.SearchStrategy
    body: Callable[[object], None]
    tally: Tally = field(default_factory=Tally)
    examples: int = 0      # hypothesis examples run (a store example is several inputs)
