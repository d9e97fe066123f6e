"""A key whose bucket is exactly the threshold stays with the champion ("below the fraction"), in the per-key
rule and in the batch mask alike."""

from __future__ import annotations

from consumer.core.routing import BUCKETS, canary_mask, key_bucket, routes_to_canary, threshold

# b"key-3924"'s bucket has its low 11 bits zero, so bucket / 2**64 is an exact float and the threshold of that
# fraction is the bucket itself.
ON_THE_EDGE = b"key-3924"


def test_a_key_exactly_on_the_threshold_is_the_champions() -> None:
    bucket = key_bucket(ON_THE_EDGE)
    fraction = bucket / BUCKETS
    assert threshold(fraction) == bucket
    assert routes_to_canary(ON_THE_EDGE, fraction) is False
    assert canary_mask([ON_THE_EDGE], fraction).tolist() == [False]
    assert routes_to_canary(ON_THE_EDGE, (bucket + 2048) / BUCKETS) is True
