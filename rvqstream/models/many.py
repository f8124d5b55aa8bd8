"""Many blobs decoded at once: ``Codec.decompress_many`` (a subscriber replaying a backlog).

Each exact-tier blob of the integer model decodes as a generator of model steps
(``BlobCoder.exact_steps``); up to ``rows`` of them share one batch of context slots
(``int_runtime.StepRows``), and every round runs one graph call for all of them. A row whose blob
ends takes the next blob. The integer model's tables do not depend on the batch, so each blob
decodes exactly as it would alone. Other blobs (fallback forms, the float model's) decode one by one.
"""

from __future__ import annotations

from collections.abc import Iterable

from rvqstream.models.blob import HEADER_BYTES, BlobCoder, Mode, parse_header
from rvqstream.models.errors import Cancel, CodecError
from rvqstream.models.int_runtime import IntStepModel

DEFAULT_ROWS = 64


def decompress_many(coder: BlobCoder, blobs: Iterable[bytes], max_bytes: int | None, cancel: Cancel,
                    rows: int = DEFAULT_ROWS) -> list[str | CodecError]:
    """The text of each blob, or the ``CodecError`` it raised (one bad blob spoils no other);
    ``CancelledError`` itself propagates."""
    blobs = [bytes(b) for b in blobs]
    out: list[str | CodecError | None] = [None] * len(blobs)
    batched = []
    for i, blob in enumerate(blobs):
        if isinstance(coder.parts.step, IntStepModel) and _exact_of_this_model(coder, blob):
            batched.append(i)
        else:
            out[i] = _alone(coder, blob, max_bytes, cancel)
    if batched:
        _decode_rows(coder, blobs, batched, out, max_bytes, cancel, rows)
    return out


def _exact_of_this_model(coder: BlobCoder, blob: bytes) -> bool:
    try:
        mode, tag = parse_header(blob)
    except CodecError:
        return False
    return mode == Mode.EXACT and tag == coder.tag and len(blob) > HEADER_BYTES


def _alone(coder: BlobCoder, blob: bytes, max_bytes: int | None, cancel: Cancel) -> str | CodecError:
    try:
        return coder.decompress(blob, max_bytes, cancel)
    except CodecError as e:
        if cancel.cancelled:
            raise
        return e


def _decode_rows(coder: BlobCoder, blobs: list[bytes], todo: list[int], out: list, max_bytes: int | None,
                 cancel: Cancel, rows: int) -> None:
    batch = coder.parts.step.rows(min(rows, len(todo)))
    queue = iter(todo)
    active: dict[int, tuple[int, object]] = {}      # row -> (blob index, its step generator)

    def start(row: int) -> None:
        """Give ``row`` the next blob that needs model steps (blobs that end at once are done)."""
        for i in queue:
            state = batch.states[row]
            state.reset()
            steps = coder.exact_steps(blobs[i][HEADER_BYTES:], max_bytes, cancel, state)
            if advance(row, i, steps, None):
                return

    def advance(row: int, i: int, steps, sent) -> bool:
        """Send ``sent`` (None: start) to blob ``i``'s steps; -> whether it wants another step."""
        try:
            steps.send(sent) if sent is not None else next(steps)
        except StopIteration as stop:
            out[i] = stop.value
        except CodecError as e:
            if cancel.cancelled:
                raise
            out[i] = e
        else:
            active[row] = (i, steps)
            return True
        active.pop(row, None)
        return False

    for row in range(len(batch.states)):
        start(row)
    while active:
        cancel.check()
        order = sorted(active)
        for row, result in zip(order, batch.step(order)):
            i, steps = active[row]
            if not advance(row, i, steps, result):
                start(row)
