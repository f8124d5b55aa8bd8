"""The codec's own exceptions: every failure to decode untrusted bytes is a ``CodecError``.

Anything else raised by the codec (``ValueError``, ``IndexError``, ...) is a bug, not bad input,
and servers report it as an internal error. Callers tell the kinds apart by type:

- ``TruncatedError``: the data ends before the message does (a cut blob or batch);
- ``MalformedError``: the data breaks the format (bad magic or version, impossible field values,
  more tokens than its size allows);
- ``IntegrityError``: the decoded text fails its check (corrupt data, or another model made it):
  refetch it in fallback form;
- ``UnknownModelError``: the data names a model this codec is not, or a model id is not one;
- ``TooLargeError``: the decoded text would pass the caller's byte limit (checked before it is
  produced);
- ``CancelledError``: the caller's ``Cancel`` token was set while the model was working.
"""

from __future__ import annotations

import threading
import time


class CodecError(Exception):
    """Untrusted bytes could not be decoded (or the caller stopped the work)."""


class TruncatedError(CodecError):
    """The data ends before the message does."""


class MalformedError(CodecError):
    """The data breaks the format."""


class IntegrityError(CodecError):
    """Decoded text failed its integrity check (model mismatch or corrupt data): refetch it in
    fallback form."""


class UnknownModelError(CodecError):
    """The data names a model this codec is not, or a model id is malformed."""


class TooLargeError(CodecError):
    """The decoded text would exceed the caller's byte limit."""


class CancelledError(CodecError):
    """The work was stopped through its ``Cancel`` token."""


class Cancel:
    """A cancellation token the codec checks at least once per frame (thread-safe).

    ``cancel()`` from any thread makes the next check raise ``CancelledError``; ``deadline`` (a
    ``time.monotonic()`` value) does the same once passed."""

    def __init__(self, deadline: float | None = None, event: threading.Event | None = None):
        self._event = event or threading.Event()
        self.deadline = deadline

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def within(self, seconds: float) -> Cancel:
        """A token cancelled with this one, whose deadline is at most ``seconds`` from now."""
        limit = time.monotonic() + seconds
        return Cancel(limit if self.deadline is None else min(self.deadline, limit), self._event)

    def check(self) -> None:
        """Raises ``CancelledError`` when cancelled or past the deadline."""
        if self._event.is_set():
            raise CancelledError("the caller cancelled the work")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CancelledError("the work ran past its deadline")
