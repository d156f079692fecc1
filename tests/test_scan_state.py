"""The reconcile's memory of what it has seen: compact, and exact."""

from __future__ import annotations

import random

from pipelines.elasticfunnels import Hashes64


def test_hashes64_agrees_with_a_set_across_merges(monkeypatch):
    monkeypatch.setattr(Hashes64, "BATCH", 8)
    rng = random.Random(1)
    values = [rng.getrandbits(64) for _ in range(200)] + [0, 2**64 - 1, 5, 5]
    hashes, reference = Hashes64(), set()
    for value in values:
        assert (value in hashes) == (value in reference)
        hashes.add(value)
        reference.add(value)
    assert all(value in hashes for value in values)
    others = {rng.getrandbits(64) for _ in range(500)} - reference
    assert not any(value in hashes for value in others)
    # Everything but the last few is in the sorted array, not the batch.
    assert len(hashes._sorted) >= len(reference) - 8
