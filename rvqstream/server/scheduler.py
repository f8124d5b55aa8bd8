"""The scheduler: model work from every encode stream runs on a few worker threads, earliest
deadline first, batched across streams.

Work items (one per stream at a time: push text, flush, end message) are gathered for at most
``max_queue_delay_ms`` into a batch, which joins a deadline-ordered ready queue; each of
``workers`` threads takes the item due first whenever it is free, with every other ready item of
the same integer model (up to ``max_batch``), and runs them together: each item's operations are
frame requests (``coding.Frames``), and every round computes the pending frame of every item in
one model call (``IntStepModel.frames``: the same tables as alone), so the event loop never blocks
on the model and many streams cost little more than one. An item's cost is predicted as a fixed part plus a per-token part times the tokens it
may put through the model; both are moving averages of measured runs, seeded by a warm-up run at
start (``warm_up``). When a worker takes an item whose frames would be out past the stream's
deadline (now + predicted cost + the event loop's current lag, ``LoopLag``: frames wait that long
again to leave), the item runs degraded: its frames are sent in fallback form (no language-model work at all).
Its frames are flagged and counted. Text is never dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from dataclasses import dataclass, field

from rvqstream.models import Batch, Codec, StreamEncoder
from rvqstream.models.coding import FrameRequest, Frames, run_frames
from rvqstream.models.int_runtime import IntStepModel
from rvqstream.server.telemetry import Metrics

EWMA = 0.1                # weight of the newest sample in a cost average
CHARS_PER_TOKEN = 3.0     # to estimate the tokens of text not yet tokenized
WARM_UP_TEXT = ("The server streams text through a learned codec; every frame must be out within "
                "its budget, so the scheduler predicts what each piece of work will cost. ") * 3


@dataclass
class WorkItem:
    """One stream's pending operations, run in order: ("push", text), ("flush",), ("end",)."""

    encoder: StreamEncoder
    ops: list[tuple]
    deadline: float | None            # monotonic seconds by which frames must be out; None: no text waits
    future: asyncio.Future = field(default=None)
    degraded: bool = False
    queued_at: float = 0.0            # monotonic seconds
    cost: float = 0.0                 # measured run time, seconds
    model_tokens: int = 0             # tokens the run put through the model

    @property
    def forces_frames(self) -> bool:
        return any(op[0] != "push" for op in self.ops)

    def token_estimate(self, frame: int) -> float:
        """Tokens this item may put through the model: all it holds if it forces frames out,
        else only the full frames."""
        enc = self.encoder
        chars = enc.held_chars + sum(len(op[1]) for op in self.ops if op[0] == "push")
        held = enc.held_tokens + chars / CHARS_PER_TOKEN
        return held if self.forces_frames else frame * (held // frame)


def run_ops(item: WorkItem) -> list[Batch]:
    """Runs ``item``'s operations on its encoder (on a worker thread) -> the batches of its
    flushes and message ends, in order (pushes code full frames and hold them)."""
    start = time.monotonic()
    batches = run_frames(item.encoder.parts, ops_frames(item))
    item.cost = time.monotonic() - start
    return batches


def ops_frames(item: WorkItem) -> Frames[list[Batch]]:
    """``run_ops`` as frame requests (``coding.Frames``), for a batched driver."""
    enc = item.encoder
    enc.fallback_only = item.degraded             # shed the language model's work
    batches: list[Batch] = []
    tokens = enc.model_tokens
    try:
        for op in item.ops:
            if op[0] == "push":
                yield from enc.push_frames(op[1])
            elif op[0] == "flush":
                if (batch := (yield from enc.flush_frames())) is not None:
                    batches.append(batch)
            else:
                batches.append((yield from enc.end_message_frames()))
    finally:
        enc.fallback_only = False
        item.model_tokens = enc.model_tokens - tokens
    return batches


class ItemGroup:
    """Work items of one integer model run together: each round, one model call computes the
    pending frame request of every item (``run``); each item's result or error settles its own
    future through ``settle``."""

    def __init__(self, items: list[WorkItem]):
        self.items = items
        self.cost = 0.0          # seconds the whole group took
        self.model_s = 0.0       # seconds of it in model calls
        self.tokens = 0          # tokens it put through the model

    def run(self, settle) -> None:
        start = time.monotonic()
        step = self.items[0].encoder.parts.step
        waiting: dict[int, tuple[WorkItem, Frames, FrameRequest]] = {}
        for i, item in enumerate(self.items):
            self._advance(waiting, i, item, ops_frames(item), None, settle)
        while waiting:
            order = list(waiting.values())
            t = time.monotonic()
            tables = step.frames([r.state for _, _, r in order], [r.symbols for _, _, r in order])
            self.model_s += time.monotonic() - t
            for (i, (item, gen, _)), t in zip(list(waiting.items()), tables):
                self._advance(waiting, i, item, gen, t, settle)
        self.cost = time.monotonic() - start
        self.tokens = sum(item.model_tokens for item in self.items)
        for item in self.items:
            item.cost = self.cost * (item.model_tokens / self.tokens if self.tokens else 1 / len(self.items))

    @staticmethod
    def _advance(waiting: dict, i: int, item: WorkItem, gen: Frames, sent, settle) -> None:
        try:
            request = next(gen) if sent is None else gen.send(sent)
        except StopIteration as stop:
            waiting.pop(i, None)
            settle(item.future, stop.value, None)
        except Exception as e:  # noqa: BLE001 - one stream's failure stays with that stream
            waiting.pop(i, None)
            settle(item.future, None, e)
        else:
            waiting[i] = (item, gen, request)


class CostModel:
    """Predicted run time of a work item (seconds): ``base + per_token * tokens``."""

    def __init__(self, frame: int):
        self.frame = frame
        self.base = 0.0
        self.per_token = 0.0
        self._seeded = {"base": False, "per_token": False}

    def predict(self, item: WorkItem) -> float:
        return self.base + self.per_token * item.token_estimate(self.frame)

    def update(self, item: WorkItem) -> None:
        """Folds in a measured run (the first sample of each part sets it)."""
        self.update_run(item.cost, item.model_tokens)

    def update_group(self, cost: float, model_s: float, model_tokens: int) -> None:
        """Folds in a batched group: its model calls (``model_s`` seconds for ``model_tokens``) teach
        the per-token part, the rest (tokenizing, fallback frames, bookkeeping) the fixed part, so
        that items run degraded do not inflate the model's predicted cost."""
        self._fold("base", cost - model_s)
        if model_tokens:
            self._fold("per_token", model_s / model_tokens)

    def _fold(self, name: str, sample: float) -> None:
        old = getattr(self, name)
        setattr(self, name, old + EWMA * (sample - old) if self._seeded[name] else sample)
        self._seeded[name] = True

    def update_run(self, cost: float, model_tokens: int) -> None:
        """Folds in a run of one item: ``cost`` seconds that put ``model_tokens`` through the model."""
        if model_tokens == 0:
            self._fold("base", cost)
        else:
            self._fold("per_token", max(0.0, cost - self.base) / model_tokens)


class DecayingMax:
    """The largest recent sample (seconds): each sample raises it; it halves every ``half_life`` s."""

    def __init__(self, half_life: float):
        self.half_life = half_life
        self._value, self._at = 0.0, time.monotonic()

    @property
    def value(self) -> float:
        return self._value * 0.5 ** ((time.monotonic() - self._at) / self.half_life)

    def add(self, sample: float) -> None:
        now = time.monotonic()
        self._value = max(sample, self._value * 0.5 ** ((now - self._at) / self.half_life))
        self._at = now


class LoopLag(DecayingMax):
    """How late the event loop runs its callbacks now (seconds): a ticker measures how far each
    ``INTERVAL`` sleep overshoots."""

    INTERVAL = 0.005

    def __init__(self):
        super().__init__(half_life=0.1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.INTERVAL)
            self.add(loop.time() - t - self.INTERVAL)


class Scheduler:
    """Deadline-ordered work queue over ``workers`` threads (times in seconds)."""

    def __init__(self, metrics: Metrics, workers: int = 2, max_queue_delay_ms: float = 2.0,
                 max_batch: int = 64, frame: int = 16):
        self.metrics = metrics
        self.max_queue_delay = max_queue_delay_ms / 1000
        self.max_batch = max_batch
        self.workers = workers
        self.costs = CostModel(frame)
        self.lag = LoopLag()
        self.wait = DecayingMax(half_life=1.0)   # recent time from a flush's queueing to its start
        self._incoming: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._ready: list[tuple] = []          # heap of (due, seq, job); guarded by _cv
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._queued_cost = 0.0                # predicted cost of the work not yet started
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"rvqstream-model-{i}", daemon=True)
                         for i in range(workers)]
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for t in self._threads:
            t.start()
        self._tasks = [asyncio.create_task(self._gather(), name="rvqstream-scheduler"),
                       asyncio.create_task(self.lag.run(), name="rvqstream-loop-lag")]

    async def warm_up(self, codec: Codec) -> None:
        """Runs the model a few times (first runs allocate), then seeds the costs from a last run
        of an empty flush and of a flush of a few frames."""
        for seed in (False, False, True):
            for text in ("", WARM_UP_TEXT):
                item = WorkItem(codec.encoder("exact"), [("push", text), ("end",)], None)
                await self.call(run_ops, item)
                if seed:
                    self.costs.update(item)

    async def run(self, item: WorkItem) -> list[Batch]:
        """Queues ``item`` and returns its batches once it ran."""
        item.future = self._loop.create_future()
        item.queued_at = time.monotonic()
        self.metrics.queue_depth.add(1)
        self._incoming.put_nowait(item)
        return await item.future

    async def call(self, fn, *args):
        """Runs other model work (compress, decompress, decode) on the same threads, due now."""
        future = self._loop.create_future()
        self._push([(time.monotonic(), _Call(fn, args, future), 0.0)])
        return await future

    def expected_delay(self) -> float:
        """Seconds a flush of one frame queued now should take until its frame is out (for flush
        timers): the wait to start (the queued work shared by the workers, or, when more, the
        recent waits: streams flushing together queue behind each other), the frame itself, and
        the event loop's lag on the way out."""
        return (max(self.max_queue_delay + self._queued_cost / self.workers, self.wait.value)
                + self.lag.value + self.costs.base + self.costs.per_token * self.costs.frame)

    async def _gather(self) -> None:
        """Collects items into batches (at most ``max_queue_delay`` of waiting) for the ready queue."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._incoming.get()]
            until = loop.time() + self.max_queue_delay
            while len(batch) < self.max_batch:
                if self._incoming.empty():
                    wait = until - loop.time()
                    if wait <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._incoming.get(), wait))
                    except TimeoutError:
                        break
                else:
                    batch.append(self._incoming.get_nowait())
            self.metrics.queue_depth.add(-len(batch))
            self.metrics.batch_size.record(len(batch))
            self._push([(math.inf if it.deadline is None else it.deadline, it, self.costs.predict(it))
                        for it in batch])

    def _push(self, jobs: list[tuple]) -> None:
        with self._cv:
            for due, job, cost in jobs:
                heapq.heappush(self._ready, (due, next(self._seq), job, cost))
                self._queued_cost += cost
            self._cv.notify(len(jobs))

    def _worker(self) -> None:
        while True:
            with self._cv:
                while not self._ready and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                _, _, job, cost = heapq.heappop(self._ready)
                self._queued_cost = max(0.0, self._queued_cost - cost)
                group = [job] + self._take_batchable(job) if isinstance(job, WorkItem) else [job]
            if isinstance(job, _Call):
                self._settle(job.future, job.fn, *job.args)
                continue
            group = [it for it in group if not it.future.done()]      # cancelled streams drop out
            if not group:
                continue
            now, tokens = time.monotonic(), 0.0
            for it in group:              # due first: an item runs with the model if the group so far,
                if it.forces_frames:      # it included, is predicted to finish by its deadline
                    self.wait.add(now - it.queued_at)
                estimate = it.token_estimate(self.costs.frame)
                finish = now + self.costs.base + self.costs.per_token * (tokens + estimate) + self.lag.value
                if it.forces_frames and it.deadline is not None and finish > it.deadline:
                    it.degraded = True
                else:
                    tokens += estimate
            self.metrics.model_batch.record(len(group))
            if len(group) == 1:           # not necessarily ``job``: it may have been cancelled
                (item,) = group
                self._settle(item.future, run_ops, item)
                self.costs.update(item)
                continue
            run = ItemGroup(group)
            run.run(self._deliver)
            self.costs.update_group(run.cost, run.model_s, run.tokens)

    def _take_batchable(self, first: WorkItem) -> list[WorkItem]:
        """Pops the ready items (due first) that can run in one group with ``first``: the same
        integer model, up to ``max_batch`` in all (caller holds ``_cv``)."""
        step = first.encoder.parts.step
        if not isinstance(step, IntStepModel):
            return []
        taken, kept = [], []
        while self._ready and len(taken) + 1 < self.max_batch:
            entry = heapq.heappop(self._ready)
            job = entry[2]
            if isinstance(job, WorkItem) and job.encoder.parts.step is step:
                taken.append(job)
                self._queued_cost = max(0.0, self._queued_cost - entry[3])
            else:
                kept.append(entry)
        for entry in kept:
            heapq.heappush(self._ready, entry)
        return taken

    def _deliver(self, future: asyncio.Future, result, error: BaseException | None) -> None:
        """Hands a result or an exception computed here to ``future`` on the loop."""
        try:
            self._loop.call_soon_threadsafe(_resolve, future, result, error)
        except RuntimeError:     # the loop is closed: nobody waits any more
            pass

    def _settle(self, future: asyncio.Future, fn, *args) -> None:
        """Runs ``fn(*args)`` here and hands its result or exception to ``future`` on the loop."""
        try:
            result, error = fn(*args), None
        except Exception as e:  # noqa: BLE001 - one stream's failure stays with that stream
            result, error = None, e
        self._deliver(future, result, error)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._cv:
            self._closed = True
            pending, self._ready = self._ready, []
            self._cv.notify_all()
        for _, _, job, _ in pending:
            _resolve(job.future, None, RuntimeError("the server is shutting down"))
        await asyncio.to_thread(lambda: [t.join() for t in self._threads])


@dataclass
class _Call:
    fn: object
    args: tuple
    future: asyncio.Future


def _resolve(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
