"""Where a batch's CPU goes, without Kafka: the minimal loop's work vs ``consumer.core.scoring.score_batch``.

Both score the same 500 JSON records with the same model (one thread); medians over repeated batches. This
explains the throughput ratio c/b: what the product does per record (decode with format detection, validate,
encode the full Prediction) that the minimal loop does not.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd

from consumer.core.batch_decode import decode_validate
from consumer.core.handle import ModelHandle
from consumer.core.scoring import Incoming, score_batch
from producer.records import csv_records, with_ids
from schemas.codecs import PredictionEncoder, RecordDecoder
from schemas.features import FEATURE_COLUMNS
from schemas.validation import validate_record

logger = logging.getLogger(__name__)


def _interleaved_us_per_record(works: dict[str, Callable[[], Any]], records: int,
                               repeats: int) -> dict[str, float]:
    """Median µs/record of each piece of work, run round-robin so a busy machine affects all alike."""
    for work in works.values():
        work()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, work in works.items():
            started = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - started)
    return {name: round(statistics.median(values) / records * 1e6, 2) for name, values in times.items()}


def run(handle: ModelHandle, *, batch: int = 500, repeats: int = 40) -> dict[str, Any]:
    rows = []
    for record in with_ids(csv_records(loop=True)):
        record["event_time"] = int(time.time() * 1000)
        rows.append(record)
        if len(rows) >= batch:
            break
    values = [json.dumps(r).encode() for r in rows]
    incoming = [Incoming(str(r["record_id"]).encode(), v, "records", 0, n, None, ())
                for n, (r, v) in enumerate(zip(rows, values, strict=True))]
    columns = list(FEATURE_COLUMNS)
    model = handle.model
    loads, dumps = json.loads, json.dumps
    frame = pd.DataFrame.from_records([loads(v) for v in values], columns=columns)
    decoder, encoder = RecordDecoder(None), PredictionEncoder(None)

    def minimal() -> None:
        records = [loads(v) for v in values]
        predictions = model.predict(pd.DataFrame.from_records(records, columns=columns))
        for record, prediction in zip(records, predictions.tolist(), strict=True):
            dumps({"record_id": record["record_id"], "prediction": prediction})

    def product() -> None:
        score_batch(incoming, handle, decoder=decoder, encoder=encoder)

    def decode_validate_only() -> None:
        for message in incoming:
            fields, _, _ = decoder.decode(message.value)
            validate_record(fields)

    def batch_decode_validate() -> None:  # what score_batch runs: orjson + column-wise checks
        decode_validate(incoming, decoder, lambda msg, reason, stage, text: (reason, stage, text))

    per = _interleaved_us_per_record({"predict_only": lambda: model.predict(frame), "minimal_loop_work": minimal,
                                      "score_batch": product, "decode_validate_only": decode_validate_only,
                                      "batch_decode_validate": batch_decode_validate},
                                     batch, repeats)
    # The pipeline's fixed cost per call (ColumnTransformer on pandas) is why larger batches pay.
    big = pd.concat([frame] * 4, ignore_index=True)
    sizes = {size: big.iloc[:size] for size in (1, 50, 100, 200, 500, 1000, 2000)}
    predict_ms = _interleaved_us_per_record({str(size): partial(model.predict, f) for size, f in sizes.items()},
                                            1000, max(10, repeats // 2))  # µs per 1000 calls = ms per call
    return {
        "batch": batch,
        "predict_ms_by_batch_size": predict_ms,
        "predict_us_per_record_by_batch_size": {size: round(ms * 1000 / int(size), 1)
                                                for size, ms in predict_ms.items()},
        "us_per_record": per,
        "score_batch_over_minimal": round(per["score_batch"] / per["minimal_loop_work"], 2),
        "method": "median wall time of one batch / batch size, in-process, no Kafka, model threads = 1, "
                  "round-robin over the pieces",
    }
