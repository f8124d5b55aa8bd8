"""The scheduler's cost fits: least squares over recent groups, coefficients never negative."""

from __future__ import annotations

import pytest

from rvqstream.server.costs import CostModel, DecayingFit, GroupShape


def test_fit_recovers_two_coefficients_from_groups_of_different_shapes():
    fit = DecayingFit()
    for x0, x1 in [(1, 16), (1, 200), (3, 48), (2, 640), (1, 10)] * 3:
        fit.add(x0, x1, 0.0008 * x0 + 0.00006 * x1)
    assert fit.coef == pytest.approx((0.0008, 0.00006), rel=1e-6)


def test_fit_follows_recent_samples_and_never_goes_negative():
    fit = DecayingFit(decay=0.5)
    for x0, x1 in [(1, 10), (1, 100)] * 4:
        fit.add(x0, x1, 0.001 * x0 + 0.0001 * x1)
    for x0, x1 in [(1, 10), (1, 100)] * 20:                  # the work got twice as dear
        fit.add(x0, x1, 0.002 * x0 + 0.0002 * x1)
    assert fit.coef == pytest.approx((0.002, 0.0002), rel=1e-3)
    neg = DecayingFit()
    for x0, x1 in [(1, 10), (2, 10), (3, 10)]:
        neg.add(x0, x1, 0.01 - 0.001 * x0)                 # best unconstrained fit: negative c0
    assert min(neg.coef) == 0.0 and neg.predict(1, 10) > 0


def test_anchored_fit_keeps_what_one_shape_cannot_tell():
    """After the warm-up, groups of one shape only (a quiet server) leave the split between the
    two coefficients near the warm-up's, while predictions for that shape follow the samples."""
    fit = DecayingFit()
    for x0, x1 in [(1, 16), (1, 200)] * 3:
        fit.add(x0, x1, 0.001 * x0 + 0.0001 * x1)
    fit.anchor()
    for _ in range(200):
        fit.add(1, 16, 0.0026)
    assert fit.predict(1, 16) == pytest.approx(0.0026, rel=0.05)
    assert fit.coef[0] > 0 and fit.coef[1] > 0


def test_group_shapes_count_rounds_tokens_and_items():
    shape = GroupShape().plus(40, 16, True).plus(10, 16, True).plus(30, 16, False)
    assert shape == GroupShape(rounds=3, tokens=50, items=3)
    costs = CostModel(16)

    def model_s(s: GroupShape) -> float:
        return 0.0005 * s.rounds + 0.00005 * s.tokens

    def other_s(s: GroupShape) -> float:
        return 0.0002 * s.items + 0.00001 * s.tokens

    for s in (GroupShape(1, 16, 1), GroupShape(2, 200, 20), GroupShape(1, 90, 9)):
        costs.update(s, cost=model_s(s) + other_s(s), model_s=model_s(s))
    want = GroupShape(3, 400, 30)
    assert costs.predict(want) == pytest.approx(model_s(want) + other_s(want), rel=1e-6)
    assert costs.one_frame() == pytest.approx(model_s(GroupShape(1, 16, 1)) + other_s(GroupShape(1, 16, 1)))
