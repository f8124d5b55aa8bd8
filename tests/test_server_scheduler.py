"""The scheduler with the real codec: earliest deadline first, degradation only when a deadline
cannot be met, costs seeded at start, text never lost."""

from __future__ import annotations

import asyncio
import heapq
import time

from opentelemetry.metrics import NoOpMeterProvider

from rvqstream.server.costs import GroupShape
from rvqstream.server.scheduler import Scheduler, WorkItem
from rvqstream.server.telemetry import Metrics

TEXT = "Frames leave in deadline order, and a frame that cannot make its deadline degrades. " * 2


def item(codec, deadline: float | None) -> WorkItem:
    return WorkItem(codec.encoder("exact"), [("push", TEXT), ("end",)], deadline)


async def scheduler(codec, workers: int) -> Scheduler:
    s = Scheduler(Metrics(NoOpMeterProvider().get_meter("test")), workers=workers, max_queue_delay_ms=20,
                  frame=codec.parts.frame)
    s.start()
    await s.warm_up(codec)
    return s


def decoded(codec, batches) -> str:
    dec = codec.decoder()
    return "".join(dec.push(b.data).text for b in batches)


def test_warm_up_seeds_the_cost_model(registry):
    async def main():
        s = await scheduler(registry.default, workers=1)
        try:
            return s.costs, s.expected_delay()
        finally:
            await s.close()

    costs, delay = asyncio.run(main())
    frame = registry.default.parts.frame
    assert costs.model.coef[1] > 0 and costs.other.coef[0] > 0     # per token of model work, per item
    assert 0 < costs.one_frame() <= delay
    # more streams' flushes, and more frames a stream, cost more
    assert costs.predict(GroupShape(1, frame, 1)) < costs.predict(GroupShape(1, 8 * frame, 8))
    assert costs.predict(GroupShape(1, frame, 1)) < costs.predict(GroupShape(4, 4 * frame, 1))


def test_earliest_deadline_runs_first_and_late_work_degrades_without_loss(registry):
    codec = registry.default

    async def main():
        s = await scheduler(codec, workers=1)
        try:
            now = time.monotonic()
            relaxed, urgent, late = item(codec, now + 60), item(codec, now + 30), item(codec, now - 1)
            done: list[str] = []

            async def run(name, it):
                frames = await s.run(it)
                done.append(name)
                return frames

            # one batch (queued within max_queue_delay), one worker: deadline order decides
            results = await asyncio.gather(run("relaxed", relaxed), run("urgent", urgent), run("late", late))
            return done, dict(zip(("relaxed", "urgent", "late"), zip((relaxed, urgent, late), results)))
        finally:
            await s.close()

    done, runs = asyncio.run(main())
    assert done == ["late", "urgent", "relaxed"]
    for name, (it, batches) in runs.items():
        assert decoded(codec, batches) == TEXT, name
        assert it.degraded == (name == "late"), name
        model_frames = sum(b.frames - b.fallback_frames for b in batches)
        assert (model_frames == 0) == (name == "late"), name   # degraded: fallback frames only


def test_streams_run_together_give_the_bytes_each_gives_alone(registry):
    """Many streams' work in one model call per round (the integer model's batched frames): every
    stream's batches are byte-identical to the same work run alone, through messages of different
    lengths, flushes mid-message and a keyframe."""
    codec = registry.default
    texts = [f"Stream {i} says: " + TEXT * (1 + i % 3) + "A" * (i * 7) for i in range(12)]
    texts[5] = " ".join(f"token{i}" for i in range(400))           # past a keyframe

    def ops(text: str) -> list[tuple]:
        cut = len(text) // 3
        return [("push", text[:cut]), ("flush",), ("push", text[cut:]), ("end",)]

    alone = []
    for text in texts:
        enc = codec.encoder("exact")
        out = []
        for op in ops(text):
            if op[0] == "push":
                enc.push(op[1])
            elif op[0] == "flush":
                out.append(enc.flush())
            else:
                out.append(enc.end_message())
        alone.append([b.data for b in out if b is not None])

    recorded: list[int] = []

    async def main():
        s = await scheduler(codec, workers=1)
        s.metrics.model_batch.record = recorded.append
        try:
            items = [WorkItem(codec.encoder("exact"), ops(t), None) for t in texts]
            return await asyncio.gather(*(s.run(it) for it in items))
        finally:
            await s.close()

    together = asyncio.run(main())
    assert [[b.data for b in r] for r in together] == alone
    assert max(recorded) > 1
    assert [decoded(codec, r) for r in together] == texts


class CountingScheduler(Scheduler):
    """The scheduler, recording for each work item whether it would code a frame when queued."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.items: list[tuple[bool, float]] = []     # (forces frames, model tokens estimated)

    async def run(self, item: WorkItem):
        self.items.append((item.forces_frames, item.token_estimate(self.costs.frame)))
        return await super().run(item)


def test_words_reach_the_scheduler_a_frame_or_a_flush_at_a_time(registry):
    """A stream fed word by word within its budget: pushes that could not code a full frame wait
    for more text (or the flush timer) in the session, so work items are far fewer than words,
    each one codes a frame or flushes, and the text decodes whole."""
    from rvqstream._proto import codec_pb2, frame_pb2
    from rvqstream.models import Tier
    from rvqstream.server.encode import EncodeSession, StreamLimits

    codec = registry.default
    words = [" " + w for w in (TEXT * 3).split()]
    batches = []

    async def emit(batch):
        batches.append(batch)

    async def requests():
        for w in words:
            yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(text_utf8=w.encode()))
            await asyncio.sleep(0.002)
        yield codec_pb2.EncodeStreamRequest(chunk=frame_pb2.TextChunk(end_message=True))

    async def main():
        s = CountingScheduler(Metrics(NoOpMeterProvider().get_meter("test")), workers=1,
                              frame=codec.parts.frame)
        s.start()
        await s.warm_up(codec)
        s.items.clear()
        try:
            session = EncodeSession(codec, Tier.EXACT, None, 2000, s, s.metrics,
                                    StreamLimits(200, 1 << 20, 1 << 20, 64), emit)
            await session.run(requests())
        finally:
            await s.close()
        return s.items

    items = asyncio.run(main())
    assert decoded(codec, batches) == "".join(words)
    assert len(items) <= len(words) // 2, (len(items), len(words))
    assert all(forces or tokens > 0 for forces, tokens in items)


def test_items_join_a_group_only_where_it_keeps_every_member_on_time(registry):
    """Group forming with known costs (1 ms a token of model work, nothing else): a flush that
    cannot make its deadline even alone joins degraded; one that would make an earlier member
    late waits, with everything due after it, for a free worker's group, where it runs with the
    model; with no worker free it joins, since it makes its own deadline."""
    codec = registry.default
    s = Scheduler(Metrics(NoOpMeterProvider().get_meter("test")), workers=2, frame=codec.parts.frame)
    s.costs.model.coef, s.costs.other.coef = (0.0, 0.001), (0.0, 0.0)
    loop = asyncio.new_event_loop()

    def items() -> list[WorkItem]:
        now = time.monotonic()
        out = []
        for chars, due_in in ((3, 0.05), (200, 0.06), (150, 0.4), (150, 0.5)):   # chars / 3 tokens
            it = WorkItem(codec.encoder("exact"), [("push", "w" * chars), ("flush",)], now + due_in)
            it.future, it.queued_at = loop.create_future(), now
            out.append(it)
        return out

    try:
        with s._cv:
            a, b, c, d = items()
            s._idle = 1                                      # another worker waits for work
            s._push([(it.deadline, it, 0.0) for it in (b, c, d)])
            assert s._take_group(a) == [a, b] and (a.degraded, b.degraded) == (False, True)
            _, _, job, _ = heapq.heappop(s._ready)
            assert job is c and s._take_group(c) == [c, d]
            assert not (c.degraded or d.degraded) and not s._ready
            a, b, c, d = items()
            s._idle = 0                                      # no worker free
            s._push([(it.deadline, it, 0.0) for it in (b, c, d)])
            assert s._take_group(a) == [a, b, c, d] and [it.degraded for it in (a, b, c, d)] == [
                False, True, False, False]
    finally:
        loop.close()
