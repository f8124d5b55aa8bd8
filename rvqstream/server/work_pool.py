"""Whole-message model work — unary Compress and Decompress, Publish's compression, DecodeStream's
batches, FetchMessage's re-coding — on threads of its own, so that it never delays the encode
streams' frames (those run on the scheduler's workers, scheduler.py).

The pool takes at most ``workers + queue`` calls at once: a unary call beyond that is refused with
RESOURCE_EXHAUSTED (and a retry delay), a stream's work waits for a place. Each call gets a ``Cancel`` token that the codec checks at least once per
frame: it is set when the RPC is cancelled or its deadline passes, and in any case after
``max_call_s``, so work nobody waits for stops within a frame's time.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from rvqstream.models.errors import Cancel, CancelledError
from rvqstream.server.errors import ServiceError, exhausted

BUSY_RETRY_S = 0.5


class WorkPool:
    """``workers`` threads and ``queue`` waiting places for message work (times in seconds)."""

    def __init__(self, workers: int, queue: int, max_call_s: float):
        self.workers, self.capacity, self.max_call_s = workers, workers + queue, max_call_s
        self._places = asyncio.Semaphore(self.capacity)   # released when the thread finishes
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="rvqstream-message")

    async def run(self, fn, *args, context: grpc.aio.ServicerContext | None = None, wait: bool = False,
                  budget_s: float | None = None, **kwargs):
        """``fn(*args, cancel=..., **kwargs)`` on a pool thread -> its result.

        When the pool is full: RESOURCE_EXHAUSTED, or with ``wait`` a wait for a place.
        DEADLINE_EXCEEDED when the work ran past the call's deadline (``context.time_remaining()``)
        or its budget (``budget_s``, by default ``max_call_s``)."""
        if self._places.locked() and not wait:
            raise exhausted(f"the server is busy: {self.capacity} message calls are running or waiting",
                            retry_after_s=BUSY_RETRY_S)
        await self._places.acquire()
        remaining = context.time_remaining() if context is not None else None
        budget = min(self.max_call_s if budget_s is None else budget_s,
                     remaining if remaining is not None else math.inf)
        cancel = Cancel(time.monotonic() + budget)
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args, cancel=cancel, **kwargs))
        future.add_done_callback(self._done)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.cancel()           # the caller went away: the thread stops within a frame
            raise
        except CancelledError:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"the model work ran past {budget:.1f} s and was stopped") from None

    def _done(self, future: asyncio.Future) -> None:
        self._places.release()
        if not future.cancelled():
            future.exception()        # retrieved: a caller that went away leaves no warning

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
