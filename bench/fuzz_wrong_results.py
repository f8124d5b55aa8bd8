"""Wrong results of the parser fuzzer (bench/fuzz.py): mutants that decode without error to a text
other than the original's. ``WrongRow`` counts them per form against what the form's integrity
check predicts (2^-bits, with a 95% Wilson interval); ``CheckProbe`` sees the checks as the codec
evaluates them, so that only evaluations on a differing text count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Self

from fuzz_tally import KEEP

from rvqstream.models import blob as blob_format
from rvqstream.models import stream as stream_format


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of the rate k/n."""
    if n == 0:
        return None
    p, d = k / n, 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, centre - half), min(1.0, centre + half)]


@dataclass
class WrongRow:
    """Mutants of one form and what their decoding made of them. With a check: ``checked_differing``
    counts the check's evaluations on a text (or message end) other than the original's, and the
    rate of wrong results among them is what the check's size predicts (2^-bits; invalid UTF-8,
    rejected after the check, can only lower it). Without one, the rate is over what decoded."""

    check_bits: int | None
    check_passed_differing: int | None = None   # batches: passes among ``checked_differing``
    mutants: int = 0          # blobs: mutants read as this form; batches: checks evaluated (or pushes)
    decoded: int = 0
    wrong: int = 0
    checked_differing: int = 0
    examples: list = field(default_factory=list)

    def add_wrong(self, example: dict) -> None:
        self.wrong += 1
        if len(self.examples) < KEEP:
            self.examples.append(example)

    def summary(self) -> dict:
        n = self.checked_differing if self.check_bits else self.decoded
        ci = wilson(self.wrong, n)
        predicted = 2.0 ** -self.check_bits if self.check_bits else None
        return {"check_bits": self.check_bits, "mutants": self.mutants, "decoded": self.decoded,
                "checked_differing": self.checked_differing if self.check_bits else None,
                "check_passed_differing": self.check_passed_differing,
                "wrong": self.wrong, "rate": self.wrong / n if n else None, "ci95": ci,
                "predicted": predicted,
                "prediction_in_ci": ci[0] <= predicted <= ci[1] if ci and predicted else None,
                "examples": self.examples}


def wrong_row(rows: dict[str, WrongRow], name: str, bits: int | None, passes: bool = False) -> WrongRow:
    """The row ``name`` of ``rows``, added if new (``passes``: it counts the check's passes too)."""
    return rows.setdefault(name, WrongRow(bits, 0 if passes else None))


class CheckProbe:
    """Sees the integrity checks as the codec evaluates them, for the wrong-result rates: the data a
    blob's check covers (``blob.text_check``) and a batch's check against the message's running CRC
    (``stream.check_matches``). A context manager around a run; ``clear()`` before each input."""

    def __init__(self):
        self.blob_data: list[bytes] = []
        self.batch: list[tuple[int, bool, bool]] = []    # (running CRC, message end, passed)

    def __enter__(self) -> Self:
        self._saved = blob_format.text_check, stream_format.check_matches
        text_check, check_matches = self._saved

        def probe_text_check(data: bytes, bits: int) -> int:
            self.blob_data.append(bytes(data))
            return text_check(data, bits)

        def probe_check_matches(value: int, crc: int, message_end: bool) -> bool:
            passed = check_matches(value, crc, message_end)
            self.batch.append((crc, message_end, passed))
            return passed

        blob_format.text_check, stream_format.check_matches = probe_text_check, probe_check_matches
        return self

    def __exit__(self, *exc) -> None:
        blob_format.text_check, stream_format.check_matches = self._saved

    def clear(self) -> None:
        self.blob_data.clear()
        self.batch.clear()
