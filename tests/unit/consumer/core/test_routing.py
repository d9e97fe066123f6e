"""Canary routing by key hash: stable (a fixed digest, not Python's salted hash), a share of the key space,
monotone in the fraction, keyless records on the champion; and score_batch serving each share with its model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from consumer.core.handle import ModelHandle
from consumer.core.routing import BUCKETS, canary_mask, key_bucket, routes_to_canary, threshold
from consumer.core.scoring import Incoming, score_batch
from producer.bad_records import good_record
from schemas import topics
from schemas.codecs import PredictionEncoder, RecordDecoder, RecordEncoder, WireFormat, decode_prediction

KEYS = [f"record-{i}".encode() for i in range(20_000)]


def test_the_bucket_is_the_first_8_bytes_of_sha256_big_endian() -> None:
    assert key_bucket(b"abc") == int(hashlib.sha256(b"abc").hexdigest()[:16], 16)


def test_the_mask_agrees_with_the_per_key_rule() -> None:
    mask = canary_mask(KEYS[:2000], 0.2)
    assert mask.tolist() == [routes_to_canary(k, 0.2) for k in KEYS[:2000]]


def test_about_the_fraction_of_keys_goes_to_the_canary() -> None:
    share = canary_mask(KEYS, 0.2).mean()
    assert 0.19 < share < 0.21


def test_a_larger_fraction_only_adds_keys() -> None:
    small, large = canary_mask(KEYS, 0.1), canary_mask(KEYS, 0.3)
    assert not (small & ~large).any() and large.sum() > small.sum()


def test_off_all_and_keyless() -> None:
    keys: list[bytes | None] = [b"a", None, b"b"]
    assert not canary_mask(keys, 0.0).any()
    assert canary_mask(keys, 1.0).tolist() == [True, False, True]
    assert threshold(0.0) == 0 and threshold(1.0) == BUCKETS and threshold(-1) == 0
    with pytest.raises(ValueError):
        threshold(float("nan"))


def test_the_same_keys_route_the_same_in_another_process_with_another_hash_seed() -> None:
    code = ("from consumer.core.routing import canary_mask; "
            "print(''.join('1' if m else '0' for m in canary_mask([f'record-{i}'.encode() for i in range(500)], 0.2)))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    here = "".join("1" if m else "0" for m in canary_mask(KEYS[:500], 0.2))
    assert runs == {here}


class Constant:
    def __init__(self, value: float, fail: bool = False) -> None:
        self.value, self.fail, self.calls = value, fail, 0

    def predict(self, frame: Any) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise RuntimeError("broken canary")
        return np.full(len(frame["median_income"]), self.value)


def _handle(model: Any, version: str) -> ModelHandle:
    return ModelHandle(model=model, name="m", version=version, alias="champion")


def _batch(n: int, fmt: WireFormat = WireFormat.JSON) -> list[Incoming]:
    return [Incoming(key=f"record-{i}".encode(), value=RecordEncoder().encode(good_record(i), fmt),
                     topic="housing.records", partition=0, offset=i) for i in range(n)]


@pytest.mark.parametrize("fmt", [WireFormat.JSON, WireFormat.AVRO_SINGLE_OBJECT])
def test_score_batch_serves_the_canary_share_with_the_canary(fmt: WireFormat) -> None:
    champion, canary = Constant(1.0), Constant(2.0)
    batch = _batch(300, fmt)
    result = score_batch(batch, _handle(champion, "1"), decoder=RecordDecoder(), encoder=PredictionEncoder(),
                         canary=_handle(canary, "2"), canary_fraction=0.3)
    expected = canary_mask([m.key for m in batch], 0.3)
    assert champion.calls == 1 and canary.calls == 1  # one call per model per batch
    assert len(result.scored) == 300 and not result.rejected
    for scored, on_canary in zip(result.scored, expected, strict=True):
        value = decode_prediction(scored.value)
        assert (value["role"], value["model_version"], value["prediction"]) == (
            ("canary", "2", 2.0) if on_canary else ("champion", "1", 1.0))
        assert scored.role == value["role"]
        assert dict(scored.headers)[topics.HEADER_MODEL_VERSION] == value["model_version"].encode()
    assert [s.source.offset for s in result.scored] == list(range(300))  # input order kept


def test_no_canary_or_fraction_zero_is_all_champion() -> None:
    canary = Constant(2.0)
    result = score_batch(_batch(50), _handle(Constant(1.0), "1"), decoder=RecordDecoder(),
                         encoder=PredictionEncoder(), canary=_handle(canary, "2"), canary_fraction=0.0)
    assert canary.calls == 0 and {decode_prediction(s.value)["role"] for s in result.scored} == {"champion"}


def test_a_failing_canary_dead_letters_its_rows_naming_itself_and_the_champion_keeps_its_own() -> None:
    batch = _batch(100)
    result = score_batch(batch, _handle(Constant(1.0), "1"), decoder=RecordDecoder(), encoder=PredictionEncoder(),
                         canary=_handle(Constant(2.0, fail=True), "2"), canary_fraction=0.5)
    on_canary = canary_mask([m.key for m in batch], 0.5)
    assert len(result.rejected) == int(on_canary.sum()) and len(result.scored) == 100 - int(on_canary.sum())
    assert {dict(r.headers)[topics.HEADER_MODEL_VERSION] for r in result.rejected} == {b"2"}
    assert {r.reason for r in result.rejected} == {"predict_failed"}
