"""The span-set questions the validators ask many times, against the plain answers."""

import random

from piilab.span_sets import containing, overlaps, taken_by


def test_taken_by_answers_as_overlaps_does_for_overlapping_sets():
    rng = random.Random(7)
    for _ in range(200):
        spans = [(a, a + rng.randint(1, 30)) for a in (rng.randint(0, 200) for _ in range(rng.randint(0, 12)))]
        hit = taken_by(spans)
        for _ in range(50):
            start = rng.randint(0, 240)
            end = start + rng.randint(1, 20)
            assert hit(start, end) == overlaps((start, end), spans)


def test_containing_finds_the_longer_whole_that_holds_a_span():
    wholes = [(10, 30), (40, 41), (50, 90)]
    around = containing(wholes)
    assert around(12, 20) == (10, 30) and around(10, 30) is None  # the whole itself is no "around"
    assert around(29, 31) is None and around(55, 90) == (50, 90) and around(0, 5) is None
    rng = random.Random(3)
    for _ in range(2000):
        start = rng.randint(0, 95)
        end = start + rng.randint(1, 10)
        expected = [w for w in wholes if w[0] <= start and end <= w[1] and w != (start, end)]
        assert around(start, end) == (expected[0] if expected else None)
