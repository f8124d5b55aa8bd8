"""The batching scheduler: model work from every encode stream runs through one queue.

Work items (one per stream at a time: push text, flush, end message) wait at most
``max_queue_delay_ms`` for company, then run as one batch on a worker thread, so that many streams
share a few threads and the event loop never blocks on the model. Item cost is tracked as two
moving averages (items that force frames out, and plain pushes). Before a batch runs, each item's
finish time is predicted from the costs of the items ahead of it; an item that would finish after
its stream's deadline runs degraded: in the exact tier its frames are sent in fallback form (no
language-model work at all), in the semantic tier with fewer stages. Its frames are flagged and
counted. Text is never
dropped.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rvqstream.models import Frame, StreamEncoder, Tier
from rvqstream.server.telemetry import Metrics

EWMA = 0.2            # weight of the newest sample in a cost average


@dataclass
class WorkItem:
    """One stream's pending operations, run in order: ("push", text), ("flush",), ("end",)."""

    encoder: StreamEncoder
    ops: list[tuple]
    deadline: float | None            # monotonic seconds by which frames must be out; None: no text waits
    max_stages: int                   # the stream's normal stage cap
    degraded_stages: int              # the cap when degraded
    future: asyncio.Future = field(default=None)
    degraded: bool = False
    cost: float = 0.0                 # measured run time, seconds

    @property
    def forces_frames(self) -> bool:
        return any(op[0] != "push" for op in self.ops)


def run_ops(item: WorkItem) -> list[Frame]:
    """Runs ``item``'s operations on its encoder (on a worker thread) -> frames, in order."""
    enc = item.encoder
    enc.stages_cap = item.degraded_stages if item.degraded else item.max_stages
    enc.fallback_only = item.degraded and enc.tier == Tier.EXACT   # shed the language model's work
    frames: list[Frame] = []
    start = time.monotonic()
    try:
        for op in item.ops:
            if op[0] == "push":
                frames += enc.push(op[1])
            elif op[0] == "flush":
                frames += enc.flush()
            else:
                frames += enc.end_message()
    finally:
        enc.stages_cap = item.max_stages
        enc.fallback_only = False
        item.cost = time.monotonic() - start
    return frames


class Scheduler:
    """Dynamic batcher of encoder work over ``workers`` threads (times in seconds)."""

    def __init__(self, metrics: Metrics, workers: int = 2, max_queue_delay_ms: float = 2.0,
                 max_batch: int = 64):
        self.metrics = metrics
        self.max_queue_delay = max_queue_delay_ms / 1000
        self.max_batch = max_batch
        self.workers = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rvqstream-model")
        self._slots = asyncio.Semaphore(workers)
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._queued_cost = 0.0       # predicted cost of the items waiting
        self._task: asyncio.Task | None = None
        self.cost = {True: 0.0, False: 0.0}   # moving average run time by item.forces_frames

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="rvqstream-scheduler")

    async def run(self, item: WorkItem) -> list[Frame]:
        """Queues ``item`` and returns its frames once it ran."""
        item.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(item)
        self._queued_cost += self.cost[item.forces_frames]
        self.metrics.queue_depth.add(1)
        return await item.future

    async def call(self, fn, *args):
        """Runs other model work (compress, decompress, decode) on the same worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def expected_delay(self) -> float:
        """Seconds a flush queued now should take until its frames are out (for flush timers)."""
        return self.max_queue_delay + self.cost[True] + self._queued_cost / self.workers

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            until = loop.time() + self.max_queue_delay
            while len(batch) < self.max_batch:
                if self._queue.empty():
                    wait = until - loop.time()
                    if wait <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._queue.get(), wait))
                    except TimeoutError:
                        break
                else:
                    batch.append(self._queue.get_nowait())
            self.metrics.queue_depth.add(-len(batch))
            self._queued_cost = max(0.0, self._queued_cost - sum(self.cost[it.forces_frames] for it in batch))
            batch = [it for it in batch if not it.future.done()]   # streams that were cancelled
            if not batch:
                continue
            await self._slots.acquire()
            asyncio.create_task(self._run_batch(batch))

    async def _run_batch(self, batch: list[WorkItem]) -> None:
        try:
            self.metrics.batch_size.record(len(batch))
            self._plan_degradation(batch, time.monotonic())
            try:
                results = await asyncio.get_running_loop().run_in_executor(self.executor, _run_all, batch)
            except Exception as e:  # noqa: BLE001 - e.g. the pool shut down: no stream waits forever
                results = [e] * len(batch)
            for item, result in zip(batch, results):
                key = item.forces_frames
                self.cost[key] += EWMA * (item.cost - self.cost[key]) if self.cost[key] else item.cost
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        finally:
            self._slots.release()

    def _plan_degradation(self, batch: list[WorkItem], start: float) -> None:
        """Marks the items that would finish past their deadline at the predicted costs."""
        finish = start
        for item in batch:
            finish += self.cost[item.forces_frames]
            if item.deadline is not None and item.forces_frames and finish > item.deadline:
                item.degraded = True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.executor.shutdown(wait=True, cancel_futures=True)


def _run_all(batch: list[WorkItem]) -> list:
    out = []
    for item in batch:
        try:
            out.append(run_ops(item))
        except Exception as e:  # noqa: BLE001 - one stream's failure stays with that stream
            out.append(e)
    return out
