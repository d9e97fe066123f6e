"""consumer.replay.run: the checks a replay makes before it asks any broker, its defaults and its summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from config.settings import Settings, load_settings
from consumer.replay.errors import RangeError, ReplayUsageError
from consumer.replay.range import EdgeBound, OffsetBound, TimeBound
from consumer.replay.run import ReplayRequest, ReplaySummary, check_request


def settings(**flat: Any) -> Settings:
    return load_settings({"scorer.group_id": "housing-scorer", **flat}, env={}, config_path=None)


def request(**fields: Any) -> ReplayRequest:
    base: dict[str, Any] = {"start": EdgeBound("earliest"), "end": EdgeBound("now"), "model_version": "3",
                            "output_topic": "backfill-v3"}
    return ReplayRequest(**{**base, **fields})


def test_the_dlq_and_the_replay_group_follow_the_output_topic_by_default() -> None:
    r = request()
    assert (r.dlq_topic, r.replay_group) == ("backfill-v3.dlq", "housing-replay.backfill-v3")
    r = request(dlq_topic="d", replay_group="g")
    assert (r.dlq_topic, r.replay_group) == ("d", "g")
    check_request(settings(), request())


@pytest.mark.parametrize(("fields", "says"), [
    ({"output_topic": "housing.records"}, "--output-topic 'housing.records' is the records topic"),
    ({"dlq_topic": "housing.records"}, "--dlq-topic 'housing.records' is the records topic"),
    ({"dlq_topic": "backfill-v3"}, "are both 'backfill-v3'"),
    ({"replay_group": "housing-scorer"}, "is the live scorers' group"),
    ({"model_version": "latest"}, "a registry version number"),
    ({"model_version": ""}, "a registry version number"),
])
def test_requests_that_would_hurt_the_live_pipeline_or_make_no_sense_are_refused(fields: dict[str, Any],
                                                                                 says: str) -> None:
    with pytest.raises(ReplayUsageError, match=says):
        check_request(settings(), request(**fields))


def test_inverted_times_are_refused_before_kafka_is_asked() -> None:
    with pytest.raises(RangeError, match="is after --to"):
        check_request(settings(), request(start=TimeBound(2000, "b"), end=TimeBound(1000, "a")))
    check_request(settings(), request(start=OffsetBound(every=9), end=OffsetBound(every=2)))  # known once resolved


def test_the_summary_says_records_predictions_dead_letters_rate_and_how_to_resume() -> None:
    summary = ReplaySummary("housing.records", "out", "out.dlq", "housing-replay.out", model="housing v3",
                            range="0:0-1000, 1:0-1000", records=2000, predictions=1990,
                            dead_letters=Counter({"malformed_json": 7, "missing_field": 3}), transactions=4,
                            seconds=2.0)
    text = summary.text()
    assert text == ("replayed 2,000 records of housing.records (0:0-1000, 1:0-1000) with housing v3 into out: "
                    "1,990 predictions, 10 dead letters to out.dlq (malformed_json 7, missing_field 3); 2.0 s, "
                    "1,000 records/s, 4 transactions (replay group housing-replay.out)")
    summary.already_replayed, summary.interrupted = 500, True
    lines = summary.text().splitlines()
    assert "500 offsets of the range were committed by an earlier run" in lines[1]
    assert "run the same command again to resume" in lines[2]
    assert ReplaySummary("a", "b", "c", "d").rate == 0.0
