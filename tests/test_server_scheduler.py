"""The scheduler with the real codec: earliest deadline first, degradation only when a deadline
cannot be met, costs seeded at start, text never lost."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.metrics import NoOpMeterProvider

from rvqstream.server.scheduler import Scheduler, WorkItem
from rvqstream.server.telemetry import Metrics

TEXT = "Frames leave in deadline order, and a frame that cannot make its deadline degrades. " * 2


def item(codec, deadline: float | None) -> WorkItem:
    return WorkItem(codec.encoder("exact"), [("push", TEXT), ("end",)], deadline, codec.parts.stages, 0)


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
            return s.costs.base, s.costs.per_token, s.expected_delay()
        finally:
            await s.close()

    base, per_token, delay = asyncio.run(main())
    assert base > 0 and per_token > 0
    assert delay >= per_token * registry.default.parts.frame


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
