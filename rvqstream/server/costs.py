"""What the scheduler's work costs (seconds), learned from the runs it makes, and how late the event
loop runs.

A group of work items run together (``scheduler.ItemGroup``) costs model calls and Python work:

- model seconds ~ ``per_round`` x rounds + ``per_token`` x tokens: each round is one batched call
  (or a few, ``IntStepModel.frames`` splits rows by frame length) with a fixed part, the runtime's
  per-node overhead; every token put through the model costs about the same;
- other seconds ~ ``per_item`` x items + ``per_item_token`` x tokens: tokenizing, the arithmetic
  coder, fallback frames, batch writing, handing results back.

Each is a least-squares fit of two coefficients over recent groups (``DecayingFit``), seeded by a
warm-up that runs groups of different shapes, so a prediction for a group of 60 streams' flushes
is as good as one for a single stream's frame.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass


class DecayingFit:
    """``y ~ c0 * x0 + c1 * x1`` (no intercept, coefficients >= 0) by least squares over the
    samples so far, each weighing ``decay`` times less with every later sample. Until ``anchor``,
    plain least squares; after it, a light pull (``PULL`` of the warm-up's weight) toward the
    coefficients it had then, so that a run of samples of one shape (a quiet server's single
    frames) cannot swing the coefficients the other shapes need."""

    PULL = 0.05

    def __init__(self, decay: float = 0.95):
        self.decay = decay
        self._xx = [0.0, 0.0, 0.0]          # sum of w*x0*x0, w*x0*x1, w*x1*x1
        self._xy = [0.0, 0.0]
        self._prior: tuple[float, float, float, float] | None = None   # (c0, c1, weight0, weight1)
        self.coef = (0.0, 0.0)

    def add(self, x0: float, x1: float, y: float) -> None:
        d = self.decay
        self._xx = [d * self._xx[0] + x0 * x0, d * self._xx[1] + x0 * x1, d * self._xx[2] + x1 * x1]
        self._xy = [d * self._xy[0] + x0 * y, d * self._xy[1] + x1 * y]
        self.coef = self._solve()

    def anchor(self) -> None:
        """Keep the current coefficients as the pull's target (after the warm-up)."""
        self._prior = (*self.coef, self.PULL * self._xx[0], self.PULL * self._xx[2])

    def predict(self, x0: float, x1: float) -> float:
        return self.coef[0] * x0 + self.coef[1] * x1

    def _solve(self) -> tuple[float, float]:
        a, b, c = self._xx
        y0, y1 = self._xy
        if self._prior is not None:
            p0, p1, w0, w1 = self._prior
            a, c, y0, y1 = a + w0, c + w1, y0 + w0 * p0, y1 + w1 * p1
        det = a * c - b * b
        if a * c > 0 and det > 1e-9 * a * c:
            c0, c1 = (c * y0 - b * y1) / det, (a * y1 - b * y0) / det
            if c0 >= 0 and c1 >= 0:
                return c0, c1
        # the best fit with one coefficient 0 (the other alone)
        fits = [(max(y0, 0.0) / a if a > 0 else 0.0, 0.0), (0.0, max(y1, 0.0) / c if c > 0 else 0.0)]
        return min(fits, key=lambda f: f[0] * f[0] * a + f[1] * f[1] * c - 2 * (f[0] * y0 + f[1] * y1))


@dataclass
class GroupShape:
    """What a group of work items puts through the model: rounds (its items' most frames), tokens,
    and items (those run degraded count as items, with no model work)."""

    rounds: int = 0
    tokens: float = 0.0
    items: int = 0

    def plus(self, tokens: float, frame: int, model: bool) -> GroupShape:
        """This shape with one more item of ``tokens`` (estimated; run with the model or not)."""
        if not model:
            return GroupShape(self.rounds, self.tokens, self.items + 1)
        return GroupShape(max(self.rounds, math.ceil(tokens / frame)), self.tokens + tokens, self.items + 1)


class CostModel:
    """Predicted seconds of work (see the module docstring); ``frame``: tokens in a full frame."""

    def __init__(self, frame: int):
        self.frame = frame
        self.model = DecayingFit()      # model seconds ~ rounds, tokens
        self.other = DecayingFit()      # other seconds ~ items, tokens

    def predict(self, shape: GroupShape) -> float:
        return (self.model.predict(shape.rounds, shape.tokens)
                + self.other.predict(shape.items, shape.tokens))

    def one_frame(self) -> float:
        """One stream's flush of one full frame, alone."""
        return self.predict(GroupShape(1, self.frame, 1))

    def update(self, shape: GroupShape, cost: float, model_s: float) -> None:
        """Folds in a group that ran: ``shape`` as measured, ``cost`` seconds in all, ``model_s``
        of them in model calls."""
        if shape.rounds:
            self.model.add(shape.rounds, shape.tokens, model_s)
        self.other.add(shape.items, shape.tokens, max(0.0, cost - model_s))

    def anchor(self) -> None:
        """The warm-up is over: its fits are what later ones are pulled toward."""
        self.model.anchor()
        self.other.anchor()


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
