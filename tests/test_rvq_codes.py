"""Residual quantizer and SemanticIndex: codes, prefixes, and search against a brute-force score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.train_codes import fit
from rvqstream.models.rvq_codes import K, ResidualQuantizer, SemanticIndex


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((40, 24)).astype(np.float32)
    x = centers[rng.integers(40, size=3000)] + 0.3 * rng.standard_normal((3000, 24)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def rvq(data) -> ResidualQuantizer:
    return fit(data, 5, iters=6, log=lambda s: None)


def test_every_prefix_of_a_code_is_a_code(rvq, data):
    codes = rvq.encode(data)
    assert codes.shape == (len(data), 5) and codes.dtype == np.uint8
    errors = [float(((data - rvq.decode(codes[:, :s])) ** 2).sum(1).mean()) for s in range(1, 6)]
    assert all(b < a for a, b in itertools.pairwise(errors)), errors   # each stage takes error away
    assert (rvq.encode(data, 3) == codes[:, :3]).all()                 # a prefix is the short code


def test_round_trip_through_bytes(rvq, data):
    again = ResidualQuantizer.from_bytes(rvq.to_bytes())
    assert (again.encode(data[:50]) == rvq.encode(data[:50])).all()


def test_bad_shapes_are_refused(rvq):
    with pytest.raises(ValueError):
        ResidualQuantizer(np.zeros((2, K - 1, 4), np.float32))
    with pytest.raises(ValueError):
        rvq.tables(np.zeros(24), 6)


@pytest.mark.parametrize("stages", [5, 4, 1])
def test_search_ranks_as_the_brute_force_score(rvq, data, stages):
    codes = rvq.encode(data)
    index = SemanticIndex(rvq, stages)
    for a in range(0, len(data), 700):      # added in several calls: the index grows
        index.add(np.arange(a, min(a + 700, len(data))) + 10, codes[a:a + 700])
    assert len(index) == len(data) and (index.codes == codes[:, :stages]).all()
    q = data[7]
    brute = rvq.decode(codes[:, :stages]) @ q
    np.testing.assert_allclose(index.scores(q), brute, rtol=1e-5, atol=1e-5)
    hits = index.search(q, k=10)
    assert [h.offset for h in hits] == list(np.argsort(-brute, kind="stable")[:10] + 10) or \
        np.allclose(sorted(h.score for h in hits), sorted(np.sort(brute)[-10:]), atol=1e-5)
    assert hits[0].score >= hits[-1].score


def test_fewer_stages_at_search_time(rvq, data):
    index = SemanticIndex(rvq)
    index.add(np.arange(len(data)), rvq.encode(data))
    np.testing.assert_allclose(index.scores(data[0], stages=2), rvq.decode(rvq.encode(data, 2)) @ data[0],
                               rtol=1e-5, atol=1e-5)


def test_drop_below_forgets_removed_offsets(rvq, data):
    index = SemanticIndex(rvq)
    index.add(np.arange(100), rvq.encode(data[:100]))
    index.drop_below(60)
    assert list(index.offsets) == list(range(60, 100)) and index.end_offset == 100
    assert all(h.offset >= 60 for h in index.search(data[0], k=50))
    assert SemanticIndex(rvq).search(data[0]) == []
