"""housing-replay's command line: what it refuses before it asks any broker, with exit status 2."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from consumer.replay.__main__ import build_parser, main


@pytest.fixture(autouse=True)
def keep_sigterm_handler() -> Iterator[None]:
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    # Nothing listens on port 9: a check that asked Kafka would fail differently (exit 3).
    code = main(["--bootstrap-servers", "127.0.0.1:9", "--tracking-uri", "http://127.0.0.1:9", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "12", "--model-version", "3", "--output-topic", "o"], "write offset:12"),
    (["--from", "2024-05-02", "--to", "2024-05-01", "--model-version", "3", "--output-topic", "o"],
     "is after --to"),
    (["--from", "earliest", "--to", "soon", "--model-version", "3", "--output-topic", "o"], "not a time"),
    (["--from", "earliest", "--model-version", "3", "--output-topic", "housing.records"], "the records topic"),
    (["--from", "earliest", "--model-version", "v3", "--output-topic", "o"], "a registry version number"),
    (["--from", "earliest", "--model-version", "3", "--output-topic", "o", "--replay-group", "housing-scorer"],
     "live scorers' group"),
    (["--from", "earliest", "--model-version", "3", "--output-topic", "o", "--batch-max-records", "0"],
     "--batch-max-records: expected a value > 0"),
])
def test_bad_arguments_exit_2_saying_what_is_wrong(capsys: pytest.CaptureFixture[str], args: list[str],
                                                   says: str) -> None:
    code, error = run(capsys, *args)
    assert code == 2 and says in error, error


def test_from_model_version_and_output_topic_are_required_and_to_defaults_to_now() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--from", "earliest", "--output-topic", "o"])
    assert exit_info.value.code == 2
    args = parser.parse_args(["--from", "earliest", "--model-version", "3", "--output-topic", "o"])
    assert (args.end, args.dlq_topic, args.replay_group) == ("now", "", "")
